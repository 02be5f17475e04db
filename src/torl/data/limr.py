"""LIMR selection (arXiv 2502.11886): keep the problems whose learning curve follows the average one.

Input: the training sample dumps `RUN_DIR/samples/step_NNNNNN.jsonl` (one line per sampled response, with
`problem_id`, `source`, `correct`). Epoch k (0-based) covers steps [k*K+1, (k+1)*K] for K steps per epoch.

    r_ik = share of problem i's responses in epoch k that were correct
    r̄_k  = mean of r_ik over the problems sampled in epoch k
    s_i  = 1 - Σ_k (r_ik - r̄_k)² / Σ_k (1 - r̄_k)²        keep s_i >= θ (θ = 0.6)

Rules for incomplete data, all counted in the report:
- An epoch with fewer than K step files is incomplete (a run stopped mid-epoch, or step files are missing).
  `partial_epochs="drop"` (default) leaves incomplete epochs out of every sum; "keep" uses them.
- A problem not sampled in some used epoch: `missing="skip"` (default) sums over the epochs where it was
  sampled (both numerator and denominator), so its score compares like with like; `missing="drop"` leaves the
  problem out (not scored, not selected).
- When every r̄_k in a problem's sums is 1, the denominator is 0; then every r_ik is 1 too and s_i = 1.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torl.data.readers import read_problems
from torl.data.schema import write_problems
from torl.data.verl import read_verl_parquet, write_verl_parquet
from torl.errors import UserInputError

_STEP_FILE = re.compile(r"^step_(\d+)\.jsonl$")


@dataclass(frozen=True)
class LimrConfig:
    steps_per_epoch: int
    threshold: float = 0.6
    missing: str = "skip"  # "skip" | "drop": problems not sampled in some used epoch
    partial_epochs: str = "drop"  # "drop" | "keep": epochs with fewer than steps_per_epoch step files
    skip_invalid: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1:
            raise UserInputError(f"--steps-per-epoch must be >= 1, got {self.steps_per_epoch}")
        if self.missing not in ("skip", "drop"):
            raise UserInputError(f"--missing must be 'skip' or 'drop', got {self.missing!r}")
        if self.partial_epochs not in ("drop", "keep"):
            raise UserInputError(f"--partial-epochs must be 'drop' or 'keep', got {self.partial_epochs!r}")


@dataclass
class ProblemScore:
    problem_id: str
    source: str
    score: float | None  # None: not scored (see `note`)
    kept: bool
    epoch_rewards: list[float | None]  # r_ik per used epoch; None where the problem was not sampled
    n_samples: int
    note: str = ""


@dataclass
class LimrResult:
    scores: list[ProblemScore]
    epoch_means: list[float]  # r̄_k per used epoch
    report: dict = field(default_factory=dict)

    @property
    def selected_ids(self) -> list[str]:
        return [s.problem_id for s in self.scores if s.kept]


def step_files(samples: str | Path) -> dict[int, Path]:
    """step -> file, from RUN_DIR/samples/ (or a samples directory given directly)."""
    root = Path(samples)
    folder = root / "samples" if (root / "samples").is_dir() else root
    if not folder.is_dir():
        raise UserInputError(f"{root}: no such directory")
    files = {int(m.group(1)): p for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))}
    if not files:
        raise UserInputError(f"{folder}: no step_NNNNNN.jsonl sample dumps")
    return dict(sorted(files.items()))


def read_counts(
    files: dict[int, Path], *, skip_invalid: bool = False, progress: bool = False
) -> tuple[dict[int, dict[str, list[int]]], dict[str, str], list[dict]]:
    """Per step: problem_id -> [correct, total]; problem_id -> source; and the invalid lines skipped."""
    from tqdm.auto import tqdm

    counts: dict[int, dict[str, list[int]]] = {}
    sources: dict[str, str] = {}
    invalid: list[dict] = []
    for step, path in tqdm(files.items(), desc="read samples", unit=" steps", disable=not progress):
        per = counts.setdefault(step, {})
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    pid, source, correct = _parse_line(line, step)
                except ValueError as e:
                    if not skip_invalid:
                        raise UserInputError(f"{path}:{lineno}: {e} (use --skip-invalid to skip and count)") from None
                    invalid.append({"where": f"{path}:{lineno}", "reason": str(e)})
                    continue
                c = per.setdefault(pid, [0, 0])
                c[0] += correct
                c[1] += 1
                sources.setdefault(pid, source)
    return counts, sources, invalid


def _parse_line(line: str, step: int) -> tuple[str, str, bool]:
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got {type(d).__name__}")
    pid = d.get("problem_id")
    if not isinstance(pid, str | int) or isinstance(pid, bool) or pid == "":
        raise ValueError(f"field 'problem_id' must be a non-empty string, got {pid!r}")
    correct = d.get("correct")
    if not isinstance(correct, bool):
        raise ValueError(f"field 'correct' must be true or false, got {correct!r}")
    if "step" in d and d["step"] != step:
        raise ValueError(f"field 'step' is {d['step']!r} but the file is step {step}")
    return str(pid), str(d.get("source") or ""), correct


def limr_scores(
    counts: dict[int, dict[str, list[int]]], sources: dict[str, str], config: LimrConfig
) -> LimrResult:
    """Scores from per-step counts (see the module docstring for the rules)."""
    K = config.steps_per_epoch
    steps_in_epoch: dict[int, list[int]] = defaultdict(list)
    for step in counts:
        if step < 1:
            raise UserInputError(f"step {step}: steps start at 1")
        steps_in_epoch[(step - 1) // K].append(step)
    incomplete = {k: len(v) for k, v in steps_in_epoch.items() if len(v) < K}
    used = sorted(k for k in steps_in_epoch if config.partial_epochs == "keep" or k not in incomplete)
    if not used:
        raise UserInputError(
            f"no complete epoch: {len(counts)} step files, {K} steps per epoch (use --partial-epochs keep to use "
            "incomplete epochs)"
        )

    # r_ik
    per_epoch: list[dict[str, float]] = []
    n_samples: dict[str, int] = defaultdict(int)
    for k in used:
        tally: dict[str, list[int]] = {}
        for step in steps_in_epoch[k]:
            for pid, (c, n) in counts[step].items():
                t = tally.setdefault(pid, [0, 0])
                t[0] += c
                t[1] += n
        per_epoch.append({pid: c / n for pid, (c, n) in tally.items()})
        for pid, (_c, n) in tally.items():
            n_samples[pid] += n
    means = [sum(r.values()) / len(r) for r in per_epoch]

    all_ids = sorted(set(sources) | {pid for step in counts.values() for pid in step})
    scores: list[ProblemScore] = []
    n_missing_some = 0
    for pid in all_ids:
        rewards = [r.get(pid) for r in per_epoch]
        present = [k for k, r in enumerate(rewards) if r is not None]
        source = sources.get(pid, "")
        if not present:
            scores.append(ProblemScore(pid, source, None, False, rewards, 0, "not sampled in any used epoch"))
            continue
        if len(present) < len(rewards):
            n_missing_some += 1
            if config.missing == "drop":
                note = f"not sampled in {len(rewards) - len(present)} of {len(rewards)} epochs (dropped)"
                scores.append(ProblemScore(pid, source, None, False, rewards, n_samples[pid], note))
                continue
        num = sum((rewards[k] - means[k]) ** 2 for k in present)
        den = sum((1 - means[k]) ** 2 for k in present)
        s = 1.0 if den == 0 else 1 - num / den
        note = "" if len(present) == len(rewards) else f"scored over {len(present)} of {len(rewards)} epochs"
        scores.append(ProblemScore(pid, source, s, s >= config.threshold, rewards, n_samples[pid], note))

    scored = [s for s in scores if s.score is not None]
    report = {
        "config": asdict(config),
        "n_steps": len(counts),
        "epochs_used": [k + 1 for k in used],
        "epochs_incomplete": {str(k + 1): f"{n} of {K} steps" for k, n in sorted(incomplete.items())},
        "incomplete_epochs_rule": config.partial_epochs,
        "epoch_mean_reward": [round(m, 6) for m in means],
        "n_problems": len(scores),
        "n_scored": len(scored),
        "n_selected": sum(s.kept for s in scores),
        "n_missing_some_epoch": n_missing_some,
        "missing_rule": config.missing,
        "n_not_scored": len(scores) - len(scored),
        "score_quantiles": _quantiles([s.score for s in scored]),
    }
    return LimrResult(scores, means, report)


def _quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)
    return {f"p{q}": round(v[min(len(v) - 1, int(q / 100 * len(v)))], 6) for q in (0, 10, 25, 50, 75, 90, 100)}


def select(samples: str | Path, config: LimrConfig) -> LimrResult:
    """Read the dumps of a run and score every problem."""
    files = step_files(samples)
    counts, sources, invalid = read_counts(files, skip_invalid=config.skip_invalid, progress=config.progress)
    result = limr_scores(counts, sources, config)
    result.report["samples_dir"] = str(Path(samples))
    result.report["n_invalid_lines"] = len(invalid)
    result.report["invalid_examples"] = invalid[:5]
    return result


def plot_scores(result: LimrResult, threshold: float, path: str | Path) -> Path:
    """Histogram of the scores with the threshold, as a PNG (matplotlib's Agg canvas; no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = [s.score for s in result.scores if s.score is not None]
    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.hist(values, bins=50, color="#4c72b0")
    ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"θ = {threshold}")
    kept = sum(v >= threshold for v in values)
    ax.set_title(f"LIMR scores: {kept} of {len(values)} problems kept (s ≥ θ)")
    ax.set_xlabel("s_i")
    ax.set_ylabel("problems")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def load_pool(path: str | Path) -> list:
    """The problems a run trained on: torl schema (.jsonl/.parquet) or a veRL parquet."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        if not path.is_file():
            raise UserInputError(f"{path}: no such file")
        if "reward_model" in pq.read_schema(path).names:
            return read_verl_parquet(path)
    return read_problems(path)


def write_limr_outputs(result: LimrResult, out_dir: str | Path, threshold: float, pool_path: str | Path | None = None
                       ) -> dict[str, Path]:
    """scores.jsonl, selected_ids.txt, scores.png, limr_report.json/.md; selected.jsonl and selected.parquet
    (torl and veRL schema) when the pool the run trained on is given."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"scores": out / "scores.jsonl", "selected_ids": out / "selected_ids.txt", "plot": out / "scores.png",
             "report_json": out / "limr_report.json", "report_md": out / "limr_report.md"}
    with paths["scores"].open("w", encoding="utf-8") as f:
        for s in result.scores:
            f.write(json.dumps(asdict(s), ensure_ascii=False) + "\n")
    paths["selected_ids"].write_text("".join(f"{pid}\n" for pid in result.selected_ids), encoding="utf-8")
    plot_scores(result, threshold, paths["plot"])
    if pool_path is not None:
        pool = load_pool(pool_path)
        by_id = {p.id: p for p in pool}
        scored_ids = {s.problem_id for s in result.scores}
        unknown = sorted(scored_ids - set(by_id))
        if scored_ids and len(unknown) == len(scored_ids):
            raise UserInputError(f"{pool_path}: none of the {len(scored_ids)} sampled problem ids is in this pool")
        selected = [by_id[pid] for pid in result.selected_ids if pid in by_id]
        paths["selected"] = out / "selected.jsonl"
        paths["selected_verl"] = out / "selected.parquet"
        write_problems(selected, paths["selected"])
        write_verl_parquet(selected, paths["selected_verl"])
        result.report["pool"] = {
            "path": str(pool_path), "n_pool": len(pool), "n_selected_in_pool": len(selected),
            "n_never_sampled": len(set(by_id) - scored_ids), "n_sampled_not_in_pool": len(unknown),
            "sampled_not_in_pool_examples": unknown[:10],
        }
    result.report["outputs"] = {k: str(v) for k, v in paths.items()}
    paths["report_json"].write_text(json.dumps(result.report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["report_md"].write_text(render_limr_markdown(result.report), encoding="utf-8")
    return paths


def render_limr_markdown(report: dict) -> str:
    c = report["config"]
    lines = [
        "# LIMR selection", "",
        f"{report['n_selected']} of {report['n_problems']} problems selected (s ≥ {c['threshold']}); "
        f"{report['n_scored']} scored, {report['n_not_scored']} not scored.", "",
        f"- steps read: {report['n_steps']}, {c['steps_per_epoch']} per epoch; epochs used: {report['epochs_used']}",
        f"- incomplete epochs ({report['incomplete_epochs_rule']}): {report['epochs_incomplete'] or 'none'}",
        f"- problems missing from some used epoch: {report['n_missing_some_epoch']} (rule: {report['missing_rule']})",
        f"- mean reward per epoch r̄_k: {report['epoch_mean_reward']}",
        f"- score quantiles: {report['score_quantiles']}",
        f"- invalid sample lines skipped: {report.get('n_invalid_lines', 0)}",
    ]
    if "pool" in report:
        p = report["pool"]
        lines.append(f"- pool {p['path']}: {p['n_pool']} problems, {p['n_selected_in_pool']} selected, "
                     f"{p['n_never_sampled']} never sampled, {p['n_sampled_not_in_pool']} sampled ids not in the pool")
    lines += ["", "![scores](scores.png)", ""]
    return "\n".join(lines)
