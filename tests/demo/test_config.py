"""The demo config: configs/demo.yaml is exactly the built-in default; overrides and errors behave like
`torl train`'s."""

from __future__ import annotations

import pytest

from tests.demo.conftest import DEMO_YAML
from torl.demo.config import DemoSection, default_config_dict, is_demo_config, load_demo_config
from torl.errors import UserInputError


def test_demo_yaml_is_the_built_in_default():
    import yaml

    assert yaml.safe_load(DEMO_YAML.read_text()) == default_config_dict()
    from_file, built_in = load_demo_config(DEMO_YAML), load_demo_config(None)
    assert from_file.demo == built_in.demo == DemoSection()
    assert from_file.train_raw == built_in.train_raw
    assert is_demo_config(DEMO_YAML)
    assert not is_demo_config(DEMO_YAML.parent / "tiny_cpu.yaml")


def test_overrides_reach_both_sections():
    plan = load_demo_config(DEMO_YAML, ["optim.lr=1e-3", "demo.minutes=2", "demo.warmstart.tool_fraction=0.2",
                                        "run_dir=/tmp/x"])
    assert plan.train_raw["optim"]["lr"] == 1e-3
    assert plan.demo.minutes == 2.0 and plan.demo.warmstart.tool_fraction == 0.2
    assert str(plan.run_dir) == "/tmp/x"


@pytest.mark.parametrize("override, message", [
    ("demo.minuts=3", "demo.minuts: unknown key (did you mean demo.minutes?)"),
    ("demo.minutes=-1", "minutes must be > 0"),
    ("demo.warmstart.tool_fraction=2", "tool_fraction must be in [0, 1]"),
    ("grpo.clip_ratio=high", "grpo.clip_ratio: expected a number"),
    ("model.path=/somewhere", "model.path: set by the demo"),
    ("data.train_files=[a.jsonl]", "data.train_files: set by the demo"),
    ("demo.levels=[5]", "levels must be a non-empty subset of [1, 2, 3]"),
    ("demo.warmstart.levels=[]", "levels must be a non-empty subset of [1, 2, 3]"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(UserInputError, match=__import__("re").escape(message)):
        load_demo_config(DEMO_YAML, [override])


def test_errors_in_a_file_name_its_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = DEMO_YAML.read_text().replace("  train_problems: 2000", "  train_problemz: 2000")
    bad.write_text(text)
    line = text.splitlines().index("  train_problemz: 2000") + 1
    with pytest.raises(UserInputError, match=f"{bad}:{line}: demo.train_problemz: unknown key"):
        load_demo_config(bad)
    no_demo = tmp_path / "plain.yaml"
    no_demo.write_text("run_dir: x\n")
    with pytest.raises(UserInputError, match="no `demo:` section"):
        load_demo_config(no_demo)


@pytest.mark.parametrize("override, message", [
    ("grpo.samples_per_prompt=1",
     "command-line override grpo.samples_per_prompt: GRPO needs at least 2 samples per prompt"),
    ("grpo.micro_batch_size=7", "grpo.micro_batch_size (7) must divide"),
    ("rollout.temperature=0",
     "command-line override rollout.temperature: training samples must be drawn with temperature > 0"),
])
def test_preflight_rejects_bad_training_settings_before_any_work(override, message, tmp_path):
    """Cross-field rules of `torl train` hold for the demo too, and fail before the model is built (naming the
    override, not a line of the file, for a value given on the command line)."""
    import re

    from torl.demo.pipeline import run_demo

    plan = load_demo_config(DEMO_YAML, [override, f"run_dir={tmp_path / 'out'}", f"demo.cache_dir={tmp_path}/c"])
    with pytest.raises(UserInputError, match=re.escape(message)):
        run_demo(plan, progress=False)
    assert not (tmp_path / "c").exists() and not (tmp_path / "out").exists()
