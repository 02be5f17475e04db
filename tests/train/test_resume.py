"""Resume: a run killed (SIGKILL) right after a checkpoint continues exactly: step counter, data order across an
epoch boundary, optimizer state, weights, the sampled responses and the metrics match a run that was never
interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from .conftest import REPO, arithmetic_problems, make_config
from .resume_worker import sampled_opening_factory

# 4 problems, 2 per step: steps 1-2 are epoch 0, step 3 opens epoch 1 (a fresh shuffle)
OVERRIDES = ["train.max_steps=3", "train.save_every=1", "optim.lr=1e-3", "seed=1", "rollout.temperature=1.0"]
TIMING = ("time/", "throughput/", "step_time", "train/engine_logprob_gap")


def step_records(run_dir: Path, step: int) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples" / f"step_{step:06d}.jsonl").read_text().splitlines()]


def step_ids(run_dir: Path, step: int) -> list[str]:
    return [r["problem_id"] for r in step_records(run_dir, step)]


def step_metrics(run_dir: Path) -> list[dict]:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in records if "train/accuracy" in r]


def train_in_process(run_dir, model, data, tokenizer, sandbox, *, resume=False):
    from torl.train.trainer import build_trainer

    run = build_trainer(make_config(run_dir, model, data, *OVERRIDES), resume=resume,
                        backend_factory=sampled_opening_factory(tokenizer), sandbox=sandbox)
    try:
        run.trainer.train(resume_from_checkpoint=run.resume_from)
    finally:
        run.close()
    return run


def start_killable(run_dir, model, data) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRL_EXPERIMENTAL_SILENCE": "1"}
    cmd = [sys.executable, "-m", "tests.train.resume_worker", str(model), str(data), str(run_dir), "2", *OVERRIDES]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def test_killed_run_resumes_exactly(tmp_path, tiny_model, tiny_tokenizer, local_sandbox):
    from torl.data.schema import write_problems

    data = tmp_path / "train.jsonl"
    write_problems(arithmetic_problems(4), data)

    # the run to interrupt starts first (in its own process), the uninterrupted reference trains meanwhile
    killed_dir = tmp_path / "killed"
    proc = start_killable(killed_dir, tiny_model, data)
    try:
        ref_dir = tmp_path / "reference"
        ref = train_in_process(ref_dir, tiny_model, data, tiny_tokenizer, local_sandbox)
        deadline = time.time() + 240
        while not (killed_dir / "paused-at-2").exists():
            if proc.poll() is not None:
                pytest.fail(f"the run to kill exited early: {proc.stderr.read().decode()[-3000:]}")
            if time.time() > deadline:
                pytest.fail("the run to kill did not reach its step-2 checkpoint in time")
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (killed_dir / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (killed_dir / "checkpoint-3").exists()

    # the data order really changes at the epoch boundary (so a sampler replaying epoch 0 would be caught)
    ref_steps = [step_ids(ref_dir, s) for s in (1, 2, 3)]
    assert ref_steps[2] != ref_steps[0]

    with pytest.raises(Exception, match="already holds a run"):
        train_in_process(killed_dir, tiny_model, data, tiny_tokenizer, local_sandbox)  # no --resume: refused
    resumed = train_in_process(killed_dir, tiny_model, data, tiny_tokenizer, local_sandbox, resume=True)
    assert resumed.resume_from.endswith("checkpoint-2")
    assert resumed.trainer.state.global_step == 3

    # step counter and logs: every step exactly once
    steps = [json.loads(x)["step"] for x in (killed_dir / "metrics.jsonl").read_text().splitlines()
             if "train/accuracy" in x]
    assert steps == [1, 2, 3]
    # data order: the same prompts in the same order as the uninterrupted run, step by step
    assert [step_ids(killed_dir, s) for s in (1, 2, 3)] == ref_steps
    # the same samples: each response opens with what the policy sampled (its weights, the sample's seed)
    for s in (1, 2, 3):
        assert step_records(killed_dir, s) == step_records(ref_dir, s), f"step {s}"
    openings = [r["response"].split("I will compute it.")[0] for s in (1, 2, 3) for r in step_records(ref_dir, s)]
    assert len(set(openings)) > len(openings) // 2  # openings differ: they are sampled
    assert step_metrics(killed_dir) == step_metrics(ref_dir)
    assert "missing keys" not in (killed_dir / "train.log").read_text()
    # optimizer state and weights after step 3 equal the uninterrupted run's
    opt_a = torch.load(killed_dir / "checkpoint-3" / "optimizer.pt", weights_only=False)["state"]
    opt_b = torch.load(ref_dir / "checkpoint-3" / "optimizer.pt", weights_only=False)["state"]
    assert opt_a.keys() == opt_b.keys() and len(opt_a) > 0
    for k in opt_a:
        assert float(opt_a[k]["step"]) == float(opt_b[k]["step"]) == 3.0
        assert torch.allclose(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"], atol=1e-7)
        assert torch.allclose(opt_a[k]["exp_avg_sq"], opt_b[k]["exp_avg_sq"], atol=1e-9)
    assert any(v["exp_avg"].abs().sum() > 0 for v in opt_a.values())
    for a, b in zip(resumed.trainer.model.parameters(), ref.trainer.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
