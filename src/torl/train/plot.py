"""`torl plot RUN_DIR`: the paper's training-dynamics figures (TORL-SPEC §5) from RUN_DIR/metrics.jsonl.

One PNG per quantity vs step, train (every step, with a moving average) and validation (per benchmark and
their mean): accuracy, code ratio, code pass ratio, response length; plus executions per response and the
time split of a step. `index.html` shows them with the run's final numbers.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from torl.errors import UserInputError
from torl.train.metrics import read_metrics, series

FIGURES = (
    ("accuracy", "Accuracy", "train/accuracy"),
    ("code_ratio", "Responses with code", "train/code_ratio"),
    ("code_pass_ratio", "Code pass ratio (executions without error)", "train/code_pass_ratio"),
    ("response_length", "Response length (tokens)", "train/response_length"),
    ("executions_per_response", "Executions per response", "train/executions_per_response"),
    ("reward_mean", "Mean reward", "train/reward_mean"),
)
TIME_KEYS = (("time/rollout_s", "rollout (generation + tools)"), ("time/grading_s", "grading"),
             ("time/update_s", "update"))


def _smooth(ys: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, y in enumerate(ys):
        acc += y
        if i >= window:
            acc -= ys[i - window]
        out.append(acc / min(i + 1, window))
    return out


def _val_benchmarks(records: list[dict], name: str) -> list[str]:
    """Benchmarks with at least one value of val/<benchmark>/<name>."""
    found = set()
    for r in records:
        for k, v in r.items():
            if k.startswith("val/") and k.endswith(f"/{name}") and k.count("/") == 2 and v is not None:
                found.add(k.split("/")[1])
    return sorted(found)


def plot_figure(records: list[dict], name: str, title: str, train_key: str, path: Path) -> bool:
    """One quantity vs step. Returns False (and writes nothing) when the run has no values for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = series(records, train_key)
    benches = _val_benchmarks(records, name)
    if not xs and not benches:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    if xs:
        ax.plot(xs, ys, color="#9ab", lw=0.8, label="train")
        if len(xs) >= 5:
            ax.plot(xs, _smooth(ys, max(2, len(xs) // 20)), color="#15a", lw=1.8, label="train (moving avg)")
    for b in benches:
        vx, vy = series(records, f"val/{b}/{name}")
        ax.plot(vx, vy, marker="o", ms=3, lw=1.2, label=f"val {b}")
    if name == "accuracy" and len(benches) > 1:
        vx, vy = series(records, "val/mean_accuracy")
        ax.plot(vx, vy, color="black", marker="s", ms=3, lw=1.6, label="val mean")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_time_split(records: list[dict], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["step"]) for r in records if isinstance(r.get("time/step_s"), int | float)]
    if not steps:
        return False
    rows = [r for r in records if isinstance(r.get("time/step_s"), int | float)]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.stackplot(steps, *[[float(r.get(k) or 0.0) for r in rows] for k, _ in TIME_KEYS],
                 labels=[label for _, label in TIME_KEYS], alpha=0.8)
    ax.set_title("Time per step (s)")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def summary_rows(records: list[dict]) -> list[tuple[str, str]]:
    """(metric, last value) of the headline metrics."""
    rows = []
    keys = [k for _, _, k in FIGURES] + ["time/step_s", "throughput/generated_tokens_per_s", "val/mean_accuracy"]
    for r in records:
        keys += [k for k in r if k.startswith("val/") and k.endswith("/accuracy") and k not in keys]
    for k in keys:
        xs, ys = series(records, k)
        if xs:
            rows.append((k, f"{ys[-1]:.4g} (step {xs[-1]})"))
    return rows


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the figures and index.html into `out` (default RUN_DIR/report); returns that directory."""
    run_dir = Path(run_dir)
    records = [r for r in read_metrics(run_dir) if "step" in r]
    if not records:
        raise UserInputError(f"{run_dir}: no metrics.jsonl records (is it a `torl train` run directory?)")
    out = Path(out) if out else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for name, title, key in FIGURES:
        if plot_figure(records, name, title, key, out / f"{name}.png"):
            made.append((f"{name}.png", title))
    if plot_time_split(records, out / "time_split.png"):
        made.append(("time_split.png", "Time per step"))
    (out / "index.html").write_text(render_html(run_dir, records, made), encoding="utf-8")
    return out


def render_html(run_dir: Path, records: list[dict], figures: list[tuple[str, str]]) -> str:
    last_step = max(int(r["step"]) for r in records)
    config = run_dir / "config.yaml"
    cfg_text = config.read_text(encoding="utf-8") if config.is_file() else ""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in summary_rows(records))
    imgs = "".join(f'<figure><img src="{f}" alt="{html.escape(t)}"><figcaption>{html.escape(t)}</figcaption>'
                   "</figure>" for f, t in figures)
    title = html.escape(f"torl run {run_dir.name}")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} figure{{display:inline-block;margin:0.5em}}
img{{width:560px}} table{{border-collapse:collapse}} td{{border:1px solid #ccc;padding:2px 8px;font-size:90%}}
pre{{background:#f6f6f6;padding:1em;font-size:80%;max-height:30em;overflow:auto}}</style></head>
<body><h1>{title}</h1>
<p>{html.escape(str(run_dir.resolve()))} — {len(records)} metric records, last step {last_step}.</p>
<h2>Latest values</h2><table>{rows}</table>
<h2>Training dynamics</h2>{imgs}
<h2>Config</h2><pre>{html.escape(cfg_text)}</pre>
<script type="application/json" id="summary">{html.escape(json.dumps(dict(summary_rows(records))))}</script>
</body></html>
"""
