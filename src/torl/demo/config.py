"""The demo's configuration: an ordinary `torl train` config plus a `demo:` section.

configs/demo.yaml spells out `default_config_dict()`. The train sections (rollout, grpo, optim, ...) configure
the RL phase exactly as for any `torl train` run; the demo fills in `model.path` (the warm-started model),
`data.train_files` and `validation.files` (the generated problems) once it has built them. The `demo:` section
(`DemoSection`) says how to build the model, warm-start it, generate problems and evaluate.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from torl.config import apply_overrides, from_dict, override_keys
from torl.demo.model import DemoModelConfig
from torl.demo.problems import LEVELS
from torl.demo.warmstart import WarmStartConfig
from torl.errors import UserInputError
from torl.train.config import (
    TorlTrainConfig,
    check_environment,
    gradient_accumulation_steps,
    read_config_file,
    validate,
)

DEMO_KEY = "demo"
DEFAULT_RUN_DIR = "runs/demo"


@dataclass
class DemoSection:
    """minutes: time budget of the RL phase (it stops at train.max_steps or when the budget is spent).
    cache_dir: where the built and warm-started models are kept (default ~/.cache/torl/demo).
    train_problems, eval_problems: sizes of the generated RL set and the held-out set (disjoint, and disjoint
    from the warm-start corpus). levels: sizes of the RL and held-out problems (2-3: hard without a tool).
    val_problems: held-out problems validated greedily during training (the accuracy curve).
    seed: problem generation. threads: torch threads (0: leave torch's default)."""

    minutes: float = 4.0
    cache_dir: str | None = None
    model: DemoModelConfig = field(default_factory=DemoModelConfig)
    warmstart: WarmStartConfig = field(default_factory=WarmStartConfig)
    levels: list[int] = field(default_factory=lambda: [2, 3])
    train_problems: int = 2000
    eval_problems: int = 200
    val_problems: int = 64
    seed: int = 1234
    threads: int = 0

    def __post_init__(self) -> None:
        if self.minutes <= 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")
        if min(self.train_problems, self.eval_problems) < 1 or self.val_problems < 0:
            raise ValueError("train_problems and eval_problems must be >= 1, val_problems >= 0")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if not self.levels or not set(self.levels) <= set(LEVELS):
            raise ValueError(f"levels must be a non-empty subset of {list(LEVELS)}, got {self.levels}")

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir or Path.home() / ".cache" / "torl" / "demo").expanduser()


def default_config_dict() -> dict:
    """The demo's whole config as a mapping (what configs/demo.yaml holds)."""
    return {
        "run_dir": DEFAULT_RUN_DIR,
        "seed": 0,
        "model": {"dtype": "float32", "gradient_checkpointing": False},
        "data": {"template": "torl", "max_prompt_tokens": 400, "shuffle": True},
        "rollout": {"max_tool_calls": 1, "max_response_tokens": 96, "temperature": 1.0, "top_p": 1.0,
                    "stop": "```output", "observation_style": "torl", "exec_timeout": 5.0},
        "reward": {"correct_reward": 1.0, "wrong_reward": -1.0, "exec_penalty": False},
        "grpo": {"prompts_per_step": 16, "samples_per_prompt": 8, "micro_batch_size": 32, "loss_type": "dapo",
                 "clip_ratio": 0.2, "kl_coef": 0.0, "entropy_coef": 0.0, "scale_rewards": "group"},
        "optim": {"lr": 1e-3, "scheduler": "constant", "warmup_steps": 0, "weight_decay": 0.0,
                  "max_grad_norm": 1.0},
        "train": {"max_steps": 60, "save_every": 1000, "precision": "fp32", "dump_samples": True,
                  "save_final_model": True},
        "validation": {"every": 10, "at_start": True, "benchmarks": [], "temperature": 0.0},
        "engine": {"sandbox": "local", "sandbox_workers": 2, "generation_batch_size": 128},
        "logging": {"tensorboard": False, "progress": True},
        DEMO_KEY: _plain(asdict(DemoSection())),
    }


