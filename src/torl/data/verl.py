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
"""

from __future__ import annotations

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


def to_verl_rows(problems: Sequence[Problem], split: str = "train") -> list[dict]:
    return [
        {
            "data_source": p.source,
            "prompt": prompt_messages(p.problem),
            "ability": "math",
            "reward_model": {"ground_truth": p.answer, "style": "rule"},
            "extra_info": {"index": i, "id": p.id, "split": split},
        }
        for i, p in enumerate(problems)
    ]


def write_verl_parquet(problems: Sequence[Problem], path: str | Path, split: str = "train") -> int:
    """Write problems as a veRL training parquet. Returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(to_verl_rows(problems, split), schema=_schema()), path)
    return len(problems)


def read_verl_parquet(path: str | Path) -> list[Problem]:
    """Read a veRL parquet back into Problems. The problem is the user message without the instruction line;
    files written by other tools keep their whole user message. Errors name the file, row and field."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise UserInputError(f"{path}: not a veRL training file: missing column(s) {missing}")
    problems = []
    prefix = USER_INSTRUCTION + "\n"
    for i, row in enumerate(table.to_pylist()):
        where = f"{path}:row {i}"
        messages = row["prompt"] or []
        user = next((m.get("content") for m in messages if m and m.get("role") == "user"), None)
        if not isinstance(user, str):
            raise UserInputError(f"{where}: field 'prompt' has no user message")
        gold = (row["reward_model"] or {}).get("ground_truth")
        if not isinstance(gold, str):
            raise UserInputError(f"{where}: field 'reward_model.ground_truth' must be a string, got {gold!r}")
        extra = row["extra_info"] or {}
        pid = extra.get("id") if extra.get("id") is not None else extra.get("index", i)
        problem = user[len(prefix):] if user.startswith(prefix) else user
        problems.append(Problem(str(pid), problem, gold, row["data_source"] or "", {"split": extra.get("split")}))
    return problems
