"""A training run that stops dead right after saving a given checkpoint, until it is killed (test_resume.py).

    python -m tests.train.resume_worker MODEL TRAIN_FILE RUN_DIR STOP_AFTER [KEY=VALUE ...]

It writes RUN_DIR/paused-at-<step> once checkpoint-<step> is complete, then sleeps: the test SIGKILLs it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from tests.train.conftest import make_config, replay_factory


class PauseAfterSave(TrainerCallback):
    def __init__(self, run_dir: Path, step: int) -> None:
        self.run_dir, self.step = run_dir, step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            (self.run_dir / f"paused-at-{self.step}").write_text("")
            while True:
                time.sleep(60)
        return control


def main(argv: list[str]) -> None:
    from torl.train.trainer import build_trainer, load_tokenizer

    model, train_file, run_dir, stop, *overrides = argv
    run_dir = Path(run_dir)
    cfg = make_config(run_dir, Path(model), Path(train_file), *overrides)
    run = build_trainer(cfg, backend_factory=replay_factory(load_tokenizer(model)),
                        callbacks=[PauseAfterSave(run_dir, int(stop))])
    run.trainer.train()


if __name__ == "__main__":
    main(sys.argv[1:])
