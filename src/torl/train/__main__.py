"""`python -m torl.train CONFIG [KEY=VALUE ...] [--resume]`: `torl train` as a module, for launchers.

    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml -m torl.train configs/torl_1.5b.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys

from torl.errors import UserInputError
from torl.train.cli import TRAIN_EPILOG, add_train_arguments, run_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m torl.train", epilog=TRAIN_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_train(args)
    except UserInputError as e:
        print(f"torl train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
