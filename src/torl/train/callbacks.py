"""Trainer callbacks: per-step sample dumps and metrics, periodic greedy validation, metrics files, progress bar.

`TIRStepCallback.on_step_end` runs on every process after each optimizer step: it gathers the step's sample
records, and on the main process writes RUN_DIR/samples/step_NNNNNN.jsonl and computes the train/, time/ and
throughput/ metrics; every `validation.every` steps it runs the validator. The metrics are handed to the
trainer (`trainer.torl_logs`), which adds them to the step's log; `on_log` writes every log to
RUN_DIR/metrics.jsonl and TensorBoard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback

from torl.train.engine_gap import engine_gap_metrics
from torl.train.metrics import MetricsWriter, sample_metrics, timing_metrics
from torl.train.recorder import StepRecorder, write_sample_dump

log = logging.getLogger(__name__)

PROGRESS_KEYS = (("train/reward_mean", "reward"), ("train/accuracy", "acc"), ("train/code_ratio", "code"),
                 ("train/response_length", "len"), ("time/step_s", "s/step"))


class TIRStepCallback(TrainerCallback):
    """Needs `bind(trainer)` before training (the trainer holds the model, accelerator and log buffer).

    validator: `trainer -> (metrics, n_records)` or None. validate_every: steps between validations (0: never).
    validate_at_start: validate before the first step of a fresh run.
    """

    def __init__(self, run_dir: str | Path, recorder: StepRecorder, *, dump_samples: bool = True,
                 validator: Callable | None = None, validate_every: int = 0, validate_at_start: bool = False,
                 tensorboard: bool = True, progress: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.recorder = recorder
        self.dump_samples = dump_samples
        self.validator = validator
        self.validate_every = validate_every
        self.validate_at_start = validate_at_start
        self.tensorboard = tensorboard
        self.progress = progress
        self.trainer = None
        self.writer: MetricsWriter | None = None
        self._bar = None
        self._step_start = None
        self.last_metrics: dict = {}

    def bind(self, trainer) -> TIRStepCallback:
        self.trainer = trainer
        return self

    @property
    def is_main(self) -> bool:
        return self.trainer is None or self.trainer.accelerator.is_main_process

    # ------------------------------------------------------------------------------------------ hooks
    def on_train_begin(self, args, state, control, **kwargs):
        if self.is_main:
            self.writer = MetricsWriter(self.run_dir, tensorboard=self.tensorboard)
            if self.progress:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train", unit="step",
                                 dynamic_ncols=True)
        if self.validator is not None and self.validate_at_start and state.global_step == 0:
            metrics = self._validate()
            if self.trainer is not None:
                self.trainer.log(metrics)
        return control

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = time.perf_counter()
        return control

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        step_s = time.perf_counter() - (self._step_start or time.perf_counter())
        rec = self.recorder
        records = self._gather(rec.records)
        meter = getattr(self.trainer, "engine_gap", None)
        gap = meter.pop(self.trainer.accelerator) if meter is not None else None  # a collective: every rank
        metrics = engine_gap_metrics(gap) if self.is_main else {}
        if self.is_main:
            if self.dump_samples:
                write_sample_dump(self.run_dir, step, records)
            metrics.update(sample_metrics(records))
            metrics.update(timing_metrics(step_s=step_s, rollout_s=rec.rollout_s, tool_s=rec.tool_s,
                                          grading_s=rec.grading_s, model_tokens=rec.model_tokens,
                                          total_tokens=rec.total_tokens))
            metrics["train/num_samples"] = len(records)
        rec.reset()
        if self.validator is not None and self.validate_every and step % self.validate_every == 0:
            metrics.update(self._validate())
        if self.trainer is not None:
            self.trainer.torl_logs.update(metrics)
        self.last_metrics = metrics
        if self.is_main:
            self._show(step, metrics)
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.is_main and self.writer is not None and logs:
            self.writer.write(state.global_step, logs)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.writer is not None:
            self.writer.close()
        return control

    # ------------------------------------------------------------------------------------------ helpers
    def _gather(self, records: list[dict]) -> list[dict]:
        if self.trainer is None or self.trainer.accelerator.num_processes == 1:
            return list(records)
        from accelerate.utils import gather_object

        return list(gather_object(list(records)))

    def _validate(self) -> dict:
        start = time.perf_counter()
        metrics = self.validator(self.trainer)
        if self.is_main:
            log.info("validation at step %d: %s (%.1f s)", self.trainer.state.global_step if self.trainer else 0,
                     {k: round(v, 4) for k, v in metrics.items() if k.endswith("accuracy") and v is not None},
                     time.perf_counter() - start)
        return metrics

    def _show(self, step: int, metrics: dict) -> None:
        shown = {name: metrics.get(key) for key, name in PROGRESS_KEYS if metrics.get(key) is not None}
        if "val/mean_accuracy" in metrics and metrics["val/mean_accuracy"] is not None:
            shown["val"] = metrics["val/mean_accuracy"]
        text = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in shown.items()}
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix(text, refresh=True)
        else:
            log.info("step %d: %s", step, " ".join(f"{k}={v}" for k, v in text.items()))
