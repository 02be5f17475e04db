"""torl's problem schema: what training and evaluation read.

One problem per JSONL line (or parquet row): `id`, `problem`, `answer` (the gold, as the grader takes it),
`source` (data set or benchmark name) and optional `meta` (a JSON object: level, type, url, ...).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torl.errors import UserInputError

REQUIRED_FIELDS = ("id", "problem", "answer")


@dataclass
class Problem:
    id: str
    problem: str
    answer: str
    source: str = ""
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "") -> Problem:
        """Build from a mapping; `where` (e.g. "file.jsonl:12") prefixes error messages."""
        prefix = f"{where}: " if where else ""
        for key in REQUIRED_FIELDS:
            if key not in d or d[key] is None:
                raise UserInputError(f"{prefix}missing field {key!r}")
        for key in ("problem", "answer"):
            if not isinstance(d[key], str):
                raise UserInputError(f"{prefix}field {key!r} must be a string, got {type(d[key]).__name__}")
        meta = d.get("meta") or {}
        if not isinstance(meta, dict):
            raise UserInputError(f"{prefix}field 'meta' must be an object, got {type(meta).__name__}")
        return cls(id=str(d["id"]), problem=d["problem"], answer=d["answer"], source=str(d.get("source") or ""), meta=meta)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a line that is not a JSON object stops with file:line."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserInputError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(d, dict):
                raise UserInputError(f"{path}:{lineno}: expected a JSON object, got {type(d).__name__}")
            yield lineno, d


def write_problems(problems: Iterable[Problem], path: str | Path) -> int:
    """Write problems as .jsonl or .parquet (by suffix). Returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [p.to_dict() for p in problems]
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        for r in rows:  # parquet needs one type per column: keep meta as JSON text
            r["meta"] = json.dumps(r["meta"], ensure_ascii=False)
        pq.write_table(pa.Table.from_pylist(rows), path)
        return len(rows)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(rows)
