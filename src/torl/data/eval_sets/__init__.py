"""The standard math benchmarks, shipped inside the package, and user benchmarks from a file.

Each shipped file is an unmodified public copy (see `data/MANIFEST.json` and `data/LICENSES.md`); loading
normalises it to `Problem(id, problem, answer)` the way the benchmark defines its answer:

- aime24, aime25: the integer answer, without leading zeros ("025" -> "25").
- amc23: the float gold as a number ("27.0" -> "27").
- math500: the `answer` field as is.
- olympiadbench: `final_answer` with its `$` delimiters removed; list items are joined with ", ". Multi-answer
  golds ("$69$,$84$" -> "69,84") thus become one comma-separated list, which torl.reward compares as an unordered
  list. `context` (when present) is prepended to the question; `unit`, `answer_type` and the tolerance in `error`
  are kept in `meta`.
- minerva_math: the content of the last `\\boxed{}` in `solution` (every item has exactly one), `$` removed
  (item 72's box holds a stray "$ $" from a line break).
- gsm8k: the number after "####", thousands separators removed ("1,450,000" -> "1450000").
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from torl.data.schema import Problem, iter_jsonl
from torl.data.verl import is_verl_columns, read_verl_parquet
from torl.errors import UserInputError
from torl.reward import extract_answer

DATA_DIR = Path(__file__).parent / "data"
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class BenchmarkSpec:
    """A shipped benchmark: its file under DATA_DIR, its item count, and how a raw row becomes a Problem."""

    name: str
    file: str
    n_items: int
    description: str
    to_problem: Callable[[dict], Problem]


def _number_text(x: float | int | str) -> str:
    """27.0 -> "27", 0.5 -> "0.5", "025" -> "25"; anything else as its string."""
    if isinstance(x, str):
        x = x.strip()
        try:
            return str(int(x)) if x.lstrip("-").isdigit() else x
        except ValueError:
            return x
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        return str(int(x))
    return str(x)


def _aime(name: str) -> Callable[[dict], Problem]:
    def to_problem(r: dict) -> Problem:
        meta = {k: r[k] for k in ("url",) if k in r}
        meta["raw_answer"] = r["answer"]
        return Problem(str(r["id"]), r["problem"], _number_text(r["answer"]), name, meta)

    return to_problem


def _amc23(r: dict) -> Problem:
    return Problem(str(r["id"]), r["problem"], _number_text(r["answer"]), "amc23", {"url": r.get("url")})


def _math500(r: dict) -> Problem:
    meta = {"subject": r["subject"], "level": r["level"]}
    return Problem(r["unique_id"], r["problem"], r["answer"].strip(), "math500", meta)


def olympiad_answer(final_answer: list[str] | str) -> str:
    """OlympiadBench's `final_answer` list as one gold string: `$` delimiters removed, items joined with ", "."""
    items = [final_answer] if isinstance(final_answer, str) else list(final_answer)
    return ", ".join(str(a).replace("$", "").strip() for a in items)


def _olympiadbench(r: dict) -> Problem:
    problem = f"{r['context'].strip()}\n\n{r['question']}" if r.get("context") else r["question"]
    meta = {
        "subfield": r.get("subfield"),
        "answer_type": r.get("answer_type"),
        "is_multiple_answer": r.get("is_multiple_answer"),
        "unit": r.get("unit"),
        "tolerance": r.get("error"),
        "raw_answer": r["final_answer"],
    }
    return Problem(str(r["id"]), problem, olympiad_answer(r["final_answer"]), "olympiadbench", meta)


def _minerva(r: dict) -> Problem:
    answer = (extract_answer(r["solution"]) or "").replace("$", "").strip()
    return Problem(str(r["idx"]), r["problem"], answer, "minerva_math", {"type": r.get("type")})


def _gsm8k(r: dict) -> Problem:
    answer = r["answer"].split("####")[-1].strip().replace(",", "")
    return Problem(str(r["idx"]), r["question"], answer, "gsm8k", {})


BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in (
        BenchmarkSpec("aime24", "aime24/test.jsonl", 30, "AIME 2024 I+II", _aime("aime24")),
        BenchmarkSpec("aime25", "aime25/test.jsonl", 30, "AIME 2025 I+II", _aime("aime25")),
        BenchmarkSpec("amc23", "amc23/test.jsonl", 40, "AMC 12 2023", _amc23),
        BenchmarkSpec("math500", "math500/test.jsonl", 500, "MATH test subset (PRM800K)", _math500),
        BenchmarkSpec(
            "olympiadbench",
            "olympiadbench/test.jsonl",
            675,
            "OlympiadBench, English text-only maths",
            _olympiadbench,
        ),
        BenchmarkSpec("minerva_math", "minerva_math/test.jsonl", 272, "Minerva OCW Courses", _minerva),
        BenchmarkSpec("gsm8k", "gsm8k/test.jsonl", 1319, "GSM8K test", _gsm8k),
    )
}

# The benchmarks of the paper's table (spec §6), in its column order.
PAPER_BENCHMARKS: tuple[str, ...] = ("aime24", "aime25", "math500", "olympiadbench", "amc23")


def list_benchmarks() -> dict[str, int]:
    """Every shipped benchmark: name -> item count."""
    return {name: spec.n_items for name, spec in BENCHMARKS.items()}


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    return list(iter_jsonl(path))


