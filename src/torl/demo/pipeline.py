"""The whole demo: build and warm-start a small model, evaluate it, train it with TORL, evaluate it again, report.

    from torl.demo.config import load_demo_config
    from torl.demo.pipeline import run_demo
    result = run_demo(load_demo_config("configs/demo.yaml"))

Phases (each with a progress bar):
1. model: a small BPE tokenizer + Llama-architecture LM (`torl.demo.model`), warm-started on mixed natural-
   language and tool solutions (`torl.demo.warmstart`); cached under `demo.cache_dir` (a second run skips it);
2. problems: the RL set and a disjoint held-out set of hard generated problems (`torl.demo.problems`);
3. evaluation before RL on the held-out set with tools (C = max_tool_calls) and without (C = 0), by
   `torl.eval.runner.evaluate` (the loop of `torl eval`);
4. RL: `torl.train.build_trainer` on the config's train sections (the GRPO trainer and TIR rollout function of
   any `torl train` run), stopped at train.max_steps or when `demo.minutes` are spent;
5. evaluation after RL (both settings), the training-dynamics figures (`torl.train.plot.plot_run`), report.md
   and report.json (`torl.demo.report`).
All phases share one LocalSandbox.

Output (RUN_DIR, default runs/demo): report.md, report.json, model/ (the trained model: `torl eval --model`),
plots/ (PNGs + index.html), train/ (the `torl train` run directory: config.yaml, metrics.jsonl, samples/, val/),
eval/{before,after}_{tools,no_tools}/ (`torl eval` output directories), data/ (the generated problems).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from torl.data.schema import write_problems
from torl.demo.config import DemoPlan, DemoSection, complete_train_config, preflight
from torl.demo.model import build_model, count_parameters, load_demo_tokenizer
from torl.demo.problems import generate, to_problems
from torl.demo.report import build_report, write_report
from torl.demo.warmstart import build_corpus, corpus_texts, warm_start
from torl.errors import UserInputError
from torl.eval.runner import EVAL_TEMPERATURE, EvalConfig, evaluate
from torl.rollout import make_backend
from torl.sandbox.local import LocalSandbox
from torl.train.plot import plot_run

log = logging.getLogger(__name__)

MODEL_CACHE_VERSION = 1  # bump when the corpus or the training code changes what a cached model is


@dataclass
class DemoResult:
    """Where everything went, and the numbers (`report`, as in report.json)."""

    out_dir: Path
    model_dir: Path
    report_md: Path
    report_json: Path
    report: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ phase 1: model


def prepare_model(demo: DemoSection, *, progress: bool = True) -> tuple[Path, dict]:
    """The warm-started model directory (built and cached on first use) and facts about it.

    The cache key covers the model and warm-start settings and the corpus itself (so a change to the problem
    generators builds a new model)."""
    import hashlib

    corpus = build_corpus(demo.warmstart)
    texts = corpus_texts(corpus)
    corpus_hash = hashlib.sha256("\x00".join(e.prompt + e.response for e in corpus).encode()).hexdigest()
    key = demo.model.key(json.dumps({"warmstart": asdict(demo.warmstart), "corpus": corpus_hash,
                                     "v": MODEL_CACHE_VERSION}, sort_keys=True))
    root = demo.cache_path / key
    warm = root / "warm"
    info_path = root / "info.json"
    if (warm / "config.json").is_file() and info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        log.info("reusing the warm-started demo model in %s", warm)
        if progress:
            print(f"[demo] reusing the warm-started model in {warm}", flush=True)
        return warm, {**info, "cached": True}

    import torch
    from transformers import AutoModelForCausalLM

    start = time.monotonic()
    tmp = demo.cache_path / f".{key}.building-{time.time_ns()}"
    base = build_model(tmp / "base", demo.model, texts)
    tokenizer = load_demo_tokenizer(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    result = warm_start(model, tokenizer, corpus, demo.warmstart, progress=progress)
    model.save_pretrained(tmp / "warm")
    tokenizer.save_pretrained(tmp / "warm")
    info = {
        "parameters": count_parameters(model),
        "vocab_size": len(tokenizer),
        "architecture": type(model).__name__,
        "warmstart_examples": len(corpus),
        "warmstart_tool_share": sum(e.style == "tool" for e in corpus) / len(corpus),
        "warmstart_steps": result.steps,
        "warmstart_final_loss": result.final_loss,
        "build_seconds": time.monotonic() - start,
    }
    (tmp / "info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if root.exists():  # a half-built entry from an interrupted run
        shutil.rmtree(root)
    tmp.rename(root)
    shutil.rmtree(root / "base")  # the random initialisation is not needed again
    return warm, {**info, "cached": False}


# --------------------------------------------------------------------------------------------- phase 2: problems


def write_problem_sets(demo: DemoSection, data_dir: Path) -> dict[str, Path]:
    """OUT/data/train.jsonl, heldout.jsonl, heldout_first<N>.jsonl: the RL problems, the held-out set (disjoint
    from the RL set and the warm-start corpus) and its first N = `val_problems` (validated during training)."""
    corpus = generate(demo.warmstart.examples, seed=demo.warmstart.seed, levels=demo.warmstart.levels)
    train = generate(demo.train_problems, seed=demo.seed, levels=demo.levels)
    seen = {e.problem for e in corpus} | {e.problem for e in train}
    heldout = generate(demo.eval_problems, seed=demo.seed + 1, levels=demo.levels, exclude=seen)
    paths = {"train": data_dir / "train.jsonl", "heldout": data_dir / "heldout.jsonl"}
    write_problems(to_problems(train, "demo-train"), paths["train"])
    held = to_problems(heldout, "demo-heldout")
    write_problems(held, paths["heldout"])
    if demo.val_problems:
        paths["val"] = data_dir / f"heldout_first{demo.val_problems}.jsonl"
        write_problems(held[: demo.val_problems], paths["val"])
    return paths


# ------------------------------------------------------------------------------------------- phase 3/5: evaluate


def evaluate_model(model_dir: Path, heldout: Path, out_dir: Path, *, sandbox, train_cfg, label: str,
                   progress: bool = True) -> dict[str, dict]:
    """Greedy evaluation on the held-out set with the training rollout settings, with tools
    (C = rollout.max_tool_calls) and without (C = 0).
    Returns {"tools": metrics, "no_tools": metrics} (torl.eval's per-benchmark metrics)."""
    r = train_cfg.rollout
    out = {}
    backend = make_backend("transformers", str(model_dir), max_batch_size=train_cfg.engine.generation_batch_size,
                           device="cpu", dtype="float32")
    try:
        for key, calls in (("tools", r.max_tool_calls), ("no_tools", 0)):
            cfg = EvalConfig(benchmarks=[str(heldout)], mode="tir", template=train_cfg.data.template,
                             rollout=replace(r, max_tool_calls=calls, temperature=EVAL_TEMPERATURE),
                             batch_size=train_cfg.engine.generation_batch_size)
            if progress:
                print(f"[demo] evaluating the {label} model, C = {calls}", flush=True)
            results = evaluate(cfg, backend=backend, sandbox=sandbox, out_dir=out_dir / f"{label}_{key}",
                               run_info={"model": str(model_dir), "backend": "transformers"}, progress=progress)
            out[key] = results["benchmarks"][heldout.stem]
    finally:
        backend.close()
    return out


# ------------------------------------------------------------------------------------------------- phase 4: RL


class TimeBudget:
    """A TrainerCallback that ends training once `seconds` have passed since the first step began."""

    def __init__(self, seconds: float) -> None:
        from transformers import TrainerCallback

        budget = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if budget.start is None:
                    budget.start = time.monotonic()
                return control

            def on_step_end(self, args, state, control, **kwargs):
                if budget.start is not None and time.monotonic() - budget.start >= budget.seconds:
                    budget.hit = True
                    control.should_training_stop = True
                return control

        self.seconds = seconds
        self.start: float | None = None
        self.hit = False
        self.callback = _Callback()


def run_rl(train_cfg, *, sandbox, minutes: float, model_dir: Path) -> tuple[Path, dict]:
    """GRPO with torl.train on `train_cfg`; saves the trained model and tokenizer in `model_dir` and returns it
    with facts about the run."""
    from torl.train.trainer import build_trainer

    budget = TimeBudget(minutes * 60)
    run = build_trainer(train_cfg, sandbox=sandbox, callbacks=[budget.callback])
    try:
        run.trainer.train()
        run.trainer.save_model(str(model_dir))
        run.trainer.processing_class.save_pretrained(str(model_dir))
        steps = run.trainer.state.global_step
    finally:
        run.close()
    return model_dir, {"steps": steps, "max_steps": train_cfg.train.max_steps, "stopped_by_time_budget": budget.hit,
                   "time_budget_minutes": minutes}


# ------------------------------------------------------------------------------------------------- the whole demo


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse to mix two demos in one directory unless asked to replace the old one."""
    ours = ("report.json", "report.md", "model", "train", "eval", "data", "plots")
    found = [name for name in ours if (out / name).exists()]
    if not found:
        return
    if not overwrite:
        raise UserInputError(f"{out} already holds a demo run ({', '.join(found)}); write elsewhere (torl demo --out "
                             "DIR, or run_dir=DIR) or replace it (torl demo --overwrite)")
    for name in found:
        p = out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def run_demo(plan: DemoPlan, *, overwrite: bool = False, progress: bool = True) -> DemoResult:
    """Run every phase into `plan.run_dir` and return where the report and the trained model are."""
    import torch

    start = time.monotonic()
    demo = plan.demo
    out = plan.run_dir
    check_out_dir(out, overwrite)
    preflight(plan)
    out.mkdir(parents=True, exist_ok=True)
    if demo.threads:
        torch.set_num_threads(demo.threads)
    seconds: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        seconds[name] = round(time.monotonic() - t0, 2)

    t0 = time.monotonic()
    if progress:
        print(f"[demo] 1/5 model: building and warm-starting a small Llama model (cache: {demo.cache_path})",
              flush=True)
    warm_dir, model_info = prepare_model(demo, progress=progress)
    lap("model", t0)

    t0 = time.monotonic()
    files = write_problem_sets(demo, out / "data")
    train_cfg = complete_train_config(plan, model_path=warm_dir, train_file=files["train"],
                                      val_file=files.get("val"), run_dir=out / "train")
    lap("problems", t0)

    workers = train_cfg.engine.sandbox_workers or 2
    with LocalSandbox(pool_size=workers, preload=("math",)) as sandbox:
        t0 = time.monotonic()
        if progress:
            print("[demo] 2/5 evaluating the warm-started model on held-out problems", flush=True)
        before = evaluate_model(warm_dir, files["heldout"], out / "eval", sandbox=sandbox, train_cfg=train_cfg,
                                label="before", progress=progress)
        lap("eval_before", t0)

        t0 = time.monotonic()
        if progress:
            print(f"[demo] 3/5 TORL: GRPO with the code interpreter (at most {train_cfg.train.max_steps} steps "
                  f"or {demo.minutes:g} min)", flush=True)
        final_dir, rl_info = run_rl(train_cfg, sandbox=sandbox, minutes=demo.minutes, model_dir=out / "model")
        lap("rl", t0)

        t0 = time.monotonic()
        if progress:
            print("[demo] 4/5 evaluating the trained model", flush=True)
        after = evaluate_model(final_dir, files["heldout"], out / "eval", sandbox=sandbox, train_cfg=train_cfg,
                               label="after", progress=progress)
        lap("eval_after", t0)

    t0 = time.monotonic()
    if progress:
        print("[demo] 5/5 report", flush=True)

    plots = plot_run(out / "train", out / "plots")
    lap("report", t0)
    report = build_report(
        before=before, after=after, run_dir=out / "train", plots_dir=plots, model_info=model_info, rl_info=rl_info,
        files=files, model_dir=final_dir, warm_dir=warm_dir, seconds=seconds,
        wall_seconds=time.monotonic() - start, train_cfg=train_cfg, demo=demo, eval_dir=out / "eval")
    md, js = write_report(out, report)
    return DemoResult(out, final_dir, md, js, report)
