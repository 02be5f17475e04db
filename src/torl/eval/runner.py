"""Evaluate a model on benchmarks with exactly the rollout and grading code of training.

benchmark problems -> prompts (torl.rollout.build_prompt, the training template) -> torl.rollout.run_rollouts
(the same tool loop, sandbox and observation style) -> torl.reward.extract_answer + grade_many -> one JSONL
record per sample, appended as it is finished. A rerun with the same output directory skips finished
(problem id, sample index) keys, so an interrupted evaluation resumes where it stopped and never duplicates.
Sample i of a problem is drawn with its own seed, derive_seed(seed, benchmark, problem id, i): the same seed
gives the same samples whatever the batching, the --limit, or where an interrupted run resumed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from torl.data.eval_sets import PAPER_BENCHMARKS, resolve_benchmarks
from torl.data.schema import Problem
from torl.errors import UserInputError
from torl.eval.metrics import BenchmarkMetrics, benchmark_metrics
from torl.eval.results import build_results, write_results
from torl.eval.samples import SampleWriter, read_samples
from torl.reward import extract_answer, grade_many
from torl.rollout import RolloutConfig, build_prompt, get_template, run_rollouts
from torl.rollout.seeds import derive_seed

log = logging.getLogger(__name__)

RUN_JSON = "run.json"
SAMPLES_DIR = "samples"
MODES = ("tir", "cot")
# torl.rollout template names: the training prompt, and its no-tool variant for `--mode cot`.
TIR_TEMPLATE = "torl"
COT_TEMPLATE = "cot"
# The evaluation protocol samples greedily (TORL-SPEC §6), whatever the rollout settings were in training.
EVAL_TEMPERATURE = 0.0
# Settings that change what a sample is: a resumed run must match them ("rollout": every RolloutConfig field).
GENERATION_KEYS = ("model", "mode", "template", "rollout")
# ... and, when sampling (rollout.temperature > 0), the seed
SAMPLING_KEYS = ("seed",)
# Rollout settings that do not change what a sample is (only how many executions run at once): a resumed run may
# differ in them.
RESUME_FREE_ROLLOUT_KEYS = ("max_concurrent_tool_calls",)
# The rollout settings run.json held as top-level keys before it recorded the whole RolloutConfig as "rollout".
LEGACY_ROLLOUT_KEYS = ("max_tool_calls", "tool_call_budget", "max_response_tokens", "temperature", "top_p",
                       "observation_style", "exec_timeout")


def eval_rollout() -> RolloutConfig:
    """An evaluation's default RolloutConfig: the training defaults, greedy."""
    return RolloutConfig(temperature=EVAL_TEMPERATURE)


@dataclass
class EvalConfig:
    """What to evaluate and how. Defaults are the paper's protocol: greedy, C = 1, the training prompt.

    rollout: how each response is generated, used as given (default `eval_rollout()`: greedy).
    mode: "tir" (tool-integrated prompt, up to rollout.max_tool_calls executions) or "cot" (the no-tool prompt,
    rollout.max_tool_calls forced to 0). template: a torl.rollout template name; None picks the mode's default.
    n: samples per problem (rollout.temperature > 0 for n > 1: avg@n, pass@k, maj@n). limit: first `limit` problems of
    each benchmark (smoke tests). batch_size: prompts per run_rollouts call; each batch is written when done.
    columns: field -> column mapping for benchmarks given as files. seed: the run's seed; each sample gets its
    own (`sample_seed`), so sampled runs are reproducible (None: the backend's shared random state).
    """

    benchmarks: list[str] = field(default_factory=lambda: list(PAPER_BENCHMARKS))
    mode: str = "tir"
    template: str | None = None
    rollout: RolloutConfig = field(default_factory=eval_rollout)
    n: int = 1
    batch_size: int = 128
    limit: int | None = None
    columns: dict[str, str] | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserInputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "cot":
            self.rollout = replace(self.rollout, max_tool_calls=0)
        if self.template is None:
            self.template = TIR_TEMPLATE if self.mode == "tir" else COT_TEMPLATE
        if self.n < 1:
            raise UserInputError(f"-n must be at least 1, got {self.n}")
        if self.batch_size < 1:
            raise UserInputError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise UserInputError(f"--limit must be at least 1, got {self.limit}")


