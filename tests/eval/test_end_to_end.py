"""`torl eval` end to end: a tiny locally built model, the transformers backend and the real LocalSandbox."""

from __future__ import annotations

import json
import subprocess
import sys

from torl.cli import main
from torl.reward import extract_answer, grade_many
from torl.train.tiny_model import arithmetic_problems


def test_torl_eval_tiny_model_transformers_real_sandbox(tmp_path, tiny_model_dir, capsys):
    problems = arithmetic_problems(4, seed=123)
    bench = tmp_path / "arith.jsonl"
    bench.write_text("".join(json.dumps({"q": p.problem, "a": int(p.answer)}) + "\n" for p in problems))
    out = tmp_path / "eval"
    argv = [
        "eval", "--model", str(tiny_model_dir), "--backend", "transformers",
        "--benchmarks", f"aime24,{bench}", "--columns", "problem=q,answer=a", "--limit", "4",
        "--max-response-tokens", "96", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["benchmarks"]) == {"aime24", "arith"}
    for name, b in results["benchmarks"].items():
        assert (b["n_items"], b["n_samples"], b["n_missing"]) == (4, 1, 0), name
        assert 0.0 <= b["accuracy"] <= 1.0
    assert f"| AIME24 | 4 | 1 | {100 * results['benchmarks']['aime24']['accuracy']:.1f} |" in printed
    assert "macro average" in printed

    records = [json.loads(line) for line in (out / "samples" / "arith.jsonl").read_text().splitlines()]
    records += [json.loads(line) for line in (out / "samples" / "aime24.jsonl").read_text().splitlines()]
    assert len(records) == 8
    for r in records:
        assert 0 < r["response_tokens"] <= 96
        assert r["pred"] == extract_answer(r["response"])
        assert r["num_executions"] == len(r["tool_calls"]) <= 1
    assert [r["correct"] for r in records] == grade_many(
        [r["pred"] for r in records], [r["gold"] for r in records]
    )
    assert [r["gold"] for r in records[:4]] == [p.answer for p in problems]

    # the fitted tiny model writes code; the sandbox really ran it: its output is what Python prints
    calls = [c for r in records for c in r["tool_calls"]]
    assert calls, "the tiny model wrote no code to execute"
    for c in calls:
        if c["status"] == "ok":
            stdout = subprocess.run([sys.executable, "-c", c["code"]], capture_output=True, text=True).stdout
            assert c["observation"].strip() == stdout.strip()
    assert any(c["status"] == "ok" for c in calls)
    b = results["benchmarks"]["arith"]
    assert b["code_ratio"] == sum(r["has_code"] for r in records[:4]) / 4
    assert b["executions_per_response"] == sum(r["num_executions"] for r in records[:4]) / 4

    # rerun: everything is done, nothing is generated again, same numbers
    before = (out / "samples" / "arith.jsonl").read_text()
    assert main(argv) == 0
    assert (out / "samples" / "arith.jsonl").read_text() == before
    assert json.loads((out / "results.json").read_text())["benchmarks"] == results["benchmarks"]
