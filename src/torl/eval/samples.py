"""The per-sample JSONL of an evaluation: append-only, flushed per line, resumable.

One file per benchmark (`OUT/samples/<benchmark>.jsonl`), one JSON object per sample, keyed by
(problem_id, sample_index). A record is finished once its newline is on disk: on resume, text after the last
newline (a line cut by a kill) is dropped and counted; a malformed complete line is an error naming file:line;
a repeated key keeps the first record and is counted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from torl.errors import UserInputError


@dataclass
class LoadedSamples:
    """Records read back from a samples file. dropped_partial: cut-off last lines removed from the file;
    duplicates: records whose key was already present (ignored)."""

    records: list[dict] = field(default_factory=list)
    dropped_partial: int = 0
    duplicates: int = 0

    def keys(self) -> set[tuple[str, int]]:
        return {(r["problem_id"], r["sample_index"]) for r in self.records}


def read_samples(path: str | Path, *, repair: bool = True) -> LoadedSamples:
    """Read a samples file. With `repair`, an unterminated last line is cut off the file (so appends stay valid)."""
    path = Path(path)
    out = LoadedSamples()
    if not path.exists():
        return out
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # everything after the last newline is unfinished
    if end < len(data):
        out.dropped_partial = 1
        if repair:
            with path.open("r+b") as f:
                f.truncate(end)
    seen: set[tuple[str, int]] = set()
    for lineno, line in enumerate(data[:end].decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserInputError(f"{path}:{lineno}: invalid JSON in samples file ({e.msg})") from None
        if (
            not isinstance(rec, dict)
            or "problem_id" not in rec
            or not isinstance(rec.get("sample_index"), int)
        ):
            raise UserInputError(f"{path}:{lineno}: not a sample record (needs problem_id and sample_index)")
        key = (rec["problem_id"], rec["sample_index"])
        if key in seen:
            out.duplicates += 1
            continue
        seen.add(key)
        out.records.append(rec)
    return out


class SampleWriter:
    """Appends records as JSON lines; each line is written whole, flushed and fsynced before `write` returns."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, records: list[dict]) -> None:
        for rec in records:
            self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
