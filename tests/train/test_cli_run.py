"""`torl train` end to end on CPU: a randomly initialised tiny model generating for real, the real sandbox and
grader, validation, checkpoints, sample dumps, metrics; then `torl plot` on the run directory."""

from __future__ import annotations

import json

from torl.reward import extract_answer, is_equivalent

from .conftest import TINY_CPU

DUMP_KEYS = {"step", "problem_id", "source", "prompt", "response", "reward", "correct", "num_executions",
             "tool_calls"}


def test_torl_train_and_plot(tmp_path, tiny_model, capsys):
    from torl.train.__main__ import main
    from torl.train.cli import register

    run_dir = tmp_path / "run"
    args = [str(TINY_CPU), f"run_dir={run_dir}", f"model.path={tiny_model}", "train.max_steps=2",
            "train.save_every=2", "grpo.prompts_per_step=2", "grpo.samples_per_prompt=4", "grpo.micro_batch_size=4",
            "rollout.max_response_tokens=32", "validation.every=2", "validation.max_items=2",
            "engine.sandbox_workers=1", "logging.progress=false"]
    assert main(args) == 0

    # resolved config, checkpoint, final model
    from torl.train.config import load_config

    saved = load_config(run_dir / "config.yaml")
    assert saved.train.max_steps == 2 and saved.model.path == str(tiny_model)
    ckpt = run_dir / "checkpoint-2"
    for f in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert (ckpt / f).is_file(), f
    assert (run_dir / "final" / "model.safetensors").is_file() and (run_dir / "final" / "tokenizer.json").is_file()
    assert "Running training" in (run_dir / "train.log").read_text()

    # sample dumps in the fixed format, graded for real
    from torl.data.readers import read_problems

    problems = {p.id: p for p in read_problems(saved.data.train_files[0])}
    for step in (1, 2):
        recs = [json.loads(x) for x in (run_dir / "samples" / f"step_{step:06d}.jsonl").read_text().splitlines()]
        assert len(recs) == 8
        for r in recs:
            assert set(r) >= DUMP_KEYS and r["step"] == step
            gold = problems[r["problem_id"]].answer
            pred = extract_answer(r["response"])
            assert r["correct"] == (pred is not None and is_equivalent(pred, gold))
            assert r["reward"] == (1.0 if r["correct"] else -1.0)
            assert r["num_executions"] == len(r["tool_calls"])

    # metrics: step-0 and step-2 validation, train metrics every step, TensorBoard events
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in recs if "train/accuracy" in r]
    val_steps = [r["step"] for r in recs if "val/mean_accuracy" in r]
    assert train_steps == [1, 2] and val_steps == [0, 2]
    step1 = next(r for r in recs if r["step"] == 1 and "train/accuracy" in r)
    for key in ("train/reward_mean", "train/code_ratio", "train/executions_per_response",
                "train/observation_token_share", "train/response_length", "train/truncated_ratio", "time/rollout_s",
                "time/tool_exec_s", "time/grading_s", "time/update_s", "throughput/generated_tokens_per_s",
                "entropy", "loss", "grad_norm", "learning_rate"):
        assert key in step1, key
    assert 0 < step1["train/response_length"] <= 32
    val = json.loads((run_dir / "val" / "step_000002.json").read_text())
    assert val["n"] == 2 and "val/tiny_arith_val/accuracy" in val
    assert list((run_dir / "tensorboard").iterdir())

    # torl plot
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    ns = parser.parse_args(["plot", str(run_dir)])
    assert ns.func(ns) == 0
    report = run_dir / "report"
    assert str(report / "index.html") in capsys.readouterr().out
    for name in ("accuracy", "code_ratio", "response_length", "time_split"):
        assert (report / f"{name}.png").stat().st_size > 1000
