"""report.json and report.md of a demo run: the before/after numbers, the training dynamics, examples.

`build_report` gathers the numbers (pure except for reading the run's metrics and evaluation samples);
`write_report` writes OUT/report.json and OUT/report.md; `summary_text` is what the command prints.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

from torl.data.readers import read_problems
from torl.train.metrics import read_metrics, series

# the paper's claim in miniature (TORL-SPEC §5): targets of the default demo
TARGET_GAIN = 0.20  # accuracy after RL - accuracy of the warm-started model
TARGET_TOOL_MARGIN = 0.15  # accuracy with tools - accuracy with tools disabled (trained model)
TARGET_WALL_SECONDS = 600.0
FIGURES = ("accuracy", "code_ratio", "code_pass_ratio", "response_length")


def window_mean(values: list[float], first: bool, k: int) -> float | None:
    part = values[:k] if first else values[-k:]
    return sum(part) / len(part) if part else None


def training_dynamics(run_dir: Path) -> dict:
    """First/last-steps means of the train/ metrics (k = a quarter of the steps, 1 to 5 steps) and the
    validation accuracy curve."""
    records = read_metrics(run_dir)
    out: dict = {}
    steps, _ = series(records, "train/code_ratio")
    k = max(1, min(5, len(steps) // 4))
    out["window_steps"] = k
    out["steps_logged"] = len(steps)
    for name in ("code_ratio", "accuracy", "code_pass_ratio", "response_length", "reward_mean"):
        _, ys = series(records, f"train/{name}")
        out[f"{name}_first_steps"] = window_mean(ys, True, k)
        out[f"{name}_last_steps"] = window_mean(ys, False, k)
    xs, ys = series(records, "train/code_ratio")
    out["code_ratio_by_step"] = [[x, y] for x, y in zip(xs, ys, strict=True)]
    vx, vy = series(records, "val/mean_accuracy")
    out["validation_accuracy"] = [[x, y] for x, y in zip(vx, vy, strict=True)]
    _, step_s = series(records, "time/step_s")
    out["mean_step_seconds"] = sum(step_s) / len(step_s) if step_s else None
    return out


def _samples(eval_dir: Path, label: str, bench: str) -> list[dict]:
    path = eval_dir / label / "samples" / f"{bench}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def by_family(samples: list[dict], family_of: dict[str, str]) -> dict[str, float]:
    acc: dict[str, list[bool]] = defaultdict(list)
    for s in samples:
        acc[family_of.get(s["problem_id"], "?")].append(bool(s["correct"]))
    return {f: sum(v) / len(v) for f, v in sorted(acc.items())}


def build_report(*, before: dict, after: dict, run_dir: Path, plots_dir: Path, model_info: dict, rl_info: dict,
                 files: dict, model_dir: Path, warm_dir: Path, seconds: dict, wall_seconds: float, train_cfg,
                 demo, eval_dir: Path) -> dict:
    """The report.json object."""
    dyn = training_dynamics(run_dir)
    heldout = Path(files["heldout"])
    problems = read_problems(heldout)
    family_of = {p.id: p.meta.get("family", "?") for p in problems}
    bench = heldout.stem
    samples = {f"{w}_{t}": _samples(eval_dir, f"{w}_{t}", bench) for w in ("before", "after")
               for t in ("tools", "no_tools")}
    g = train_cfg.grpo
    report = {
        "accuracy_before": before["tools"]["accuracy"],
        "accuracy_after": after["tools"]["accuracy"],
        "accuracy_before_no_tools": before["no_tools"]["accuracy"],
        "accuracy_after_no_tools": after["no_tools"]["accuracy"],
        "code_ratio_before": before["tools"]["code_ratio"],
        "code_ratio_after": after["tools"]["code_ratio"],
        "code_ratio_first_steps": dyn["code_ratio_first_steps"],
        "code_ratio_last_steps": dyn["code_ratio_last_steps"],
        "code_ratio_by_step": dyn["code_ratio_by_step"],
        "train_accuracy_first_steps": dyn["accuracy_first_steps"],
        "train_accuracy_last_steps": dyn["accuracy_last_steps"],
        "code_pass_ratio_first_steps": dyn["code_pass_ratio_first_steps"],
        "code_pass_ratio_last_steps": dyn["code_pass_ratio_last_steps"],
        "response_length_first_steps": dyn["response_length_first_steps"],
        "response_length_last_steps": dyn["response_length_last_steps"],
        "window_steps": dyn["window_steps"],
        "validation_accuracy": dyn["validation_accuracy"],
        "wall_seconds": round(wall_seconds, 2),
        "phase_seconds": seconds,
        "rl": {**rl_info, "mean_step_seconds": dyn["mean_step_seconds"],
               "responses_per_step": g.prompts_per_step * g.samples_per_prompt, "prompts_per_step": g.prompts_per_step,
               "samples_per_prompt": g.samples_per_prompt, "lr": train_cfg.optim.lr,
               "max_tool_calls": train_cfg.rollout.max_tool_calls,
               "max_response_tokens": train_cfg.rollout.max_response_tokens},
        "accuracy_by_family": {k: by_family(v, family_of) for k, v in samples.items()},
        "eval": {"before": before, "after": after, "heldout_problems": len(problems)},
        "model": {**model_info, "warm_started": str(warm_dir), "trained": str(model_dir)},
        "demo": _plain(asdict(demo)),
        "paths": {"run_dir": str(run_dir), "plots": str(plots_dir), "eval": str(eval_dir),
                  **{f"data_{k}": str(v) for k, v in files.items()}},
    }
    report["targets"] = targets(report)
    report["examples"] = examples(samples, problems)
    return report


def targets(r: dict) -> dict[str, bool]:
    """The demo's acceptance targets, checked on this run's numbers."""
    rise = (r["code_ratio_first_steps"] is not None and r["code_ratio_last_steps"] is not None
            and r["code_ratio_last_steps"] > r["code_ratio_first_steps"])
    return {
        f"accuracy_gain_at_least_{TARGET_GAIN:g}": r["accuracy_after"] - r["accuracy_before"] >= TARGET_GAIN - 1e-9,
        f"tools_beat_no_tools_by_{TARGET_TOOL_MARGIN:g}":
            r["accuracy_after"] - r["accuracy_after_no_tools"] >= TARGET_TOOL_MARGIN - 1e-9,
        "code_ratio_rises": rise,
        f"wall_seconds_at_most_{TARGET_WALL_SECONDS:g}": r["wall_seconds"] <= TARGET_WALL_SECONDS,
    }


def examples(samples: dict[str, list[dict]], problems, n: int = 2) -> list[dict]:
    """The first `n` held-out problems the RL phase turned from wrong to right (else the first n), with the
    before and after responses."""
    before = {s["problem_id"]: s for s in samples.get("before_tools", [])}
    after = {s["problem_id"]: s for s in samples.get("after_tools", [])}
    no_tools = {s["problem_id"]: s for s in samples.get("after_no_tools", [])}
    ids = [p.id for p in problems if p.id in before and p.id in after]
    fixed = [i for i in ids if after[i]["correct"] and not before[i]["correct"]]
    text = {p.id: p for p in problems}
    out = []
    for i in (fixed or ids)[:n]:
        out.append({"problem_id": i, "problem": text[i].problem, "answer": text[i].answer,
                    "before": before[i]["response"], "before_correct": before[i]["correct"],
                    "after": after[i]["response"], "after_correct": after[i]["correct"],
                    "after_no_tools": no_tools[i]["response"] if i in no_tools else None,
                    "after_no_tools_correct": no_tools[i]["correct"] if i in no_tools else None})
    return out


def _plain(d):
    if isinstance(d, dict):
        return {k: _plain(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [_plain(v) for v in d]
    return d


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def render_markdown(r: dict, out_dir: Path) -> str:
    """report.md: the numbers, the targets, the figures (relative links) and examples."""
    rl, m = r["rl"], r["model"]
    plots = Path(r["paths"]["plots"])
    rel = plots.relative_to(out_dir) if plots.is_relative_to(out_dir) else plots
    lines = [
        "# TORL demo report",
        "",
        f"A {m['parameters'] / 1e6:.2f} M-parameter {m['architecture']} (vocabulary {m['vocab_size']}), warm-started "
        f"on {m['warmstart_examples']} solutions of which {_pct(m['warmstart_tool_share'])} use the code "
        f"interpreter, then trained with GRPO and the code interpreter for {rl['steps']} steps "
        f"({rl['prompts_per_step']} prompts x {rl['samples_per_prompt']} samples, lr {rl['lr']:g}, "
        f"C = {rl['max_tool_calls']}, correctness reward). Evaluated greedily on "
        f"{r['eval']['heldout_problems']} held-out problems. Wall time {r['wall_seconds']:.0f} s.",
        "",
        "## Held-out accuracy",
        "",
        "| model | with tools (C = 1) | tools disabled (C = 0) | responses with code |",
        "|---|---|---|---|",
        f"| warm-started (before RL) | {_pct(r['accuracy_before'])} | {_pct(r['accuracy_before_no_tools'])} | "
        f"{_pct(r['code_ratio_before'])} |",
        f"| after TORL | **{_pct(r['accuracy_after'])}** | {_pct(r['accuracy_after_no_tools'])} | "
        f"{_pct(r['code_ratio_after'])} |",
        "",
        f"RL gain: {100 * (r['accuracy_after'] - r['accuracy_before']):+.1f} points. Tools vs no tools after RL: "
        f"{100 * (r['accuracy_after'] - r['accuracy_after_no_tools']):+.1f} points.",
        "",
        f"## Training dynamics (mean of the first / last {r['window_steps']} steps)",
        "",
        "| | first steps | last steps |",
        "|---|---|---|",
        f"| responses with code (code ratio) | {_pct(r['code_ratio_first_steps'])} | {_pct(r['code_ratio_last_steps'])} |",
        f"| training accuracy | {_pct(r['train_accuracy_first_steps'])} | {_pct(r['train_accuracy_last_steps'])} |",
        f"| code pass ratio | {_pct(r['code_pass_ratio_first_steps'])} | {_pct(r['code_pass_ratio_last_steps'])} |",
        f"| response length (tokens) | {_num(r['response_length_first_steps'])} | "
        f"{_num(r['response_length_last_steps'])} |",
        "",
    ]
    for name in FIGURES:
        if (plots / f"{name}.png").is_file():
            lines.append(f"![{name}]({rel}/{name}.png)")
    lines += ["", "## Accuracy by problem family (with tools)", "",
              "| family | before | after |", "|---|---|---|"]
    fam_b, fam_a = r["accuracy_by_family"].get("before_tools", {}), r["accuracy_by_family"].get("after_tools", {})
    for fam in sorted(set(fam_b) | set(fam_a)):
        lines.append(f"| {fam} | {_pct(fam_b.get(fam))} | {_pct(fam_a.get(fam))} |")
    lines += ["", "## Targets", ""]
    lines += [f"- [{'x' if ok else ' '}] {name}" for name, ok in r["targets"].items()]
    for ex in r["examples"]:
        lines += ["", f"## Example: {ex['problem']} (answer {ex['answer']})", ""]
        for key, title in (("before", "before RL"), ("after", "after RL"), ("after_no_tools", "after RL, C = 0")):
            if ex.get(key) is None:
                continue
            verdict = "correct" if ex[f"{key}_correct"] else "wrong"
            lines += [f"{title} ({verdict}):", "", "````text", ex[key].rstrip(), "````", ""]
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in r["phase_seconds"].items())
    lines += ["## Files", "",
              f"- trained model (a transformers model directory): `{m['trained']}` — evaluate it with "
              f"`torl eval --model {m['trained']} --benchmarks {r['paths']['data_heldout']} --max-response-tokens "
              f"{rl['max_response_tokens']} --out runs/eval/demo`",
              f"- training run (metrics.jsonl, sample dumps, config): `{r['paths']['run_dir']}` — "
              f"`torl plot {r['paths']['run_dir']}`",
              f"- evaluations (per-sample JSONL): `{r['paths']['eval']}`",
              f"- phase times: {phases}", ""]
    return "\n".join(lines)


def write_report(out_dir: Path, report: dict) -> tuple[Path, Path]:
    md, js = out_dir / "report.md", out_dir / "report.json"
    js.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    md.write_text(render_markdown(report, out_dir), encoding="utf-8")
    return md, js


def summary_text(report: dict, report_md: Path) -> str:
    """The few lines printed at the end of `torl demo`."""
    r = report
    met = sum(r["targets"].values())
    first_step = r["code_ratio_by_step"][0][1] if r["code_ratio_by_step"] else None
    k = r["window_steps"]
    return "\n".join([
        f"TORL demo finished in {r['wall_seconds']:.0f} s ({r['rl']['steps']} GRPO steps).",
        f"  held-out accuracy with the code interpreter: {_pct(r['accuracy_before'])} before RL -> "
        f"{_pct(r['accuracy_after'])} after",
        f"  after RL with tools disabled (C = 0): {_pct(r['accuracy_after_no_tools'])}",
        f"  responses with code during training: {_pct(first_step)} at step 1, {_pct(r['code_ratio_first_steps'])} "
        f"over the first {k} steps -> {_pct(r['code_ratio_last_steps'])} over the last {k}",
        f"  targets met: {met}/{len(r['targets'])}",
        f"  trained model: {r['model']['trained']}",
        f"  report: {report_md}",
    ])
