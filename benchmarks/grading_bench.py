"""Grading benchmark: torl's grader against plain math-verify called the reference way, same run.

    python benchmarks/grading_bench.py [--pairs 5000] [--cores 2] [--timeout 5] [--out runs/bench/grading_bench.json]

Pairs: MATH-style (response, gold) built from the MATH test set (data/raw/math_test5000.jsonl): the gold is the
last \\boxed{} of the reference solution; the response is that solution (correct), a short tool-integrated
response with the gold rewritten in an equivalent form (correct), or with a changed value (wrong: another
number, or the gold plus \\sqrt{2}). Labels are
known by construction. Every grader gets the same extracted answers (`extract_answer`, timed separately).

Measured on `--cores` CPUs (the process and its workers are pinned):
  baseline 1 proc  `verify(parse(pred), parse(gold))`, prediction first and no `$…$` (the reference's call),
                   in the main thread with math-verify's own signal timeouts; per-pair latency
  baseline pool    the same call over a multiprocessing pool of `--cores` processes
  torl cold        a fresh `Grader(cores)` (worker start-up included), empty cache, `grade_many`
  torl cold, pool up  empty cache, workers already running (a training run after its first step)
  torl cached      the same pairs again (memo cache)
  torl latency     `Grader.compare` one pair at a time on a fresh grader (p50 / p99 / max), cold
Agreement: with the hand-checked table tests/reward/data/equivalence_cases.tsv (both directions where marked)
and with the construction labels of the generated pairs; also for the reference's full check (reward.mode
"reference", TORL-SPEC §4: lower-case match, Minerva normalisation without the "=" split, math-verify with the
prediction first, Hendrycks is_equiv on exceptions).
Targets: >= 500 pairs/s cold, >= 50,000 pairs/s cached, p99 bounded by the timeout, agreement above math-verify's.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import re
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from torl.reward import Grader, extract_answer  # noqa: E402

MATH_TEST = Path("/work/shared/data/raw/math_test5000.jsonl")
TABLE = ROOT / "tests" / "reward" / "data" / "equivalence_cases.tsv"
TEMPLATE = (
    "Let me work this out with a quick computation.\n```python\nfrom sympy import *\nprint({code})\n```\n"
    "```output\n{output}\n```\nSo the final answer is $\\boxed{{{answer}}}$."
)

# --------------------------------------------------------------------------------------------- the pairs


def _equivalent_form(gold: str, rng: random.Random) -> str:
    """The gold rewritten without changing its value."""
    forms = [lambda g: g.replace("\\frac", "\\dfrac"), lambda g: g + ".", lambda g: f" {g} "]
    if re.fullmatch(r"-?\d+", gold):
        n = int(gold)
        forms += [lambda g: f"{n}.0", lambda g: f"{g} \\text{{ units}}", lambda g: f"x = {g}"]
        if abs(n) >= 1000:
            forms.append(lambda g: f"{n:,}")
    m = re.fullmatch(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", gold)
    if m:
        value = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
        forms.append(lambda g: f"{value.numerator}/{value.denominator}")
        den = value.denominator
        while den % 2 == 0:
            den //= 2
        while den % 5 == 0:
            den //= 5
        if den == 1:
            forms.append(lambda g: str(float(value)))  # a terminating decimal, exactly
    if "(" in gold and "\\left" not in gold:
        forms.append(lambda g: g.replace("(", "\\left(").replace(")", "\\right)"))
    if gold.endswith("^\\circ"):
        forms.append(lambda g: g[: -len("^\\circ")])
    if gold.startswith("\\text{(") and gold.endswith(")}"):
        forms.append(lambda g: g[len("\\text{(") : -len(")}")])
    return rng.choice(forms)(gold)


def _wrong_form(gold: str, rng: random.Random) -> str:
    """A different answer: a changed number, or the gold plus an irrational (never a mixed-number lookalike)."""
    if re.fullmatch(r"-?\d+", gold):
        return str(int(gold) + rng.choice([1, -1, 10]))
    m = re.fullmatch(r"\\[dt]?frac\{(\d+)\}\{(\d+)\}", gold)
    if m:
        return f"\\frac{{{int(m.group(1)) + 1}}}{{{m.group(2)}}}"
    return f"{gold}+\\sqrt{{2}}"


def build_pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = [json.loads(line) for line in MATH_TEST.read_text().splitlines() if line.strip()]
    pairs = []
    while len(pairs) < n:
        row = rows[len(pairs) % len(rows)]
        gold = extract_answer(row["solution"])
        if gold is None:
            continue
        r = rng.random()
        if r < 0.35:
            pairs.append({"response": row["solution"], "gold": gold, "label": True, "kind": "solution"})
        elif r < 0.70:
            answer = _equivalent_form(gold, rng)
            response = TEMPLATE.format(code="simplify(expr)", output=answer, answer=answer)
            pairs.append({"response": response, "gold": gold, "label": True, "kind": "equivalent"})
        else:
            answer = _wrong_form(gold, rng)
            response = TEMPLATE.format(code="simplify(expr)", output=answer, answer=answer)
            pairs.append({"response": response, "gold": gold, "label": False, "kind": "wrong"})
    return pairs


def load_table() -> list[tuple[str, str, bool]]:
    out = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pred, gold, expected, direction, _ = line.split("\t")
        out.append((pred, gold, expected == "1"))
        if direction == "both":
            out.append((gold, pred, expected == "1"))
    return out


# ------------------------------------------------------------------------------------------ the baseline


def reference_call(pred: str | None, gold: str) -> bool:
    """Plain math-verify as the reference calls it: prediction first, strings without `$…$`."""
    from math_verify import parse, verify

    if pred is None:
        return False
    try:
        return bool(verify(parse(pred), parse(gold)))
    except Exception:
        return False


def _baseline_chunk(chunk: list[tuple[str | None, str]]) -> list[bool]:
    logging.disable(logging.CRITICAL)
    return [reference_call(p, g) for p, g in chunk]


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _agreement(results: list[bool], labels: list[bool]) -> float:
    return sum(r == lab for r, lab in zip(results, labels, strict=True)) / len(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--latency-pairs", type=int, default=1000)
    ap.add_argument("--out", default="runs/bench/grading_bench.json")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)  # math-verify warns on every timeout-less call
    cpus = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cpus)  # the graders' worker processes inherit this
    cores = len(cpus)

    pairs = build_pairs(args.pairs)
    t0 = time.perf_counter()
    preds = [extract_answer(p["response"]) for p in pairs]
    extract_s = time.perf_counter() - t0
    golds = [p["gold"] for p in pairs]
    labels = [p["label"] for p in pairs]
    table = load_table()
    results: dict = {
        "pairs": len(pairs),
        "cores": cores,
        "timeout_s": args.timeout,
        "extract_s": extract_s,
        "loadavg_at_start": os.getloadavg(),
    }
    print(
        f"{len(pairs)} pairs on {cores} cores; extraction {len(pairs) / extract_s:,.0f} responses/s",
        flush=True,
    )

    # baseline, one process, per-pair latency
    base_lat, base_out = [], []
    t0 = time.perf_counter()
    for p, g in zip(preds, golds, strict=True):
        s = time.perf_counter()
        base_out.append(reference_call(p, g))
        base_lat.append(time.perf_counter() - s)
    base_s = time.perf_counter() - t0
    print(f"baseline 1 proc done in {base_s:.1f}s", flush=True)

    # baseline, process pool
    chunks = [list(zip(preds[k : k + 50], golds[k : k + 50], strict=True)) for k in range(0, len(preds), 50)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        base_pool_out = [r for part in pool.map(_baseline_chunk, chunks) for r in part]
    base_pool_s = time.perf_counter() - t0
    print(f"baseline pool done in {base_pool_s:.1f}s", flush=True)

    # torl, cold then cached
    t0 = time.perf_counter()
    grader = Grader(cores, timeout=args.timeout)
    verdicts = grader.verdicts(preds, golds)
    cold_s = time.perf_counter() - t0
    ours = [v.equal for v in verdicts]
    cold_stats = grader.stats.to_dict()
    cached_runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        again = grader.grade_many(preds, golds)
        cached_runs.append(time.perf_counter() - t0)
    assert again == ours
    cached_s = min(cached_runs)
    methods: dict[str, int] = {}
    for v in verdicts:
        methods[v.method] = methods.get(v.method, 0) + 1
    print(f"torl cold {cold_s:.2f}s, cached {cached_s:.3f}s", flush=True)

    # torl, empty cache but workers already started (steady state of a training run)
    with Grader(cores, timeout=args.timeout) as warm:
        warm.compare("p-q", "-q+p")
        warm.compare("a+b", "b+a")  # both workers up
        t0 = time.perf_counter()
        warm_out = warm.grade_many(preds, golds)
        warm_s = time.perf_counter() - t0
    assert warm_out == ours

    # torl, one pair at a time, cold
    lat = []
    with Grader(cores, timeout=args.timeout) as fresh:
        fresh.compare("1", "1.0")
        fresh.compare("p-q", "-q+p")  # workers up: start-up is not a per-pair latency
        for p, g in list(zip(preds, golds, strict=True))[: args.latency_pairs]:
            s = time.perf_counter()
            fresh.compare(p, g)
            lat.append(time.perf_counter() - s)
        table_ours = [v.equal for v in fresh.verdicts([t[0] for t in table], [t[1] for t in table])]
        table_reference = [
            v.equal for v in fresh.verdicts([t[0] for t in table], [t[1] for t in table], mode="reference")
        ]
    grader.close()
    table_labels = [t[2] for t in table]
    table_base = [reference_call(p, g) for p, g, _ in table]
    base_lat_sample = base_lat[: args.latency_pairs]

    rows = [
        ("baseline 1 proc", len(pairs) / base_s, base_lat_sample),
        ("baseline pool", len(pairs) / base_pool_s, None),
        ("torl cold", len(pairs) / cold_s, lat),
        ("torl cold, pool up", len(pairs) / warm_s, None),
        ("torl cached", len(pairs) / cached_s, None),
    ]
    results["throughput_pairs_per_s"] = {name: rate for name, rate, _ in rows}
    results["latency_ms"] = {
        name: {
            "p50": 1000 * statistics.median(xs),
            "p99": 1000 * _percentile(xs, 0.99),
            "max": 1000 * max(xs),
        }
        for name, _, xs in rows
        if xs
    }
    results["agreement"] = {
        "hand_checked_table": {
            "n": len(table),
            "math_verify_reference_call": _agreement(table_base, table_labels),
            "reference_full_check": _agreement(table_reference, table_labels),
            "torl": _agreement(table_ours, table_labels),
        },
        "generated_pairs": {
            "n": len(pairs),
            "math_verify_reference_call": _agreement(base_out, labels),
            "math_verify_reference_call_pool": _agreement(base_pool_out, labels),
            "torl": _agreement(ours, labels),
        },
    }
    results["torl_cold_stats"] = cold_stats
    results["torl_methods"] = methods
    results["ratios"] = {
        "cold_vs_baseline_pool": results["throughput_pairs_per_s"]["torl cold"] / (len(pairs) / base_pool_s),
        "cached_vs_baseline_pool": results["throughput_pairs_per_s"]["torl cached"]
        / (len(pairs) / base_pool_s),
    }
    results["targets"] = {
        "cold_ge_500_per_s": results["throughput_pairs_per_s"]["torl cold"] >= 500,
        "cached_ge_50000_per_s": results["throughput_pairs_per_s"]["torl cached"] >= 50_000,
        "p99_le_timeout": results["latency_ms"]["torl cold"]["max"] <= 1000 * (args.timeout + 1),
        "agreement_above_math_verify": results["agreement"]["hand_checked_table"]["torl"]
        > results["agreement"]["hand_checked_table"]["math_verify_reference_call"],
    }

    print()
    print(f"load average at start: {results['loadavg_at_start']}")
    print(f"{'grader':<20}{'pairs/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, rate, xs in rows:
        lat_cols = (
            f"{1000 * statistics.median(xs):>10.2f}{1000 * _percentile(xs, 0.99):>10.2f}{1000 * max(xs):>10.1f}"
            if xs
            else f"{'':>10}{'':>10}{'':>10}"
        )
        print(f"{name:<20}{rate:>12,.0f}{lat_cols}")
    print()
    agreement = results["agreement"]
    print(
        f"{'agreement':<32}{'table (' + str(len(table)) + ')':>14}{'generated (' + str(len(pairs)) + ')':>18}"
    )
    print(
        f"{'math-verify, reference call':<32}{agreement['hand_checked_table']['math_verify_reference_call']:>14.3f}"
        f"{agreement['generated_pairs']['math_verify_reference_call']:>18.3f}"
    )
    print(
        f"{'reference full check':<32}{agreement['hand_checked_table']['reference_full_check']:>14.3f}{'':>18}"
    )
    print(
        f"{'torl':<32}{agreement['hand_checked_table']['torl']:>14.3f}{agreement['generated_pairs']['torl']:>18.3f}"
    )
    print()
    print("torl cold:", cold_stats, "methods:", methods)
    print("targets:", results["targets"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