def load_benchmark(name: str) -> list[Problem]:
    """The problems of a shipped benchmark, normalised to (id, problem, answer); `source` is the name."""
    if name not in BENCHMARKS:
        raise UserInputError(f"unknown benchmark {name!r}; available: {', '.join(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    path = DATA_DIR / spec.file
    problems = []
    for lineno, row in _read_jsonl(path):
        try:
            p = spec.to_problem(row)
        except (KeyError, TypeError, AttributeError) as e:
            raise UserInputError(
                f"{path}:{lineno}: cannot read {name} item ({type(e).__name__}: {e})"
            ) from None
        if not p.answer:
            raise UserInputError(f"{path}:{lineno}: {name} item {p.id} has an empty answer")
        problems.append(p)
    if len(problems) != spec.n_items:
        raise UserInputError(f"{path}: expected {spec.n_items} {name} items, found {len(problems)}")
    return problems


def _gold_text(value, where: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool) or value is None:
        raise UserInputError(f"{where}: answer must be a string or a number, got {value!r}")
    if isinstance(value, int | float):
        return _number_text(value)
    if isinstance(value, list | tuple) and value:
        return ", ".join(_gold_text(v, where) for v in value)
    raise UserInputError(f"{where}: answer must be a string, a number or a non-empty list, got {value!r}")


def load_benchmark_file(path: str | Path, columns: Mapping[str, str] | None = None) -> list[Problem]:
    """User problems from a .jsonl/.json/.parquet file. `columns` maps torl's fields (id, problem, answer) to the
    file's column names, e.g. {"problem": "question", "answer": "gold"}. Without an id column the row number is
    the id. Numeric answers become text (27.0 -> "27"), lists are joined with ", ". Errors name file:line."""
    path = Path(path)
    columns = dict(columns or {})
    unknown = set(columns) - {"id", "problem", "answer"}
    if unknown:
        raise UserInputError(f"column mapping: unknown field(s) {sorted(unknown)}; use id, problem, answer")
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = [(i, r) for i, r in enumerate(pq.read_table(path).to_pylist(), 1)]
        unit = "row"
    elif path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise UserInputError(f"{path}: a .json benchmark must hold a list of objects")
        rows, unit = list(enumerate(data, 1)), "item"
    else:
        rows, unit = _read_jsonl(path), "line"
    col_id, col_problem, col_answer = (columns.get(k, k) for k in ("id", "problem", "answer"))
    problems, seen = [], set()
    for n, row in rows:
        where = f"{path}:{n}" if unit == "line" else f"{path}:{unit} {n}"
        for field, col in (("problem", col_problem), ("answer", col_answer)):
            if col not in row or row[col] is None:
                raise UserInputError(f"{where}: missing column {col!r} (the {field}); columns: {sorted(row)}")
        if "id" in columns and (col_id not in row or row[col_id] is None):
            raise UserInputError(f"{where}: missing column {col_id!r} (the id)")
        pid = str(row[col_id]) if col_id in row and row[col_id] is not None else str(n)
        if pid in seen:
            raise UserInputError(f"{where}: duplicate id {pid!r}")
        seen.add(pid)
        if not isinstance(row[col_problem], str) or not row[col_problem].strip():
            raise UserInputError(f"{where}: column {col_problem!r} (the problem) must be non-empty text")
        answer = _gold_text(row[col_answer], where)
        if not answer:
            raise UserInputError(f"{where}: column {col_answer!r} (the answer) is empty")
        problems.append(Problem(pid, row[col_problem], answer, path.stem, {}))
    if not problems:
        raise UserInputError(f"{path}: no problems in the file")
    return problems


def is_benchmark_file(spec: str) -> bool:
    """True when a --benchmarks entry names a file rather than a shipped benchmark."""
    return spec.endswith(FILE_SUFFIXES) or "/" in spec or _split_source(spec)[1] is not None


def _split_source(spec: str) -> tuple[str, str | None]:
    """`FILE.parquet:SOURCE` -> (FILE.parquet, SOURCE); anything else -> (spec, None)."""
    path, sep, source = spec.rpartition(".parquet:")
    return (path + ".parquet", source) if sep and path and source else (spec, None)


def load_verl_benchmarks(path: str | Path, source: str | None = None) -> dict[str, list[Problem]]:
    """A veRL / reference parquet (TORL-SPEC §2) as one benchmark per `data_source` ({"aime24": [...], ...});
    `source` keeps only that one. Repeated rows (the reference repeats AIME items 4x) stay separate items."""
    out: dict[str, list[Problem]] = {}
    for p in read_verl_parquet(path):
        out.setdefault(p.source or Path(path).stem, []).append(p)
    if not out:
        raise UserInputError(f"{path}: no problems in the file")
    if source is not None:
        if source not in out:
            raise UserInputError(f"{path}: no data_source {source!r}; the file has {', '.join(sorted(out))}")
        out = {source: out[source]}
    return out


def is_verl_parquet(path: str) -> bool:
    if not path.endswith(".parquet") or not Path(path).is_file():
        return False
    import pyarrow.parquet as pq

    try:
        return is_verl_columns(pq.read_schema(path).names)
    except Exception:  # not a readable parquet: load_benchmark_file names the problem
        return False


def resolve_benchmarks(
    specs: list[str], columns: Mapping[str, str] | None = None
) -> dict[str, list[Problem]]:
    """Shipped names and/or file paths -> {benchmark name: problems}. A file's benchmark name is its stem; a
    veRL / reference parquet gives one benchmark per `data_source` (`FILE.parquet:SOURCE` picks one)."""
    if not specs:
        raise UserInputError(f"no benchmarks given; available: {', '.join(BENCHMARKS)}")
    unknown = [s for s in specs if not is_benchmark_file(s) and s not in BENCHMARKS]
    if unknown:
        raise UserInputError(
            f"unknown benchmark(s) {', '.join(map(repr, unknown))}; available: {', '.join(BENCHMARKS)} "
            "(or a path to a .jsonl/.json/.parquet file)"
        )
    out: dict[str, list[Problem]] = {}
    for spec in specs:
        path, source = _split_source(spec)
        if source is not None or is_verl_parquet(path):
            found = load_verl_benchmarks(path, source)
        elif is_benchmark_file(spec):
            found = {Path(spec).stem: load_benchmark_file(spec, columns)}
        else:
            found = {spec: load_benchmark(spec)}
        for name, problems in found.items():
            if name in out:
                raise UserInputError(
                    f"benchmark {name!r} given twice (a file's benchmark name is its file name stem; a veRL "
                    "file's are its data_source values)"
                )
            out[name] = problems
    return out
