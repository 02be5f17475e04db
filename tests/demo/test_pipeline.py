"""A shortened demo (every phase, seconds): the report, the plots, the trained model and the cache."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.demo.conftest import DEMO_YAML, SHORT
from torl.errors import UserInputError

REPORT_KEYS = ("accuracy_before", "accuracy_after", "accuracy_after_no_tools", "code_ratio_first_steps",
               "code_ratio_last_steps", "wall_seconds")


def test_report_json_has_sane_numbers(short_demo):
    plan, result, seconds, printed = short_demo
    report = json.loads(result.report_json.read_text())
    for key in REPORT_KEYS:
        assert key in report, key
    for key in ("accuracy_before", "accuracy_after", "accuracy_after_no_tools", "accuracy_before_no_tools",
                "code_ratio_first_steps", "code_ratio_last_steps"):
        assert 0.0 <= report[key] <= 1.0, (key, report[key])
    assert 0 < report["wall_seconds"] <= seconds + 1
    assert report["rl"]["steps"] == 2 and not report["rl"]["stopped_by_time_budget"]
    assert report["rl"]["time_budget_minutes"] == 5.0  # --minutes 5
    assert report["eval"]["heldout_problems"] == 6
    assert set(report["targets"]) and all(isinstance(v, bool) for v in report["targets"].values())
    assert set(report["phase_seconds"]) == {"model", "problems", "eval_before", "rl", "eval_after", "report"}
    # the numbers are the evaluation's own: recount them from the per-sample files
    for label, key in (("before_tools", "accuracy_before"), ("after_tools", "accuracy_after"),
                       ("after_no_tools", "accuracy_after_no_tools")):
        lines = (result.out_dir / "eval" / label / "samples" / "heldout.jsonl").read_text().splitlines()
        samples = [json.loads(x) for x in lines]
        assert len(samples) == 6
        assert report[key] == pytest.approx(sum(s["correct"] for s in samples) / 6)
        if "no_tools" in label:
            assert all(s["num_executions"] == 0 for s in samples)


def test_training_went_through_torl_train(short_demo):
    plan, result, _, _ = short_demo
    run = result.out_dir / "train"
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = {m["step"] for m in metrics if "train/code_ratio" in m}
    assert steps == {1, 2}
    # greedy validation on the first 3 held-out problems during training, before the first step and after each
    assert [m["step"] for m in metrics if "val/heldout_first3/accuracy" in m] == [0, 1, 2]
    dump = [json.loads(x) for x in (run / "samples" / "step_000001.jsonl").read_text().splitlines()]
    assert len(dump) == 4  # 2 prompts x 2 samples
    assert {"prompt", "response", "reward", "correct", "num_executions", "tool_calls"} <= set(dump[0])
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["model"]["path"].endswith("warm") and cfg["grpo"]["samples_per_prompt"] == 2


def test_report_md_shows_numbers_and_existing_plots(short_demo):
    _, result, _, _ = short_demo
    md = result.report_md.read_text()
    report = json.loads(result.report_json.read_text())
    assert f"{100 * report['accuracy_after']:.1f}%" in md
    images = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    names = {img.split("/")[-1] for img in images}
    assert {"accuracy.png", "code_ratio.png", "response_length.png"} <= names
    for img in images:
        png = result.out_dir / img
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trained_model_is_a_transformers_directory_evaluated_after_rl(short_demo):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, result, _, _ = short_demo
    assert result.model_dir == result.out_dir / "model"
    AutoModelForCausalLM.from_pretrained(result.model_dir)
    AutoTokenizer.from_pretrained(result.model_dir)
    trained = yaml.safe_load((result.out_dir / "train" / "config.yaml").read_text())["rollout"]
    for label, calls in (("after_tools", trained["max_tool_calls"]), ("after_no_tools", 0)):
        run = json.loads((result.out_dir / "eval" / label / "run.json").read_text())
        # the training rollout settings, greedy
        assert run["model"] == str(result.model_dir)
        assert run["rollout"] == {**trained, "temperature": 0.0, "max_tool_calls": calls}


def test_second_run_reuses_the_cached_model_and_refuses_to_overwrite(short_demo, tmp_path):
    from torl.demo.config import load_demo_config
    from torl.demo.pipeline import prepare_model

    plan, result, _, _ = short_demo
    report = json.loads(result.report_json.read_text())
    assert report["model"]["cached"] is False
    again, info = prepare_model(plan.demo, progress=False)
    assert info["cached"] is True and str(again) == report["model"]["warm_started"]
    with pytest.raises(UserInputError, match="already holds a demo run"):
        from torl.demo.pipeline import run_demo

        run_demo(load_demo_config(DEMO_YAML, [*SHORT, f"run_dir={result.out_dir}"]), progress=False)


def test_summary_names_the_report_and_the_model(short_demo):
    _, result, _, printed = short_demo
    assert f"report: {result.report_md}" in printed
    assert f"trained model: {result.model_dir}" in printed
    assert "held-out accuracy with the code interpreter" in printed


def test_time_budget_stops_training_after_the_step_that_spends_it():
    import time

    from transformers import TrainerControl

    from torl.demo.pipeline import TimeBudget

    budget = TimeBudget(0.05)
    control = TrainerControl()
    budget.callback.on_step_begin(None, None, control)
    budget.callback.on_step_end(None, None, control)
    assert not control.should_training_stop and not budget.hit
    time.sleep(0.06)
    budget.callback.on_step_begin(None, None, control)  # the clock started at the first step, not now
    budget.callback.on_step_end(None, None, control)
    assert control.should_training_stop and budget.hit


def test_command_line_maps_out_and_minutes_to_config_keys():
    import argparse

    from torl.demo import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["demo", "--out", "runs/x", "--minutes", "2.5", "optim.lr=1e-3"])
    assert cli.overrides_from(args) == ["optim.lr=1e-3", "run_dir=runs/x", "demo.minutes=2.5"]
    assert args.config is None and not args.overwrite
    from torl.demo.config import load_demo_config

    plan = load_demo_config(args.config, cli.overrides_from(args))
    assert plan.demo.minutes == 2.5 and str(plan.run_dir) == "runs/x" and plan.train_raw["optim"]["lr"] == 1e-3
