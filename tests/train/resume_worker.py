"""A training run that stops dead right after saving a given checkpoint, until it is killed (test_resume.py).

    python -m tests.train.resume_worker MODEL TRAIN_FILE RUN_DIR STOP_AFTER [KEY=VALUE ...]

It writes RUN_DIR/paused-at-<step> once checkpoint-<step> is complete, then sleeps: the test SIGKILLs it.
Its responses open with tokens the live policy samples (`sampled_opening_factory`), so the test can compare them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from tests.train.conftest import make_config, scripted_response
from torl.rollout.backends.base import Backend, Generation, GenerationRequest

OPENING_TOKENS = 6


class SampledOpening(Backend):
    """Round 0 of each sample opens with OPENING_TOKENS tokens the live policy samples with the round's seed,
    then follows the training tests' script (code, then a right or a wrong answer): the script gives rewards that
    move the weights, the opening shows which weights and seed sampled it."""

    name = "sampled-opening"

    def __init__(self, model: Backend, tokenizer) -> None:
        from torl.rollout import make_backend

        self.model, self.tokenizer = model, tokenizer
        self.script = make_backend("replay", tokenizer, scripts=lambda r: scripted_response(r, tokenizer))
        self.eos = set(getattr(model, "eos_ids", [tokenizer.eos_token_id]))

    async def agenerate(self, request: GenerationRequest) -> Generation:
        scripted = await self.script.agenerate(request)
        if request.round_index:
            return scripted
        opening = await self.model.agenerate(dataclasses.replace(request, max_new_tokens=OPENING_TOKENS, stop=()))
        ids = opening.token_ids[: next((i for i, t in enumerate(opening.token_ids) if t in self.eos), None)]
        return Generation(ids + scripted.token_ids, opening.logprobs[: len(ids)] + scripted.logprobs,
                          scripted.finish_reason, scripted.stop_text)


def sampled_opening_factory(tokenizer, max_batch_size: int = 64):
    """A backend factory for TIRRolloutFunction: SampledOpening on the trainer's live model."""
    from torl.train.rollout_func import hf_backend

    @contextlib.contextmanager
    def factory(trainer):
        with hf_backend(trainer, max_batch_size=max_batch_size) as model:
            yield SampledOpening(model, tokenizer)

    return factory


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
    from torl.train.trainer import build_trainer, load_policy_tokenizer

    model, train_file, run_dir, stop, *overrides = argv
    run_dir = Path(run_dir)
    cfg = make_config(run_dir, Path(model), Path(train_file), *overrides)
    # other batches than the reference run's: seeded samples must not care
    run = build_trainer(cfg, backend_factory=sampled_opening_factory(load_policy_tokenizer(model), max_batch_size=3),
                        callbacks=[PauseAfterSave(run_dir, int(stop))])
    run.trainer.train()


if __name__ == "__main__":
    main(sys.argv[1:])
