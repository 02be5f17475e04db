"""`torl train` and `torl plot`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torl.errors import UserInputError
from torl.train.config import gradient_accumulation_steps, load_config
from torl.train.plot import plot_run
from torl.train.rundir import RunComplete

TRAIN_EPILOG = """\
examples:
  torl train configs/tiny_cpu.yaml
  torl train configs/tiny_cpu.yaml train.max_steps=4 run_dir=runs/try
  torl train configs/tiny_cpu.yaml --resume              # continue runs/tiny_cpu from its last checkpoint
  torl train runs/tiny_cpu --resume                      # the same, from the run directory's config
  torl train configs/torl_1.5b.yaml --print-config       # the resolved config, nothing runs
  accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m torl.train configs/torl_1.5b.yaml

Overrides are dotted keys with YAML values: optim.lr=2e-6, validation.benchmarks=[aime24,math500], trl.ddp_timeout=7200.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="GRPO training with tool-integrated rollouts (TRL GRPOTrainer)",
        description="Train a model with TORL: GRPO on TRL with torl's tool-integrated rollout, from one config file.",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(p)
    p.set_defaults(func=run_train)

    q = subparsers.add_parser(
        "plot", help="training-dynamics figures and an HTML report of a run",
        description="Render accuracy, code ratio, code pass ratio and response length vs step (train and "
                    "validation) from RUN_DIR/metrics.jsonl to PNG files and RUN_DIR/report/index.html.")
    q.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `torl train`")
    q.add_argument("--out", help="output directory (default: RUN_DIR/report)")
    q.set_defaults(func=run_plot)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="a YAML config file, or a run directory (its config.yaml)")
    # REMAINDER, so that flags may also follow the overrides (`torl train cfg.yaml a=1 --resume`); see split_flags
    p.add_argument("overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE",
                   help="dotted overrides, e.g. optim.lr=2e-6")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in run_dir from its last checkpoint (step, optimizer, scheduler, data "
                        "order, RNG)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and the trainer's batch arithmetic, then exit")


FLAGS = {"--resume": "resume", "--print-config": "print_config"}


def split_flags(args) -> None:
    """Move flags written among the overrides into `args`; anything else starting with "-" is an error."""
    rest = []
    for item in args.overrides:
        if item in FLAGS:
            setattr(args, FLAGS[item], True)
        elif item.startswith("-"):
            raise UserInputError(f"unknown option {item!r} (options: {', '.join(FLAGS)}; overrides are KEY=VALUE)")
        else:
            rest.append(item)
    args.overrides = rest


def resolve_config_path(arg: str) -> tuple[Path, list[str]]:
    """CONFIG may be a run directory: then its config.yaml, with run_dir pinned to that directory."""
    path = Path(arg)
    if path.is_dir():
        cfg = path / "config.yaml"
        if not cfg.is_file():
            raise UserInputError(f"{path}: a directory without config.yaml is not a run directory")
        return cfg, [f"run_dir={path}"]
    return path, []


def run_train(args) -> int:
    """`torl train CONFIG [KEY=VALUE ...]`: one training run (`torl.cli` sends demo configs to `torl.demo`)."""
    split_flags(args)
    path, pinned = resolve_config_path(args.config)
    cfg = load_config(path, [*pinned, *args.overrides])
    if args.print_config:
        from torl.train.trainer import world_size

        n = world_size()
        print(cfg.to_yaml(), end="")
        print(f"# {n} process(es): {cfg.grpo.prompts_per_step} prompts x {cfg.grpo.samples_per_prompt} samples "
              f"per step, micro-batch {cfg.grpo.micro_batch_size}, gradient accumulation "
              f"{gradient_accumulation_steps(cfg, n)}")
        return 0
    from torl.train.trainer import train

    try:
        train(cfg, resume=args.resume)
    except RunComplete as done:
        print(f"torl train: {done}", file=sys.stderr)
        return 0
    print(f"run written to {cfg.run_dir}", file=sys.stderr)
    return 0


def run_plot(args) -> int:
    out = plot_run(args.run_dir, args.out)
    print(out / "index.html")
    return 0
