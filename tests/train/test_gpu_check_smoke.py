"""benchmarks/gpu_check.py's code path on vLLM's CPU build (--cpu-smoke): the GPU check itself needs a GPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.train.conftest import REPO

pytestmark = pytest.mark.engines


def test_gpu_check_cpu_smoke(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--cpu-smoke",
                           "--work-dir", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads(out.read_text())
    assert result["steps"] == 2 and not (tmp_path / "work" / "run" / "checkpoint-2").exists()
    assert result["tool_exec_s"] > 0, "every response carries a code block run in the real sandbox"
    assert result["generated_tokens_per_s"] > 0 and result["update_s"] > 0
    assert all(g is not None and g < 1e-3 for g in result["engine_logprob_gap"])
    assert result["mfu_update"] is None  # no GPU: no peak to compare with
    for key in ("step_s", "generation_s", "grading_s", "update_tokens_per_s"):
        assert key in result and key in proc.stdout