def sample_seed(seed: int | None, benchmark: str, problem_id: str, index: int) -> int | None:
    """The seed of sample `index` of a problem: a function of who the sample is, never of when it was drawn."""
    return None if seed is None else derive_seed(seed, benchmark, problem_id, index)


def sample_record(
    benchmark: str, problem: Problem, index: int, result, pred: str | None, correct: bool
) -> dict:
    """One line of the samples JSONL, from a torl.rollout RolloutResult and its grade."""
    return {
        "benchmark": benchmark,
        "problem_id": problem.id,
        "sample_index": index,
        "gold": problem.answer,
        "pred": pred,
        "correct": bool(correct),
        "response": result.text,
        "finish_reason": result.finish_reason,
        "truncated": bool(result.truncated),
        "has_code": bool(result.has_code),
        "num_executions": int(result.num_executions),
        "all_executions_ok": bool(result.all_executions_ok),
        "response_tokens": len(result.completion_ids),
        "tool_calls": [
            {"code": c.code, "status": c.result.status, "observation": c.observation}
            for c in result.tool_calls
        ],
    }


def run_record(cfg: EvalConfig, run_info: Mapping | None = None) -> dict:
    """What run.json records: run_info (model, backend, ...) and every EvalConfig field ("rollout": every
    RolloutConfig field)."""
    return {**(run_info or {}), **asdict(cfg)}


def check_resumable(out_dir: str | Path, run: Mapping) -> None:
    """An output directory may be reused only with the same generation settings (GENERATION_KEYS; SAMPLING_KEYS
    too when sampling)."""
    path = Path(out_dir) / RUN_JSON
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path}: invalid JSON ({e.msg}); remove it or use a new --out") from None
    if "rollout" not in old and any(k in old for k in LEGACY_ROLLOUT_KEYS):
        old = {**old, "rollout": legacy_rollout(old)}
    old, run = _resume_view(old), _resume_view(run)
    sampled = ((run.get("rollout") or {}).get("temperature") or 0) > 0
    keys = GENERATION_KEYS + (SAMPLING_KEYS if sampled else ())
    diff = [(k, old.get(k), run.get(k)) for k in keys if old.get(k) != run.get(k)]
    if diff:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in _field_changes(diff))
        raise UserInputError(
            f"{out_dir} holds samples generated with other settings ({detail}); use a new --out to keep runs apart"
        )


def legacy_rollout(old: Mapping) -> dict:
    """The "rollout" record of a run.json written before it had one: its top-level rollout keys over the
    evaluation defaults of the other RolloutConfig fields (which those runs used)."""
    return {**eval_rollout().to_dict(), **{k: old[k] for k in LEGACY_ROLLOUT_KEYS if k in old}}


def _resume_view(run: Mapping) -> Mapping:
    """The record without the rollout settings a resumed run may change (RESUME_FREE_ROLLOUT_KEYS)."""
    rollout = run.get("rollout")
    if not isinstance(rollout, Mapping):
        return run
    return {**run, "rollout": {k: v for k, v in rollout.items() if k not in RESUME_FREE_ROLLOUT_KEYS}}


def _field_changes(diff: list[tuple[str, object, object]]):
    """(key, old, new), with a changed mapping (the rollout settings) spelled out key by key."""
    for key, a, b in diff:
        if isinstance(a, dict) and isinstance(b, dict):
            yield from ((f"{key}.{k}", a.get(k), b.get(k)) for k in {**a, **b} if a.get(k) != b.get(k))
        else:
            yield key, a, b


def _regrade_changed_golds(bench: str, records: list[dict], gold_of: Mapping[str, str], grade_many) -> None:
    """Samples graded against a gold that has since changed (a corrected benchmark file) are graded again
    against the current gold, in memory: the results follow the benchmark, the samples file keeps its history."""
    stale = [r for r in records if r.get("gold") != gold_of[r["problem_id"]]]
    if not stale:
        return
    log.warning("%s: %d samples were graded against another gold; grading them again", bench, len(stale))
    verdicts = grade_many([r["pred"] for r in stale], [gold_of[r["problem_id"]] for r in stale])
    for r, ok in zip(stale, verdicts, strict=True):
        r["gold"], r["correct"] = gold_of[r["problem_id"]], bool(ok)


