"""The `torl` command line: one entry point, one subcommand per part of the system.

Each subcommand lives next to the code it fronts (`torl/<part>/cli.py`) and exposes
`register(subparsers)`; heavy imports happen inside the handlers so `torl --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import torl
from torl.demo.cli import run_demo_config
from torl.demo.config import is_demo_config
from torl.errors import UserInputError
from torl.train.cli import resolve_config_path, run_train, split_flags

# Modules that add subcommands, in the order `torl --help` shows them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "torl.sandbox.cli",
    "torl.reward.cli",
    "torl.rollout.cli",
    "torl.train.cli",
    "torl.eval.cli",
    "torl.data.cli",
    "torl.demo.cli",
    "torl.verl.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torl",
        description="Tool-integrated RL for language models: sandbox, rollout, reward, train, eval, data, demo.",
    )
    parser.add_argument("--version", action="version", version=f"torl {torl.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    sub.choices["train"].set_defaults(func=train_or_demo)
    return parser


def train_or_demo(args) -> int:
    """`torl train CONFIG`: a config with a `demo:` section (configs/demo.yaml) runs the whole demo around its
    RL phase; any other config is a training run. Dispatched here, above both parts, so neither imports the other
    upward."""
    split_flags(args)
    path, pinned = resolve_config_path(args.config)
    if not is_demo_config(path):
        return run_train(args)
    if args.resume or args.print_config:
        raise UserInputError(f"{path}: --resume and --print-config do not apply to the demo config")
    run_demo_config(path, [*pinned, *args.overrides])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        # a command group without its subcommand prints that group's help
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserInputError as e:
        print(f"torl {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
