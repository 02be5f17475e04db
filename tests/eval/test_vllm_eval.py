"""`torl eval --backend vllm` end to end on vLLM's CPU engine, against the transformers backend: greedy fp32
decoding on the same model must give the same responses, executions and scores."""

from __future__ import annotations

import json

import pytest
from tests.engine_models import vllm_model_dir

from torl.cli import main
from torl.train.tiny_model import arithmetic_problems

pytestmark = pytest.mark.engines


def test_torl_eval_backend_vllm_matches_transformers(tmp_path, capfd):
    problems = arithmetic_problems(4, seed=123)
    bench = tmp_path / "arith.jsonl"
    bench.write_text("".join(json.dumps({"q": p.problem, "a": int(p.answer)}) + "\n" for p in problems))
    runs = {}
    for backend in ("vllm", "transformers"):
        out = tmp_path / backend
        argv = ["eval", "--model", str(vllm_model_dir()), "--backend", backend, "--benchmarks", str(bench),
                "--columns", "problem=q,answer=a", "--max-response-tokens", "128", "--out", str(out),
                "--no-progress"]
        if backend == "vllm":
            argv += ["--engine-arg", "dtype=float32"]
        assert main(argv) == 0
        assert "| ARITH |" in capfd.readouterr().out.upper()
        runs[backend] = (json.loads((out / "results.json").read_text()),
                         [json.loads(line) for line in (out / "samples" / "arith.jsonl").read_text().splitlines()])
    (vllm_results, vllm_rows), (hf_results, hf_rows) = runs["vllm"], runs["transformers"]
    assert len(vllm_rows) == 4
    assert [r["response"] for r in vllm_rows] == [r["response"] for r in hf_rows]
    assert [r["num_executions"] for r in vllm_rows] == [r["num_executions"] for r in hf_rows]
    assert sum(r["num_executions"] for r in vllm_rows) >= 2
    assert vllm_results["benchmarks"]["arith"]["accuracy"] == hf_results["benchmarks"]["arith"]["accuracy"]
