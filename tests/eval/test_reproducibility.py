"""`torl eval --seed`: sampled evaluations are reproducible token for token, whatever the batch size and wherever
an interrupted run resumed; another seed gives other samples; the seed is recorded and guards a resume."""

from __future__ import annotations

import json

import pytest
from tests.threads import one_torch_thread

from torl.cli import main
from torl.train.tiny_model import arithmetic_problems


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


def _eval(model, bench, out, *extra) -> int:
    return main(["eval", "--model", str(model), "--benchmarks", str(bench), "--columns", "problem=q,answer=a",
                 "-n", "2", "--temperature", "1.0", "--max-response-tokens", "64", "--out", str(out),
                 "--no-progress", *extra])


def _samples(out) -> list[dict]:
    return [json.loads(line) for line in (out / "samples" / "arith.jsonl").read_text().splitlines()]


def test_torl_eval_seed_reproduces_samples_across_batching_and_resume(tmp_path, tiny_model_dir, capsys):
    bench = tmp_path / "arith.jsonl"
    bench.write_text("".join(json.dumps({"q": p.problem, "a": int(p.answer)}) + "\n"
                             for p in arithmetic_problems(4, seed=8)))
    whole, resumed, other = tmp_path / "whole", tmp_path / "resumed", tmp_path / "other"

    assert _eval(tiny_model_dir, bench, whole, "--seed", "1") == 0
    # the same seed, other batches, interrupted after 2 problems and resumed
    assert _eval(tiny_model_dir, bench, resumed, "--seed", "1", "--batch-size", "3", "--limit", "2") == 0
    assert len(_samples(resumed)) == 4
    assert _eval(tiny_model_dir, bench, resumed, "--seed", "1", "--batch-size", "3") == 0
    assert _eval(tiny_model_dir, bench, other, "--seed", "2") == 0

    a, b, c = _samples(whole), _samples(resumed), _samples(other)
    assert len(a) == 8 and a == b  # responses (hence tokens), tool calls, grades: all equal
    assert any(r["num_executions"] for r in a)  # the sandbox took part
    assert [r["response"] for r in c] != [r["response"] for r in a]
    # the two samples of a problem differ (their seeds do)
    assert all(a[i]["response"] != a[i + 1]["response"] for i in range(0, 8, 2))

    ra, rb = (json.loads((d / "results.json").read_text()) for d in (whole, resumed))
    assert ra["benchmarks"] == rb["benchmarks"]
    assert ra["run"]["seed"] == 1 and json.loads((whole / "run.json").read_text())["seed"] == 1
    # a sampled run does not resume with another seed (its samples would mix two seeds)
    capsys.readouterr()
    assert _eval(tiny_model_dir, bench, whole, "--seed", "2") == 2
    assert "seed: 1 -> 2" in capsys.readouterr().err
