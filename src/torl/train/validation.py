"""Greedy validation during training, with the training loop itself (same template, tool loop, sandbox, grader).

Every process rolls out its share of the problems (round robin) on the current weights; the records are
gathered on the main process, written to RUN_DIR/val/step_NNNNNN.jsonl and turned into val/... metrics.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from torl.data.schema import Problem
from torl.rollout import RolloutConfig, build_prompt
from torl.rollout.seeds import derive_seed
from torl.train.metrics import benchmark_metrics
from torl.train.recorder import rollout_fields
from torl.train.rewards import grade_responses
from torl.train.rollout_func import run_rollouts_on_device
from torl.train.vllm_sync import server_generation_barrier

VAL_DIR = "val"


def validation_rollout_config(train: RolloutConfig, *, temperature: float = 0.0,
                              max_response_tokens: int | None = None) -> RolloutConfig:
    """The training RolloutConfig with greedy decoding (and an optional length cap)."""
    return dataclasses.replace(train, temperature=temperature,
                               max_response_tokens=max_response_tokens or train.max_response_tokens)


def run_validation(problems: dict[str, list[Problem]], *, backend, sandbox, rollout_config: RolloutConfig,
                   reward_config, template: str, rank: int = 0, world_size: int = 1,
                   device=None, seed: int | None = None) -> list[dict]:
    """This process's share of the validation records ({"benchmark", "problem_id", "correct", ...}).

    seed: with sampled validation (temperature > 0), problem p of benchmark b is drawn with
    derive_seed(seed, "val", b, p.id): the same samples whatever the number of processes or the step.
    """
    mine = [(bench, p) for bench, ps in problems.items() for i, p in enumerate(ps) if i % world_size == rank]
    if not mine:
        return []
    prompts = [build_prompt(p.problem, template, backend.tokenizer) for _, p in mine]
    seeds = None if seed is None else [derive_seed(seed, "val", bench, p.id) for bench, p in mine]
    results = run_rollouts_on_device(prompts, backend=backend, sandbox=sandbox, config=rollout_config,
                                     device=device, seeds=seeds)
    texts = [r.text for r in results]
    statuses = [[c.result.status for c in r.tool_calls] for r in results]
    printed = [[bool(c.result.stdout) for c in r.tool_calls] for r in results]
    rewards, correct, preds = grade_responses(texts, [p.answer for _, p in mine], statuses, reward_config,
                                              tool_printed=printed)
    return [
        {"benchmark": bench, "problem_id": p.id, "gold": p.answer, "pred": pred, "correct": bool(ok),
         "reward": float(rw), "response": r.text, **rollout_fields(r)}
        for (bench, p), r, pred, ok, rw in zip(mine, results, preds, correct, rewards, strict=True)
    ]


def summarize(records: list[dict], benchmarks: list[str]) -> dict:
    """val/<benchmark>/... metrics and val/mean_accuracy."""
    by_bench: dict[str, list[dict]] = {b: [] for b in benchmarks}
    for r in records:
        by_bench.setdefault(r["benchmark"], []).append(r)
    return benchmark_metrics(by_bench)


def write_validation(run_dir: str | Path, step: int, records: list[dict], metrics: dict, seconds: float) -> Path:
    path = Path(run_dir) / VAL_DIR / f"step_{step:06d}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: (r["benchmark"], r["problem_id"]))
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"step": step, **r}, ensure_ascii=False) + "\n")
    summary = {"step": step, "seconds": round(seconds, 3), "n": len(records), **metrics}
    (path.with_suffix(".json")).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return path


class Validator:
    """`validator(trainer) -> metrics`: greedy validation on the trainer's current weights (all processes take
    part; the main process writes RUN_DIR/val/step_NNNNNN.jsonl and gets the metrics, the others get {}).

    backend_factory: `trainer -> context manager yielding a torl Backend` (the rollout function's).
    seed: the run's seed (see `run_validation`).
    """

    def __init__(self, problems: dict[str, list[Problem]], *, run_dir: str | Path, sandbox,
                 rollout_config: RolloutConfig, reward_config, template: str, backend_factory,
                 seed: int | None = None) -> None:
        self.problems = problems
        self.seed = seed
        self.run_dir = Path(run_dir)
        self.sandbox = sandbox
        self.rollout_config = rollout_config
        self.reward_config = reward_config
        self.template = template
        self.backend_factory = backend_factory

    def __call__(self, trainer) -> dict:
        start = time.perf_counter()
        acc = trainer.accelerator
        if getattr(trainer, "use_vllm", False) and trainer.state.global_step != trainer._last_loaded_step:
            trainer.vllm_generation.sync_weights()  # the engine must see this step's update
            trainer._last_loaded_step = trainer.state.global_step
        server_generation_barrier(trainer)
        with self.backend_factory(trainer) as backend:
            local = run_validation(self.problems, backend=backend, sandbox=self.sandbox,
                                   rollout_config=self.rollout_config, reward_config=self.reward_config,
                                   template=self.template, rank=acc.process_index, world_size=acc.num_processes,
                                   device=acc.device, seed=self.seed)
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            records = list(gather_object(local))
        else:
            records = local
        if not acc.is_main_process:
            return {}
        metrics = summarize(records, list(self.problems))
        write_validation(self.run_dir, trainer.state.global_step, records, metrics, time.perf_counter() - start)
        return metrics
