"""The veRL / reference training-file schema (parquet), written and read back.

One row per problem:
    data_source   str    the source label ("math", "numina/olympiads", ...)
    prompt        list   [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": user}]
    ability       str    "math"
    reward_model  struct {"ground_truth": gold answer, "style": "rule"}
    extra_info    struct {"index": row number, "id": torl problem id, "split": "train"}

The two messages split the reference's base-model template (TORL-SPEC §3) at its "User:" turn: the system
message is the template's first sentence pair and the user message is the instruction line followed by the
problem, so `render_base_prompt(messages)` rebuilds the reference prompt string byte for byte.

The "reference" flavour (`torl data build --for reference`) writes what the reference's own files hold
(TORL-SPEC §2): system "Please reason step by step, ..." and the *bare* problem as the user message, because the
reference trainer takes the user content and wraps it in its template itself. Both flavours have the same columns.
Reading accepts either flavour and the reference's published files (`stype` for `style`, `index` for `id`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

from torl.data.schema import Problem
from torl.errors import UserInputError

SYSTEM_MESSAGE = "A conversation between User and Assistant. The user asks a question, and the Assistant solves it."
USER_INSTRUCTION = (
    "Please integrate natural language reasoning with programs to solve the problem above, "
    "and put your final answer within \\boxed{}."
)
COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")


def prompt_messages(problem: str) -> list[dict[str, str]]:
    """The [system, user] messages of one problem."""
    return [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": f"{USER_INSTRUCTION}\n{problem}"},
    ]


def render_base_prompt(messages: Sequence[dict]) -> str:
    """The base-model prompt text of [system, user] messages: the reference template with the problem filled in."""
    system, user = messages[0]["content"], messages[1]["content"]
    return f"{system}\nUser: {user}\nAssistant:\n"


def base_prompt(problem: str) -> str:
    """The reference base-model prompt for one problem (what the prompt-length limit measures)."""
    return render_base_prompt(prompt_messages(problem))


def _schema():
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(message)),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("ground_truth", pa.string()), ("style", pa.string())])),
        ("extra_info", pa.struct([("index", pa.int64()), ("id", pa.string()), ("split", pa.string())])),
    ])


REFERENCE_SYSTEM_MESSAGE = "Please reason step by step, and put your final answer within \\boxed{}."
FLAVOURS = ("torl", "reference")


def reference_messages(problem: str) -> list[dict[str, str]]:
    """[system, user] as in the reference's own files (TORL-SPEC §2): the user message is the bare problem, which
    the reference trainer puts into its template (§3); the system message is ignored by that trainer."""
    return [{"role": "system", "content": REFERENCE_SYSTEM_MESSAGE}, {"role": "user", "content": problem}]


def to_verl_rows(problems: Sequence[Problem], split: str = "train", flavour: str = "torl") -> list[dict]:
    """Rows of the veRL schema. flavour "torl": the user message carries the instruction line (veRL's default
    chat-template rendering then gives the reference prompt); "reference": a bare user problem, for the reference
    trainer, which adds the instruction itself."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown veRL file flavour {flavour!r}; use one of {FLAVOURS}")
    messages = prompt_messages if flavour == "torl" else reference_messages
    return [
        {
            "data_source": p.source,
            "prompt": messages(p.problem),
            "ability": "math",
            "reward_model": {"ground_truth": p.answer, "style": "rule"},
            "extra_info": {"index": i, "id": p.id, "split": split},
        }
        for i, p in enumerate(problems)
    ]


def write_verl_parquet(problems: Sequence[Problem], path: str | Path, split: str = "train",
                       flavour: str = "torl") -> int:
    """Write problems as a veRL training parquet (same columns for both flavours). Returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(to_verl_rows(problems, split, flavour), schema=_schema()), path)
    return len(problems)


def is_verl_columns(columns: Sequence[str]) -> bool:
    """True for a table in the veRL schema (a chat `prompt` and a `reward_model` column)."""
    return "prompt" in columns and "reward_model" in columns


def _gold_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    raise ValueError(f"field 'reward_model.ground_truth' must be text or a number, got {value!r}")


def verl_row_fields(row: dict) -> dict:
    """The fields of one veRL-schema row: problem (user message, torl's instruction line removed), answer
    (`reward_model.ground_truth`), id (`extra_info.id`, else `extra_info.index`, else None), data_source, split.
    Accepts both `style` and the reference's `stype` (neither is needed). Raises ValueError naming the field."""
    if not isinstance(row, dict):
        raise ValueError(f"expected an object, got {type(row).__name__}")
    messages = row.get("prompt")
    if isinstance(messages, str):
        user = messages
    elif isinstance(messages, list | tuple):
        user = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    else:
        user = None
    if not isinstance(user, str) or not user.strip():
        raise ValueError("field 'prompt' has no user message (expected [{role, content}, ...] with a 'user' turn)")
    reward = row.get("reward_model")
    if not isinstance(reward, dict) or reward.get("ground_truth") is None:
        raise ValueError("field 'reward_model.ground_truth' is missing")
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    pid = extra.get("id") if extra.get("id") is not None else extra.get("index")
    prefix = USER_INSTRUCTION + "\n"
    source = row.get("data_source")
    return {"problem": user[len(prefix):] if user.startswith(prefix) else user,
            "answer": _gold_text(reward["ground_truth"]), "id": None if pid is None else str(pid),
            "data_source": source if isinstance(source, str) else "", "split": extra.get("split")}


def derived_id(data_source: str, problem: str) -> str:
    """A stable id for a row without one: its data source and a hash of its problem text."""
    digest = hashlib.sha1(problem.encode("utf-8")).hexdigest()[:12]
    return f"{data_source or 'verl'}-{digest}"


def read_verl_parquet(path: str | Path) -> list[Problem]:
    """Read a veRL / reference parquet (TORL-SPEC §2) into Problems. The problem is the user message (torl's
    instruction line removed when present); ids come from `extra_info.id` or `extra_info.index`, else
    `derived_id`; a repeated id (the reference repeats AIME rows) gets "#2", "#3", ... so ids stay unique and
    stable. Errors name the file, row and field."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    table = pq.read_table(path)
    if not is_verl_columns(table.column_names):
        raise UserInputError(f"{path}: not a veRL training file: missing column(s) "
                             f"{[c for c in ('prompt', 'reward_model') if c not in table.column_names]}")
    problems, seen = [], {}
    for i, row in enumerate(table.to_pylist()):
        try:
            f = verl_row_fields(row)
        except ValueError as e:
            raise UserInputError(f"{path}:row {i}: {e}") from None
        pid = f["id"] if f["id"] is not None else derived_id(f["data_source"], f["problem"])
        seen[pid] = seen.get(pid, 0) + 1
        if seen[pid] > 1:
            pid = f"{pid}#{seen[pid]}"
        problems.append(Problem(pid, f["problem"], f["answer"], f["data_source"], {"split": f["split"]}))
    return problems
