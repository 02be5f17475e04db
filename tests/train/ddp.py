"""Two-process training launches on CPU (accelerate launch, DDP over gloo), shared by the HF and vLLM tests."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.train.conftest import REPO, TINY_CPU, arithmetic_problems

CPU_DDP = REPO / "configs" / "accelerate" / "cpu_ddp.yaml"
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_DDP)]
SMALL = ["grpo.prompts_per_step=2", "grpo.samples_per_prompt=4", "grpo.micro_batch_size=4",
         "rollout.max_response_tokens=48", "engine.sandbox_workers=1", "logging.progress=false",
         "logging.tensorboard=false", "validation.at_start=false", "validation.max_items=2"]


def launch_ddp_training(python: str, model, run_dir, *extra: str, timeout: int = 600) -> list[dict]:
    """`accelerate launch` (2 CPU processes, gloo) of `torl train configs/tiny_cpu.yaml`, 2 steps with a
    validation at step 2; returns metrics.jsonl."""
    data = run_dir.parent / "train.jsonl"
    from torl.data.schema import write_problems

    write_problems(arithmetic_problems(8), data)
    cmd = [python, "-m", "accelerate.commands.launch", "--config_file", str(CPU_DDP), "-m", "torl.train",
           str(TINY_CPU), f"model.path={model}", f"data.train_files=[{data}]", f"run_dir={run_dir}",
           "train.max_steps=2", "validation.every=2", *SMALL, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def check_ddp_run(run_dir, rows: list[dict]) -> None:
    """One gloo group of 2 (not two processes each training alone), 8 samples per step from both ranks."""
    start = json.loads((run_dir / "run.json").read_text())
    starts = start if isinstance(start, list) else start.get("starts", [start])
    assert any('"world_size": 2' in json.dumps(s) for s in starts), start
    steps = [r for r in rows if "train/num_samples" in r]
    assert [r["step"] for r in steps] == [1, 2], "one metrics line per step (only rank 0 writes)"
    assert all(r["train/num_samples"] == 8 for r in steps)
    assert all(r["train/engine_logprob_gap"] < 1e-3 for r in steps)
    assert any(r.get("val/mean_accuracy") is not None for r in rows)
