"""`bash benchmarks/gpu_check.sh --cpu-smoke`: the GPU check's script end to end on CPU (a 2-layer model with the
real Qwen2.5 tokenizer): per-phase JSON, the final `gpu_check:` line, the weight-sync proof and the time split.
The GPU check itself needs a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.conftest import REPO


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "sms", "peak"), [
    ("NVIDIA H100 80GB HBM3", 132, 989.0), ("NVIDIA H100 PCIe", 114, 756.0), ("NVIDIA H100", 114, 756.0),
    ("NVIDIA H100 NVL", 132, 835.0), ("NVIDIA H200", 132, 989.0), ("NVIDIA H20", 78, 148.0),
    ("NVIDIA GeForce RTX 4090", 128, None)])
def test_peak_by_card(name, sms, peak):
    assert load_gpu_check().peak_bf16_tflops(name, sms) == peak


def run_smoke(tmp_path, *extra: str) -> tuple[subprocess.CompletedProcess, dict, list[dict]]:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--cpu-smoke", *extra,
                           "--work-dir", str(tmp_path / "work"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    result = json.loads((out / "gpu_check.json").read_text())
    steps = [json.loads((out / f"step_{i}.json").read_text()) for i in (1, 2)]
    assert {p.name for p in out.iterdir()} >= {"env.json", "build.json", "setup.json", "gpu_check.log"}
    return proc, result, steps


def check_common(proc, result: dict, steps: list[dict]) -> None:
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("gpu_check: ") and last.endswith(" ok"), last
    for word in ("generation=", "tools=", "grading=", "update=", "sync=", "gen_tok/s=", "mfu_update_real=",
                 "mfu_update_padded=", "gap=", "stale_gap="):
        assert word in last
    assert result["ok"] and result["steps"] == 2
    assert not any(p.name.startswith("checkpoint") for p in (Path(result["env"]["args"]["work_dir"]) / "run").iterdir())
    for s in steps:
        assert s["tools_s"] > 0, "every response carries a code block run in the real sandbox"
        assert s["accuracy"] == 0.5, "the forced answers are right on even samples only: rewards vary"
        assert s["update_s"] > 0 and s["generated_tokens_per_s"] > 0 and s["real_tokens"] > 0
        assert s["padded_tokens"] >= s["real_tokens"]
        assert abs(s["step_s"] - (s["generation_s"] + s["grading_s"] + s["update_s"] + s["sync_s"] + s["other_s"])) < 1e-6
        assert s["engine_logprob_gap"] < 1e-4  # fp32 on both sides
        assert s["stale_gap"] >= 10 * result["gap_threshold"], "a skipped sync would be visible"
        assert s["sync_check"]["ok"] and s["sync_check"]["tolerance"] == "exact"
    assert steps[1]["sync_check"]["changed_since_last_sync"] > 0
    assert result["mfu_update_real"] is None  # no GPU: no peak to compare with


def test_gpu_check_cpu_smoke_transformers(tmp_path):
    proc, result, steps = run_smoke(tmp_path)
    check_common(proc, result, steps)
    assert result["weights"] == "shared" and all(s["sync_s"] == 0 for s in steps)
    assert all(len(s["sync_check"]["compared"]) == 5 for s in steps)


@pytest.mark.engines
def test_gpu_check_cpu_smoke_vllm(tmp_path):
    proc, result, steps = run_smoke(tmp_path, "--engine", "vllm")
    check_common(proc, result, steps)
    assert result["weights"] == "copied" and all(s["sync_s"] > 0 for s in steps)