def _plain(d: dict) -> dict:
    return {k: (_plain(v) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def is_demo_config(path: str | Path) -> bool:
    """True when the YAML file at `path` has a top-level `demo:` section (`torl train` hands it to the demo)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and DEMO_KEY in raw


@dataclass
class DemoPlan:
    """A loaded demo config: the `demo:` section and the train sections (a raw mapping, completed and validated
    by `torl.train.config` once the model and data exist). `where`/`lines` locate errors in the file."""

    demo: DemoSection
    train_raw: dict
    where: str = "<defaults>"
    lines: dict = field(default_factory=dict)
    overridden: set = field(default_factory=set)

    @property
    def run_dir(self) -> Path:
        return Path(self.train_raw.get("run_dir") or DEFAULT_RUN_DIR)


def load_demo_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> DemoPlan:
    """Read a demo config (None: the built-in defaults) and apply dotted `key=value` overrides.

    Every key is checked (the train sections by torl.train's own loader, `demo.*` against `DemoSection`);
    errors name the file, line and key."""
    lines: dict[str, int] = {}
    where = "<defaults>"
    if path is None:
        raw = default_config_dict()
    else:
        raw, lines = read_config_file(path)
        where = str(path)
    raw = copy.deepcopy(raw)
    apply_overrides(raw, overrides)
    overridden = override_keys(overrides)
    demo_raw = raw.pop(DEMO_KEY, None)
    if demo_raw is None:
        raise UserInputError(f"{where}: no `{DEMO_KEY}:` section (is this a demo config?)")
    demo = from_dict(DemoSection, demo_raw, where=where, lines=lines, prefix=f"{DEMO_KEY}.",
                     overridden=overridden)
    for key in ("model.path", "data.train_files", "validation.files"):
        section, name = key.split(".")
        if name in (raw.get(section) or {}):
            raise UserInputError(f"{where}: {key}: set by the demo (it builds the model and the problems); "
                                 "remove it")
    # type-check the train sections now, before minutes are spent building the model
    from_dict(TorlTrainConfig, raw, where=where, lines=lines, overridden=overridden)
    return DemoPlan(demo, raw, where, lines, overridden)


def complete_train_config(plan: DemoPlan, *, model_path: Path, train_file: Path, val_file: Path | None,
                          run_dir: Path):
    """The validated `TorlTrainConfig` of the RL phase: the plan's train sections with the demo's model,
    problem files and run directory filled in."""
    raw = copy.deepcopy(plan.train_raw)
    raw["run_dir"] = str(run_dir)
    raw.setdefault("model", {})["path"] = str(model_path)
    raw.setdefault("data", {})["train_files"] = [str(train_file)]
    val = raw.setdefault("validation", {})
    val["files"] = [str(val_file)] if val_file is not None else []
    if val_file is None:
        val["every"], val["at_start"] = 0, False
    cfg = from_dict(TorlTrainConfig, raw, where=plan.where, lines=plan.lines, overridden=plan.overridden)
    validate(cfg, where=plan.where, lines=plan.lines, overridden=plan.overridden)
    check_environment(cfg, where=plan.where, lines=plan.lines, overridden=plan.overridden)
    return cfg


def preflight(plan: DemoPlan) -> None:
    """Check the train sections completely (cross-field rules, batch arithmetic) before minutes are spent
    building the model; the model and problem files are checked when they exist (`complete_train_config`)."""
    raw = copy.deepcopy(plan.train_raw)
    raw["run_dir"] = str(plan.run_dir / "train")
    raw.setdefault("model", {})["path"] = "<the warm-started demo model>"
    raw.setdefault("data", {})["train_files"] = ["<the demo's training problems>"]
    raw.setdefault("validation", {})["files"] = ["<the demo's held-out problems>"]
    cfg = from_dict(TorlTrainConfig, raw, where=plan.where, lines=plan.lines, overridden=plan.overridden)
    validate(cfg, where=plan.where, lines=plan.lines, overridden=plan.overridden)
    gradient_accumulation_steps(cfg, 1)
