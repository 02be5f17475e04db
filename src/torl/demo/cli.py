"""`torl demo`: the whole TORL pipeline on a laptop CPU in minutes (and `torl train configs/demo.yaml`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from torl.demo.config import load_demo_config
from torl.demo.pipeline import run_demo
from torl.demo.report import summary_text

EPILOG = """\
examples:
  torl demo                                   # -> runs/demo/report.md (about 6-8 minutes on 2 CPU cores)
  torl demo --out runs/demo2 --minutes 2      # a shorter RL phase
  torl demo grpo.samples_per_prompt=16 optim.lr=1e-3 demo.warmstart.tool_fraction=0.2
  torl train configs/demo.yaml                # the same run, from the config file

Overrides are dotted keys of configs/demo.yaml with YAML values.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole TORL pipeline on a CPU in minutes: a small model learns to use the code interpreter",
        description="Build a small model locally, warm-start it, evaluate it, train it with GRPO and the code "
                    "interpreter (the same rollout loop, sandbox, grader, trainer and plots as a full-scale "
                    "run), evaluate it again with and without tools, and write report.md / report.json.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides, e.g. optim.lr=1e-3")
    p.add_argument("--out", metavar="DIR", help="output directory (default: runs/demo)")
    p.add_argument("--minutes", type=float, metavar="N", help="time budget of the RL phase in minutes (default 4)")
    p.add_argument("--config", metavar="FILE", help="a demo config file (default: the built-in one, as in "
                                                    "configs/demo.yaml)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in the output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_demo_command)


def overrides_from(args) -> list[str]:
    """The config overrides of a `torl demo` command line: KEY=VALUE items, then --out and --minutes."""
    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"run_dir={args.out}")
    if args.minutes is not None:
        overrides.append(f"demo.minutes={args.minutes}")
    return overrides


def run_demo_command(args) -> int:
    run_demo_config(args.config, overrides_from(args), overwrite=args.overwrite, progress=not args.quiet)
    return 0


def run_demo_config(path: str | Path | None, overrides: list[str], *, overwrite: bool = False,
                    progress: bool = True):
    """Load a demo config (None: the built-in one), run the demo, print the summary; returns the DemoResult.
    `torl train CONFIG` hands a config with a `demo:` section to this function."""
    plan = load_demo_config(path, overrides)
    result = run_demo(plan, overwrite=overwrite, progress=progress)
    print(summary_text(result.report, result.report_md))
    return result
