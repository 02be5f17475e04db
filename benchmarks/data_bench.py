"""Data benchmark: `torl data build` on synthetic NuminaMath-format rows, against naive stages, same run.

    python benchmarks/data_bench.py [--rows 100000] [--cores 2] [--out runs/bench/data_bench.json]

Target: the full build (read, filters, grader check, decontamination against every shipped benchmark, exact and
near dedup, writing both schemas and the report) of 100,000 rows in <= 120 s on 2 cores; peak memory reported.
Baselines, measured on a subsample in the same child process and compared per row:
  grader   `can_parse` row by row, no answer dedup, no cache (ours: distinct answers, threads, cache)
  decontam every training problem against every benchmark item's n-gram set (ours: one n-gram index); the
           naive loop also skips benchmark items shorter than n tokens, which ours matches whole
  near-dup every pair of problems compared by exact shingle Jaccard (ours: MinHash LSH); quadratic, so its
           100k figure is extrapolated from the subsample
Each configuration runs in a fresh child process pinned to `--cores` CPUs (grader workers inherit the pinning).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATES = [
    "A rectangle has length {a} and width {b}. What is its {q}?",
    "Find the remainder when ${a}^{{{b}}}$ is divided by ${c}$.",
    "How many positive divisors does ${n}$ have?",
    "Let $f(x) = {a}x^2 + {b}x + {c}$. Compute $f({d})$.",
    "A bag holds {a} red marbles and {b} blue marbles. Two are drawn without replacement. What is the probability "
    "that both are red?",
    "The sum of {a} consecutive integers is {n}. What is the largest of these integers?",
    "Solve for $x$: ${a}x + {b} = {c}x - {d}$.",
    "In triangle $ABC$, $AB = {a}$, $BC = {b}$ and $CA = {c}$. Find the area of the triangle.",
    "A train travels {a} miles in {b} hours. At the same speed, how many miles does it travel in {c} hours?",
    "What is the greatest common divisor of ${n}$ and ${m}$?",
    "Simplify $\\sqrt{{{n}}}$.",
    "For which values of $x$ is ${a}x^2 - {b}x + {c} < 0$? Give your answer as an interval.",
    "The vertices of a triangle are $({a}, {b})$, $({c}, {d})$ and $(0, 0)$. Find its centroid.",
]
WORDS = ("area", "perimeter", "diagonal squared", "semi-perimeter")


def _answer(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.60:
        return str(int(rng.paretovariate(1.2) * 3) % 5000)
    if r < 0.75:
        a, b = rng.randint(1, 60), rng.randint(2, 60)
        return f"\\frac{{{a}}}{{{b}}}"
    if r < 0.85:
        return f"{rng.randint(1, 30)}\\sqrt{{{rng.choice([2, 3, 5, 6, 7, 10, 11, 13])}}}"
    if r < 0.90:
        return f"{rng.randint(1, 9)}x^2 + {rng.randint(1, 99)}x - {rng.randint(1, 99)}"
    if r < 0.95:
        return f"({rng.randint(-20, 20)}, {rng.randint(-20, 20)})"
    return f"{rng.randint(0, 999)}.{rng.randint(1, 99)}"


def synthetic_rows(n: int, seed: int = 0) -> list[dict]:
    """NuminaMath-format rows: mostly clean problems, plus proofs, letter answers without choices, multi-part
    questions, free-text answers, long prompts, exact and near copies, and copies of MATH500 problems."""
    from torl.data.eval_sets import load_benchmark

    rng = random.Random(seed)
    math500 = load_benchmark("math500")
    rows: list[dict] = []
    for i in range(n):
        kind = rng.random()
        nums = {k: rng.randint(2, 999) for k in "abcdnm"}
        problem = rng.choice(TEMPLATES).format(q=rng.choice(WORDS), **nums) + f" (Item {i}.)"
        answer = _answer(rng)
        if kind < 0.04:
            problem = f"Prove that for every integer $k > {nums['a']}$, $k^3 - k$ is divisible by $6$."
            answer = "\\text{proved}"
        elif kind < 0.06:
            problem, answer = problem + " Which choice is right?", rng.choice("ABCDE")
        elif kind < 0.10:
            problem = f"(1) {problem}\n(2) Find the value of ${nums['b']} + {nums['c']}$."
        elif kind < 0.12:
            answer = "\\text{the function is increasing}"
        elif kind < 0.14:
            problem = "Read the following story carefully. " * 50 + problem
        elif kind < 0.19 and rows:
            src = rows[rng.randrange(len(rows))]
            problem, answer = src["problem"].replace(" ", "  "), src["solution"].split("boxed{")[-1][:-3]
        elif kind < 0.22 and rows:
            src = rows[rng.randrange(len(rows))]
            problem = src["problem"].replace(". ", ", ", 1).replace("?", " ?")
            answer = src["solution"].split("boxed{")[-1][:-3]
        elif kind < 0.225:
            p = math500[rng.randrange(len(math500))]
            problem, answer = p.problem, p.answer
        solution = f"Working it out step by step gives $\\boxed{{{answer}}}$."
        rows.append({"source": rng.choice(["cn_k12", "olympiads", "synthetic_math", "orca_math", "amc_aime"]),
                     "problem": problem, "solution": solution,
                     "messages": [{"role": "user", "content": problem}, {"role": "assistant", "content": solution}]})
    return rows


# ---------------------------------------------------------------------------------------------- child runs


def _pin(cores: int) -> list[int]:
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    os.sched_setaffinity(0, cpus)
    return cpus


def child_ours(data: Path, out: Path, cores: int) -> dict:
    cpus = _pin(cores)
    from torl.data.build import BuildConfig, build_dataset, write_outputs
    from torl.data.readers import parse_source_arg

    t0 = time.perf_counter()
    result = build_dataset([parse_source_arg(f"numina={data}")], BuildConfig(workers=cores))
    write_outputs(result, out)
    wall = time.perf_counter() - t0
    from torl.reward import default_grader

    default_grader(cores).close()  # reap the grader's worker processes so their peak memory is counted
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    r = result.report
    return {"cpus": cpus, "wall_s": round(wall, 2), "peak_rss_mib": round(peak_self, 1),
            "peak_rss_child_mib": round(peak_children, 1), "n_input": r["n_input"], "n_kept": r["n_kept"],
            "filters": {k: v["total"] for k, v in r["filters"].items()}, "stages_s": r["timings_s"],
            "n_unique_answers": len({d["answer"] for d in _answers(data)})}


def _answers(data: Path) -> list[dict]:
    from torl.reward import extract_answer

    return [{"answer": extract_answer(json.loads(line)["solution"]) or ""} for line in data.open()]


def child_baselines(data: Path, cores: int, n_grader: int, n_decontam: int, n_neardup: int) -> dict:
    cpus = _pin(cores)
    from torl.data.build import parse_flags
    from torl.data.decontam import build_index, shipped_benchmark_items
    from torl.data.dedup import DedupConfig, near_duplicates, shingles
    from torl.data.textnorm import word_tokens
    from torl.reward import Grader, default_grader, extract_answer

    rows = [json.loads(line) for line in data.open()]
    problems = [r["problem"] for r in rows]
    answers = [extract_answer(r["solution"]) or "0" for r in rows]
    out: dict = {"cpus": cpus}

    # grader: row by row, no cache  vs  ours (distinct answers over threads)
    sample = answers[:n_grader]
    with Grader(cores, cache_size=0) as naive:
        naive.can_parse("1")  # start the workers outside the timing
        t = time.perf_counter()
        for a in sample:
            naive.can_parse(a)
        base = time.perf_counter() - t
    default_grader(cores).can_parse("1")
    default_grader(cores).clear_cache()
    t = time.perf_counter()
    parse_flags(sample, cores)
    ours = time.perf_counter() - t
    out["grader"] = {"n": n_grader, "baseline_s": round(base, 3), "ours_s": round(ours, 3)}

    # decontamination: pairwise n-gram set intersection  vs  one index
    bench = shipped_benchmark_items()
    t = time.perf_counter()
    sets = [set(zip(*(word_tokens(text)[i:] for i in range(13)), strict=False)) for _b, _i, text in bench]
    hits_base = 0
    for p in problems[:n_decontam]:
        grams = set(zip(*(word_tokens(p)[i:] for i in range(13)), strict=False))
        hits_base += sum(1 for s in sets if s and len(grams & s) / len(s) >= 0.5)
    base = time.perf_counter() - t
    t = time.perf_counter()
    index = build_index(bench)
    hits_ours = sum(bool(index.hits(p)) for p in problems[:n_decontam])
    ours = time.perf_counter() - t
    out["decontam"] = {"n": n_decontam, "baseline_s": round(base, 3), "ours_s": round(ours, 3),
                       "baseline_hits": hits_base, "ours_hits": hits_ours}

    # near duplicates: all pairs  vs  MinHash LSH
    sample = problems[:n_neardup]
    t = time.perf_counter()
    sh = [shingles(p, 3) for p in sample]
    pairs = 0
    for i in range(len(sh)):
        for j in range(i):
            if len(sh[i] & sh[j]) / len(sh[i] | sh[j]) >= 0.8:
                pairs += 1
                break
    base = time.perf_counter() - t
    t = time.perf_counter()
    found = near_duplicates(sample, DedupConfig(same_numbers=False))
    ours = time.perf_counter() - t
    out["near_dup"] = {"n": n_neardup, "baseline_s": round(base, 3), "ours_s": round(ours, 3),
                       "baseline_items_with_a_copy": pairs, "ours_items_with_a_copy": len(found)}
    return out


def _run_child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[:2]} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--n-grader", type=int, default=3000, help="rows for the grader baseline")
    ap.add_argument("--n-decontam", type=int, default=300, help="rows for the decontamination baseline")
    ap.add_argument("--n-neardup", type=int, default=3000, help="rows for the near-duplicate baseline")
    ap.add_argument("--out", default="runs/bench/data_bench.json")
    ap.add_argument("--child", choices=("ours", "baselines"), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--build-out", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.child == "ours":
        print(json.dumps(child_ours(Path(a.data), Path(a.build_out), a.cores)))
        return
    if a.child == "baselines":
        print(json.dumps(child_baselines(Path(a.data), a.cores, a.n_grader, a.n_decontam, a.n_neardup)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synthetic.jsonl"
        t = time.perf_counter()
        with data.open("w", encoding="utf-8") as f:
            for row in synthetic_rows(a.rows):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        gen_s = time.perf_counter() - t
        common = ["--data", str(data), "--cores", str(a.cores)]
        ours = _run_child(["--child", "ours", "--build-out", str(Path(tmp) / "out"), *common])
        base = _run_child(["--child", "baselines", "--n-grader", str(a.n_grader), "--n-decontam", str(a.n_decontam),
                           "--n-neardup", str(a.n_neardup), *common])

    n = a.rows
    stages = {"grader": "grader_check", "decontam": "decontaminate", "near_dup": "deduplicate"}
    table = []
    for name, stage in stages.items():
        b = base[name]
        base_rate = b["n"] / b["baseline_s"] if b["baseline_s"] else float("inf")
        sample_rate = b["n"] / b["ours_s"] if b["ours_s"] else float("inf")
        full_s = ours["stages_s"][stage]
        # projected baseline time for all rows: linear, except all-pairs near-dup (quadratic)
        projected = b["baseline_s"] * ((n / b["n"]) ** 2 if name == "near_dup" else n / b["n"])
        table.append({"stage": name, "sample_rows": b["n"], "baseline_rows_per_s": round(base_rate, 1),
                      "ours_rows_per_s_same_sample": round(sample_rate, 1),
                      "speedup_same_sample": round(sample_rate / base_rate, 2) if base_rate else None,
                      "ours_full_s": full_s, "baseline_projected_full_s": round(projected, 1),
                      "speedup_full": round(projected / full_s, 1) if full_s else None})
    result = {"rows": n, "cores": a.cores, "generate_s": round(gen_s, 2), "target_s": 120,
              "met_target": ours["wall_s"] <= 120, "ours": ours, "baselines": base, "table": table}
    print(f"\ntorl data build: {n} synthetic rows on {a.cores} cores (cpus {ours['cpus']})")
    print(f"  wall {ours['wall_s']} s (target <= 120 s: {'met' if result['met_target'] else 'MISSED'}), "
          f"peak RSS {ours['peak_rss_mib']} MiB (largest child {ours['peak_rss_child_mib']} MiB), "
          f"kept {ours['n_kept']} of {ours['n_input']}, {ours['n_unique_answers']} distinct answers")
    print("  stages (s): " + ", ".join(f"{k} {v}" for k, v in ours["stages_s"].items()))
    head = f"{'stage':<10}{'sample':>8}{'base rows/s':>13}{'ours rows/s':>13}{'x (sample)':>11}"
    head += f"{'ours all s':>12}{'base all s*':>13}{'x (all)':>9}"
    print("\n" + head)
    for row in table:
        print(f"{row['stage']:<10}{row['sample_rows']:>8}{row['baseline_rows_per_s']:>13}"
              f"{row['ours_rows_per_s_same_sample']:>13}{row['speedup_same_sample']:>11}{row['ours_full_s']:>12}"
              f"{row['baseline_projected_full_s']:>13}{row['speedup_full']:>9}")
    print(f"* all {n} rows, projected from the sample: linear, quadratic for all-pairs near-dup")
    d = base["decontam"]
    print(f"decontam hits on the sample: baseline {d['baseline_hits']}, ours {d['ours_hits']} (the baseline misses "
          "benchmark items shorter than 13 tokens); near-dup items with a copy: baseline "
          f"{base['near_dup']['baseline_items_with_a_copy']}, ours {base['near_dup']['ours_items_with_a_copy']}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
