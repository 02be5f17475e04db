"""Readers for raw problem sources: NuminaMath, MATH, DeepScaleR, generic files with a column mapping, and veRL /
reference parquet files (format `verl`: chat-list `prompt`, `reward_model.ground_truth`, TORL-SPEC §2; the user
message is the problem, torl's instruction line removed; source = `LABEL/data_source`).

A source is `FORMAT[:LABEL]=PATH` (see `parse_source_arg`). PATH is a .jsonl, .json (an array, one object, or
JSON lines) or .parquet file, a local Hugging Face `datasets` directory (`save_to_disk` output), or a directory
of such files (searched recursively; when file names or folders name splits, only the requested split is read).

Every row becomes a `RawItem` whose gold answer is the `answer` column when present and non-empty, else the
last `\\boxed{}` of the solution (`torl.reward.extract_answer`). A malformed row raises `UserInputError` naming
file:line and the reason, or, with `skip_invalid`, becomes an `InvalidRow` that the build counts and reports.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from torl.data.answers import boxed_contents, other_boxed
from torl.data.filters import letter_answer
from torl.data.schema import Problem, iter_jsonl
from torl.data.verl import is_verl_columns, read_verl_parquet, verl_row_fields
from torl.errors import UserInputError
from torl.reward import extract_answer

FORMATS = ("numina", "math", "deepscaler", "generic", "verl")
FIELDS = ("id", "problem", "answer", "solution", "messages", "level", "difficulty", "type", "subsource")
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "numina": {"problem": "problem", "solution": "solution", "answer": "answer", "messages": "messages",
               "subsource": "source"},
    "math": {"problem": "problem", "solution": "solution", "answer": "answer", "level": "level", "type": "type"},
    "deepscaler": {"problem": "problem", "answer": "answer", "solution": "solution", "difficulty": "difficulty",
                   "type": "type"},
    "generic": {"id": "id", "problem": "problem", "answer": "answer", "solution": "solution"},
    "verl": {},  # fixed schema (TORL-SPEC §2), read by torl.data.verl.verl_row_fields
}
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
SPLIT_NAMES = ("train", "test", "validation", "val", "dev")
_NOT_DATA = {"dataset_info.json", "state.json", "dataset_dict.json", "MANIFEST.json"}
_LEVEL = re.compile(r"(\d+)")


@dataclass(frozen=True)
class SourceSpec:
    """One input: its format, where it is, the label used in ids and reports, and column overrides."""

    format: str
    path: Path
    label: str
    columns: dict[str, str] = field(default_factory=dict)
    split: str = "train"

    def column_map(self) -> dict[str, str]:
        return {**DEFAULT_COLUMNS[self.format], **self.columns}


@dataclass
class RawItem:
    """A read row before filtering. `answer` is None when neither an answer nor a boxed solution exists."""

    id: str
    problem: str | None
    answer: str | None
    answer_from: str  # "answer" | "boxed" | "none"
    source: str
    where: str
    meta: dict = field(default_factory=dict)
    other_boxed: tuple[str, ...] = ()  # other answers the solution boxes, when the gold came from a box


@dataclass(frozen=True)
class InvalidRow:
    """A malformed row skipped under `skip_invalid`."""

    id: str
    where: str
    source: str
    reason: str


def parse_source_arg(text: str, columns: dict[str, str] | None = None, split: str = "train") -> SourceSpec:
    """`FORMAT[:LABEL]=PATH` -> SourceSpec, e.g. `numina=/data/NuminaMath-CoT` or `generic:gsm=/data/gsm.jsonl`."""
    if "=" not in text:
        raise UserInputError(f"--source {text!r}: expected FORMAT[:LABEL]=PATH with FORMAT in {', '.join(FORMATS)}")
    head, path = text.split("=", 1)
    fmt, _, label = head.partition(":")
    fmt, label = fmt.strip(), (label.strip() or fmt.strip())
    if fmt not in FORMATS:
        raise UserInputError(f"--source {text!r}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
        raise UserInputError(f"--source {text!r}: label {label!r} may only use letters, digits, '_', '-', '.'")
    columns = dict(columns or {})
    unknown = set(columns) - set(FIELDS)
    if unknown:
        raise UserInputError(f"--columns for {label!r}: unknown field(s) {sorted(unknown)}; use {', '.join(FIELDS)}")
    p = Path(path).expanduser()
    if not p.exists():
        raise UserInputError(f"--source {text!r}: {p}: no such file or directory")
    return SourceSpec(fmt, p, label, columns, split)


def parse_columns_arg(text: str) -> tuple[str, dict[str, str]]:
    """`LABEL:FIELD=COLUMN[,FIELD=COLUMN...]` -> (label, {field: column})."""
    label, sep, rest = text.partition(":")
    pairs = [p for p in rest.split(",") if p.strip()]
    if not sep or not pairs or any("=" not in p for p in pairs):
        raise UserInputError(f"--columns {text!r}: expected LABEL:FIELD=COLUMN[,FIELD=COLUMN...]")
    return label.strip(), {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


# ---------------------------------------------------------------------------------------------- raw rows


def data_files(path: Path, split: str) -> list[Path]:
    """The data files under a directory, sorted; restricted to `split` when file paths name splits."""
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and p.suffix in DATA_SUFFIXES and p.name not in _NOT_DATA
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    splits = {p: _split_of(p.relative_to(path)) for p in files}
    if any(s is not None for s in splits.values()):
        files = [p for p in files if splits[p] in (None, split)]
    if not files:
        raise UserInputError(f"{path}: no {'/'.join(DATA_SUFFIXES)} files for split {split!r}")
    return files


def _split_of(rel: Path) -> str | None:
    for part in (*rel.parts[:-1], rel.stem):
        for name in SPLIT_NAMES:
            if part == name or re.match(rf"{name}(?:[-_.]|$)", part) or re.search(rf"[-_]{name}$", part):
                return "validation" if name in ("val", "dev") else name
    return None


def iter_rows(path: Path, split: str = "train") -> Iterator[tuple[str, object, str | None]]:
    """Yield (where, row, error) for every row under `path`; `error` is set (and `row` None) for a bad row."""
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            yield from _hf_rows(path, split)
            return
        for f in data_files(path, split):
            yield from iter_rows(f, split)
        return
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
    elif path.suffix == ".json":
        yield from _json_rows(path)
    else:
        yield from _jsonl_rows(path)


def _jsonl_rows(path: Path) -> Iterator[tuple[str, object, str | None]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line), None
            except json.JSONDecodeError as e:
                yield where, None, f"invalid JSON ({e.msg} at column {e.colno})"


def _json_rows(path: Path) -> Iterator[tuple[str, object, str | None]]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if text.lstrip().startswith("{") and text.count("\n") > 1:  # JSON lines saved as .json
            yield from _jsonl_rows(path)
            return
        raise UserInputError(f"{path}:{e.lineno}: invalid JSON ({e.msg}); the whole file is unreadable") from None
    if isinstance(data, dict):
        yield str(path), data, None
    elif isinstance(data, list):
        for i, row in enumerate(data, 1):
            yield f"{path}:item {i}", row, None
    else:
        raise UserInputError(f"{path}: expected a JSON array of objects or one object, got {type(data).__name__}")


def _parquet_rows(path: Path) -> Iterator[tuple[str, object, str | None]]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise UserInputError(f"{path}: not a readable parquet file ({e})") from None
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield f"{path}:row {n}", row, None


def _hf_rows(path: Path, split: str) -> Iterator[tuple[str, object, str | None]]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise UserInputError(f"{path}: no split {split!r} in this datasets directory; splits: {', '.join(ds)}")
        ds = ds[split]
    for i, row in enumerate(ds, 1):
        yield f"{path}[{split}]:row {i}", row, None


# ---------------------------------------------------------------------------------------------- rows -> items


def _text(row: dict, column: str, name: str) -> str | None:
    value = row.get(column)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"field {name!r} (column {column!r}) must be text, got {type(value).__name__}")


def _answer_text(row: dict, column: str) -> str | None:
    value = row.get(column)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError(f"field 'answer' (column {column!r}) must be text or a number, got bool")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):  # NaN: pandas' missing value in a float column
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
        return ", ".join(str(v) for v in value)
    raise ValueError(f"field 'answer' (column {column!r}) must be text or a number, got {type(value).__name__}")


def _from_messages(row: dict, column: str) -> tuple[str | None, str | None]:
    """(problem, solution) from a chat `messages` list: first user turn, last assistant turn."""
    messages = row.get(column)
    if messages is None:
        return None, None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError(f"field 'messages' (column {column!r}) must be a list of {{role, content}} objects")
    user = next((m.get("content") for m in messages if m.get("role") == "user"), None)
    assistant = next((m.get("content") for m in reversed(messages) if m.get("role") == "assistant"), None)
    if not all(x is None or isinstance(x, str) for x in (user, assistant)):
        raise ValueError(f"field 'messages' (column {column!r}): message contents must be text")
    return user, assistant


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _level(value) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return int(value) if _finite(value) else None
    m = _LEVEL.search(str(value))
    return int(m.group(1)) if m else None


def _scalar_meta(row: dict, used: set[str]) -> dict:
    """Small scalar columns not otherwise used (year, url, unique_id, ...), kept as provenance."""
    meta = {}
    for k, v in row.items():
        if k in used or v is None:
            continue
        if isinstance(v, bool) or _finite(v) or (isinstance(v, str) and len(v) <= 200):
            meta[k] = v
    return meta


def row_to_item(spec: SourceSpec, row: object, where: str, item_id: str) -> RawItem:
    """One raw row -> RawItem. Raises ValueError (the reason) for a malformed row."""
    if not isinstance(row, dict):
        raise ValueError(f"expected an object, got {type(row).__name__}")
    if spec.format == "verl":
        return _verl_item(spec, row, where, item_id)
    cols = spec.column_map()
    problem = _text(row, cols["problem"], "problem")
    solution = _text(row, cols["solution"], "solution") if "solution" in cols else None
    if "messages" in cols and (problem is None or solution is None):
        user, assistant = _from_messages(row, cols["messages"])
        problem = problem if problem is not None else user
        solution = solution if solution is not None else assistant
    answer = _answer_text(row, cols["answer"]) if "answer" in cols else None
    answer_from, boxed = "answer", ()
    if answer is None or not answer.strip():
        answer = extract_answer(solution) if solution else None
        answer_from = "boxed" if answer else "none"
        boxed = other_boxed(solution, answer) if answer else ()
    answer = clean_answer(answer) if answer is not None else None

    meta: dict = {}
    if "level" in cols and (level := _level(row.get(cols["level"]))) is not None:
        meta["level"] = level
    if "difficulty" in cols and _finite(row.get(cols["difficulty"])):
        meta["difficulty"] = float(row[cols["difficulty"]])
    if "type" in cols and isinstance(row.get(cols["type"]), str):
        meta["type"] = row[cols["type"]]
    if "id" in cols and row.get(cols["id"]) is not None:
        meta["source_id"] = str(row[cols["id"]])
    meta.update(_scalar_meta(row, set(cols.values())))
    meta["origin"] = where
    meta["answer_from"] = answer_from

    source = spec.label
    sub = row.get(cols["subsource"]) if "subsource" in cols else None
    if isinstance(sub, str) and sub.strip():
        source = f"{spec.label}/{sub.strip()}"
    return RawItem(item_id, problem, answer, answer_from, source, where, meta, boxed)


def _verl_item(spec: SourceSpec, row: dict, where: str, item_id: str) -> RawItem:
    """A veRL / reference row (chat `prompt`, `reward_model.ground_truth`, `extra_info`) -> RawItem."""

    f = verl_row_fields(row)
    meta = {"origin": where, "answer_from": "answer"}
    if f["id"] is not None:
        meta["source_id"] = f["id"]
    source = f"{spec.label}/{f['data_source']}" if f["data_source"] else spec.label
    return RawItem(item_id, f["problem"], clean_answer(f["answer"]), "answer", source, where, meta)


_CHOICE_LABEL = re.compile(r"^\\text(?:bf|rm)?\{\s*\(?[A-E]\)?\s*\}\s*(?:\\[ ,;:!]|~|\s)*(?=\S)")
_DOLLARS = re.compile(r"^\$+(.*?)\$+$", re.S)
_WHOLE_BOX = re.compile(r"^\\boxed\s*\{(.*)\}$", re.S)


def clean_answer(answer: str) -> str:
    """Strip whitespace, enclosing `$` and a whole-answer `\\boxed{}`; a choice label before a value goes
    ("\\textbf{(C)}\\ 12" -> "12"), a lone choice label becomes its letter ("\\textbf{(C)}" -> "C")."""
    answer = answer.strip()
    if m := _DOLLARS.match(answer):
        answer = m.group(1).strip()
    boxes = boxed_contents(answer) if _WHOLE_BOX.match(answer) else []
    if boxes and answer.index("{") + len(boxes[0]) + 2 == len(answer):  # the first box closes at the very end
        answer = boxes[0].strip()
    if letter := letter_answer(answer):
        return letter
    stripped = _CHOICE_LABEL.sub("", answer).strip()
    return stripped or answer


def read_source(
    spec: SourceSpec, *, skip_invalid: bool = False, first_index: int = 0, progress: bool = False
) -> tuple[list[RawItem], list[InvalidRow]]:
    """Read every row of one source. Ids are `LABEL-N` with N counting from `first_index` in read order."""
    from tqdm.auto import tqdm

    items: list[RawItem] = []
    invalid: list[InvalidRow] = []
    problem_column_seen = False
    n = first_index
    rows = tqdm(iter_rows(spec.path, spec.split), desc=f"read {spec.label}", unit=" rows", disable=not progress)
    for where, row, error in rows:
        item_id = f"{spec.label}-{n}"
        n += 1
        if error is None:
            try:
                item = row_to_item(spec, row, where, item_id)
            except ValueError as e:
                error = str(e)
            else:
                problem_column_seen = problem_column_seen or spec.format == "verl" or spec.column_map()["problem"] in row or (
                    spec.column_map().get("messages", "\0") in row)
                items.append(item)
                continue
        if not skip_invalid:
            raise UserInputError(f"{where}: {error} (use --skip-invalid to skip and count such rows)")
        invalid.append(InvalidRow(item_id, where, spec.label, error))
    if items and not problem_column_seen:
        raise UserInputError(
            f"{spec.path}: no row has the problem column {spec.column_map()['problem']!r} "
            f"(format {spec.format!r}); map it with --columns {spec.label}:problem=COLUMN"
        )
    return items, invalid


def read_problems(path: str | Path) -> list[Problem]:
    """Read problems from a .jsonl or .parquet file in torl's schema, or a veRL/reference parquet (TORL-SPEC §2).
    Errors name file:line and field."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file")
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        if is_verl_columns(table.column_names):  # a veRL / reference file (TORL-SPEC §2)
            return read_verl_parquet(path)
        return [Problem.from_dict(r, where=f"{path}:row {i}") for i, r in enumerate(table.to_pylist())]
    return [Problem.from_dict(d, where=f"{path}:{lineno}") for lineno, d in iter_jsonl(path)]
