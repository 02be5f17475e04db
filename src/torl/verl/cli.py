"""`torl verl train RECIPE [KEY=VALUE ...]`: print the full veRL command of a recipe, then run it."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from torl.errors import UserInputError
from torl.verl.config import LoopSettings
from torl.verl.failures import SandboxUnavailable
from torl.verl.recipe import format_command, load_recipe
from torl.verl.sandbox import NodeSandbox

EXAMPLES = """examples:
  torl verl train configs/verl/torl_1.5b.yaml --dry-run
  torl verl train configs/verl/torl_1.5b.yaml torl.sandbox=http://127.0.0.1:8080 trainer.nnodes=2
  torl verl train configs/verl/torl_7b.yaml reward_kwargs.exec_penalty=true trainer.experiment_name=penalty
"""


def register(subparsers) -> None:
    group = subparsers.add_parser("verl", help="run TORL on veRL (multi-node): launch recipes")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="verl_command", metavar="SUBCOMMAND")
    t = sub.add_parser(
        "train",
        help="build the veRL command of a recipe (configs/verl/*.yaml), print it and run it",
        description="Build `python -m verl.trainer.main_ppo ...` from a recipe: its veRL keys, the torl_tir agent "
        "loop, torl's reward, and the overrides. KEY=VALUE goes to the recipe's section named by its prefix "
        "(torl.*, reward_kwargs.*), anything else is a veRL key. Needs veRL (pip install verl==0.9.1) and GPUs; "
        "on a multi-node Ray cluster run it on the head node.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("recipe", help="recipe YAML (sections verl, torl, reward_kwargs)")
    # REMAINDER: overrides may come before or after --dry-run (argparse's "*" would stop at the option)
    t.add_argument("overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="recipe/veRL overrides")
    t.add_argument("--dry-run", action="store_true", help="print the command only")
    t.add_argument("--python", default=sys.executable, help="the Python that runs veRL (default: this one)")
    t.set_defaults(func=_train)


def _train(args) -> int:
    overrides = [o for o in args.overrides if o != "--dry-run"]
    dry_run = args.dry_run or len(overrides) < len(args.overrides)
    recipe = load_recipe(args.recipe, overrides)
    command = recipe.command(args.python)
    print(format_command(command), flush=True)
    if dry_run:
        return 0
    check_head_sandbox(recipe)
    return subprocess.call(command, env=os.environ.copy())


def check_head_sandbox(recipe) -> None:
    """Before launching: the sandbox server named by torl.sandbox must run code on this (the head) node; every
    other node's is checked by its first agent-loop worker (a config error that stops the run)."""
    spec = LoopSettings.from_mapping(recipe.torl).sandbox
    if spec == "local":
        return
    try:
        NodeSandbox(spec).close()
    except SandboxUnavailable as e:
        raise UserInputError(str(e)) from None
