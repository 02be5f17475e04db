"""Data helpers of the reward tests: the case table and the benchmark golds (read from the shared data)."""

from __future__ import annotations

import json
from pathlib import Path

from torl.reward import extract_answer

DATA = Path(__file__).parent / "data"


def _benchmarks_dir() -> Path:
    """The raw benchmark files: the copies shipped in torl.eval, else the shared data directory."""
    try:
        from torl.data.eval_sets import DATA_DIR

        if (DATA_DIR / "math500" / "test.jsonl").is_file():
            return DATA_DIR
    except ImportError:
        pass
    return Path("/work/shared/data/benchmarks")


BENCHMARKS = _benchmarks_dir()
BENCHMARK_NAMES = ("aime24", "aime25", "amc23", "math500", "olympiadbench", "minerva_math", "gsm8k")


def load_cases() -> list[tuple[str, str, bool, str, str]]:
    """(pred, gold, expected, direction, note) rows of data/equivalence_cases.tsv."""
    rows = []
    for lineno, line in enumerate(
        (DATA / "equivalence_cases.tsv").read_text(encoding="utf-8").splitlines(), 1
    ):
        if not line.strip() or line.startswith("#"):
            continue
        pred, gold, expected, direction, note = line.split("\t")
        assert expected in ("0", "1") and direction in ("both", "fwd"), f"bad row at line {lineno}"
        rows.append((pred, gold, expected == "1", direction, note))
    return rows


def raw_golds(name: str) -> list[str]:
    """The golds of a benchmark as the benchmark defines them, from the raw file."""
    rows = [
        json.loads(line)
        for line in (BENCHMARKS / name / "test.jsonl").read_text().splitlines()
        if line.strip()
    ]
    if name == "olympiadbench":
        golds = []
        for r in rows:
            assert len(r["final_answer"]) == 1
            golds.append(r["final_answer"][0])
        return golds
    if name == "gsm8k":
        return [r["answer"].split("####")[-1].strip() for r in rows]
    if name == "minerva_math":
        golds = [extract_answer(r["solution"]) for r in rows]
        assert all(g is not None for g in golds)
        return golds
    return [str(r["answer"]) for r in rows]
