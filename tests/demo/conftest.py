"""Fixtures of the demo tests: a shortened demo (every phase, seconds instead of minutes), run once."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_YAML = REPO / "configs" / "demo.yaml"

# every phase of the default demo, shrunk: a ~20k-parameter model, 40 warm-start steps, 2 GRPO steps
SHORT = [
    "demo.model.vocab_size=1600", "demo.model.hidden_size=32", "demo.model.num_layers=1", "demo.model.num_heads=2",
    "demo.model.num_kv_heads=1", "demo.model.intermediate_size=64",
    "demo.warmstart.examples=300", "demo.warmstart.steps=40", "demo.warmstart.batch_size=8",
    "demo.warmstart.tool_fraction=0.5", "demo.train_problems=8", "demo.eval_problems=6", "demo.val_problems=3",
    "grpo.prompts_per_step=2", "grpo.samples_per_prompt=2", "grpo.micro_batch_size=4",
    "rollout.max_response_tokens=48", "train.max_steps=2", "validation.every=1", "engine.sandbox_workers=1",
    "engine.generation_batch_size=8", "demo.threads=1",
]


@pytest.fixture(scope="session")
def short_demo(tmp_path_factory):
    """(plan, result, seconds, printed summary) of one shortened demo run through the `torl demo` command line
    into a temporary directory (model cache included)."""
    import argparse
    import contextlib
    import io
    import time

    from torl.demo import cli
    from torl.demo.config import load_demo_config

    root = tmp_path_factory.mktemp("demo")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    overrides = [*SHORT, f"demo.cache_dir={root / 'cache'}"]
    args = parser.parse_args(["demo", "--config", str(DEMO_YAML), "--out", str(root / "out"), "--minutes", "5",
                              "--quiet", *overrides])
    assert args.func is cli.run_demo_command
    printed = io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stdout(printed):
        result = cli.run_demo_config(args.config, cli.overrides_from(args), progress=not args.quiet)
    seconds = time.monotonic() - start
    plan = load_demo_config(DEMO_YAML, cli.overrides_from(args))
    return plan, result, seconds, printed.getvalue()
