"""`torl rollout --backend vllm` end to end on vLLM's CPU engine: problems in, token-exact samples out, the code
really run in the LocalSandbox."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.engine_models import vllm_model_dir
from torl.cli import main
from torl.data import write_problems
from torl.train.tiny_model import arithmetic_problems

pytestmark = pytest.mark.engines


def test_torl_rollout_backend_vllm(tmp_path, capfd):
    from transformers import AutoTokenizer

    problems = tmp_path / "problems.jsonl"
    write_problems(arithmetic_problems(3, seed=21), problems)
    out = tmp_path / "rollouts.jsonl"
    model = vllm_model_dir()
    argv = ["rollout", "--backend", "vllm", "--model", str(model), "--input", str(problems), "--out", str(out),
            "-n", "2", "--max-tool-calls", "1", "--max-response-tokens", "128", "--temperature", "1.0",
            "--seed", "3", "--sandbox-workers", "2", "--ids"]
    assert main(argv) == 0
    assert "6 samples" in capfd.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["problem_id"], r["sample"]) for r in rows) == [
        (f"demo-21-{i}", k) for i in range(3) for k in (0, 1)]
    tok = AutoTokenizer.from_pretrained(model)
    for r in rows:
        assert r["finish_reason"] in ("eos", "length")
        ids, mask, lps = r["completion_ids"], r["mask"], r["logprobs"]
        assert len(ids) == len(mask) == len(lps) == r["num_tokens"] <= 128
        assert tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == r["text"]
        assert all(math.isfinite(lp) and lp <= 0 for lp, m in zip(lps, mask, strict=True) if m == 1)
        assert r["num_executions"] == len(r["tool_calls"]) <= 1
        for i, tc in enumerate(r["tool_calls"]):
            block = f"```output\n{tc['observation']}\n```\n"
            if block not in r["text"]:  # cut by --max-response-tokens while the observation was inserted
                assert i == len(r["tool_calls"]) - 1 and r["finish_reason"] == "length", r
                assert block.startswith(r["text"][r["text"].rindex("```output"):]), r
            if tc["status"] == "ok":  # the sandbox's answer is what Python prints
                run = subprocess.run([sys.executable, "-c", tc["code"]], capture_output=True, text=True)
                assert tc["observation"].strip() == run.stdout.strip()
    assert sum(r["num_executions"] for r in rows) >= 3