def evaluate(
    cfg: EvalConfig,
    *,
    backend,
    sandbox,
    out_dir: str | Path,
    run_info: Mapping | None = None,
    tokenizer=None,
    progress: bool = True,
) -> dict:
    """Run the evaluation into out_dir (resuming what is there) and return the results.json object.

    backend, sandbox: a torl.rollout backend and a torl.sandbox Sandbox (None is fine when max_tool_calls = 0).
    run_info: recorded in run.json / results.json (model, backend kind, ...). tokenizer: passed to build_prompt
    (chat templates). Writes OUT/samples/<benchmark>.jsonl, OUT/run.json, OUT/results.json, OUT/results.md.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    problems_by_bench = resolve_benchmarks(cfg.benchmarks, cfg.columns)
    if cfg.limit is not None:
        problems_by_bench = {b: ps[: cfg.limit] for b, ps in problems_by_bench.items()}
    if cfg.n > 1 and cfg.rollout.temperature == 0:
        log.warning(
            "n=%d samples with temperature 0: greedy samples are identical; use --temperature > 0", cfg.n
        )
    get_template(cfg.template)  # an unknown template name fails here, before anything is written
    run = run_record(cfg, run_info)
    check_resumable(out_dir, run)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN_JSON).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")

    # what is already done
    done: dict[str, list[dict]] = {}
    pending: list[tuple[str, Problem, int]] = []
    for bench, problems in problems_by_bench.items():
        loaded = read_samples(out_dir / SAMPLES_DIR / f"{bench}.jsonl")
        if loaded.dropped_partial:
            log.warning(
                "%s: dropped %d unfinished line (interrupted write); it will be redone",
                bench,
                loaded.dropped_partial,
            )
        if loaded.duplicates:
            log.warning("%s: ignored %d duplicate sample records", bench, loaded.duplicates)
        done[bench] = loaded.records
        finished = loaded.keys()
        pending += [(bench, p, i) for p in problems for i in range(cfg.n) if (p.id, i) not in finished]
    total = sum(len(ps) for ps in problems_by_bench.values()) * cfg.n
    if total - len(pending):
        log.info(
            "resuming: %d of %d samples already done, %d to generate",
            total - len(pending),
            total,
            len(pending),
        )

    counts = {b: [0, 0] for b in problems_by_bench}  # correct, seen (for the progress bar)
    for bench, recs in done.items():
        gold_of = {p.id: p.answer for p in problems_by_bench[bench]}
        mine = [r for r in recs if r["problem_id"] in gold_of and r["sample_index"] < cfg.n]
        _regrade_changed_golds(bench, mine, gold_of, grade_many)
        counts[bench] = [sum(bool(r["correct"]) for r in mine), len(mine)]

    bar = tqdm(total=total, initial=total - len(pending), disable=not progress, desc="eval", unit="sample")
    try:
        for bench in problems_by_bench:
            todo = [(p, i) for b, p, i in pending if b == bench]
            if not todo:
                continue
            with SampleWriter(out_dir / SAMPLES_DIR / f"{bench}.jsonl") as writer:
                for start in range(0, len(todo), cfg.batch_size):
                    batch = todo[start : start + cfg.batch_size]
                    prompts = [build_prompt(p.problem, cfg.template, tokenizer) for p, _ in batch]
                    seeds = None
                    if cfg.seed is not None:
                        seeds = [sample_seed(cfg.seed, bench, p.id, i) for p, i in batch]
                    results = run_rollouts(
                        prompts,
                        backend=backend,
                        sandbox=sandbox,
                        config=cfg.rollout,
                        progress=lambda i, r: bar.update(1),
                        seeds=seeds,
                    )
                    preds = [extract_answer(r.text) for r in results]
                    grades = grade_many(preds, [p.answer for p, _ in batch])
                    records = [
                        sample_record(bench, p, i, r, pred, ok)
                        for (p, i), r, pred, ok in zip(batch, results, preds, grades, strict=True)
                    ]
                    writer.write(records)
                    done[bench] += records
                    counts[bench][0] += sum(grades)
                    counts[bench][1] += len(records)
                    bar.set_postfix_str(f"{bench} acc {counts[bench][0] / counts[bench][1]:.3f}")
    finally:
        bar.close()

    metrics: dict[str, BenchmarkMetrics] = {
        bench: benchmark_metrics(done[bench], cfg.n, [p.id for p in problems])
        for bench, problems in problems_by_bench.items()
    }
    results = build_results(metrics, run)
    write_results(out_dir, results)
    return results
