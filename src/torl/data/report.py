"""The build report: counts per filter per source, histograms, dropped examples; as JSON and as Markdown."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from torl.data.answers import answer_type
from torl.data.filters import FILTER_ORDER
from torl.data.schema import Problem


def difficulty_bucket(meta: dict) -> str:
    """"level 3" (MATH level), "difficulty 4" (DeepScaleR-style score, rounded down) or "unknown"."""
    if isinstance(meta.get("level"), int):
        return f"level {meta['level']}"
    if isinstance(meta.get("difficulty"), int | float):
        return f"difficulty {int(meta['difficulty'])}"
    return "unknown"


def build_report(
    *,
    inputs: list[dict],
    n_input: int,
    problems: Sequence[Problem],
    dropped: Sequence,
    config: dict,
    decontamination: dict,
    duplicates: dict,
    prompt_limit: dict,
    timings: dict,
    n_examples: int = 5,
) -> dict:
    """The report as a JSON-ready dict. Invariant: n_input == n_kept + sum of every filter count."""

    per_filter: dict[str, Counter] = {name: Counter() for name in FILTER_ORDER}
    examples: dict[str, list] = defaultdict(list)
    for d in dropped:
        per_filter[d.filter][d.source] += 1
        if len(examples[d.filter]) < n_examples:
            examples[d.filter].append(
                {"id": d.id, "source": d.source, "where": d.where, "reason": d.reason,
                 "problem": d.problem[:300], "answer": d.answer}
            )
    kept_by_source = Counter(p.source for p in problems)
    sources = sorted(set(kept_by_source) | {s for c in per_filter.values() for s in c})
    by_source = {
        s: {"n_input": kept_by_source[s] + sum(c[s] for c in per_filter.values()), "n_kept": kept_by_source[s]}
        for s in sources
    }
    answer_types: dict[str, Counter] = defaultdict(Counter)
    difficulty: dict[str, Counter] = defaultdict(Counter)
    for p in problems:
        answer_types[p.source][answer_type(p.answer)] += 1
        difficulty[p.source][difficulty_bucket(p.meta)] += 1
    total_types = sum(answer_types.values(), Counter())
    n_dropped = sum(sum(c.values()) for c in per_filter.values())
    if n_input != len(problems) + n_dropped:
        raise RuntimeError(f"report: {n_input} rows in, {len(problems)} kept + {n_dropped} dropped (a row was lost)")
    return {
        "n_input": n_input,
        "n_kept": len(problems),
        "n_dropped": n_dropped,
        "inputs": inputs,
        "sources": by_source,
        "filter_order": list(FILTER_ORDER),
        "filters": {name: {"total": sum(c.values()), **dict(sorted(c.items()))} for name, c in per_filter.items()},
        "answer_types": {"all": dict(total_types.most_common()),
                         **{s: dict(c.most_common()) for s, c in sorted(answer_types.items())}},
        "difficulty": {s: dict(sorted(c.items())) for s, c in sorted(difficulty.items())},
        "prompt_limit": prompt_limit,
        "duplicates": duplicates,
        "decontamination": decontamination,
        "examples": dict(examples),
        "config": config,
        "timings_s": timings,
    }


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_markdown(report: dict) -> str:
    """A human-readable report.md of a build report."""
    sources = list(report["sources"])
    out = ["# torl data build report", ""]
    out.append(f"**{report['n_input']}** input rows, **{report['n_kept']}** kept, {report['n_dropped']} dropped.")
    lim = report["prompt_limit"]
    out.append(f"Prompt limit: {lim['limit']} {lim['unit']}" + (f" ({lim['tokenizer']})" if lim["tokenizer"] else "") + ".")
    out += ["", "## Inputs", ""]
    out += _table(["label", "format", "path", "rows", "invalid"],
                  [[i["label"], i["format"], f"`{i['path']}`", i["rows"], i["invalid"]] for i in report["inputs"]])
    out += ["", "## Dropped per filter and source", "",
            "Pipeline order; an item is counted under the first filter that drops it.", ""]
    rows = [[name, *(report["filters"][name].get(s, 0) for s in sources), report["filters"][name]["total"]]
            for name in report["filter_order"]]
    rows.append(["**kept**", *(report["sources"][s]["n_kept"] for s in sources), report["n_kept"]])
    rows.append(["input", *(report["sources"][s]["n_input"] for s in sources), report["n_input"]])
    out += _table(["filter", *sources, "total"], rows)
    out += ["", "## Answer types (kept)", ""]
    types = list(report["answer_types"]["all"])
    out += _table(["source", *types], [[s, *(c.get(t, 0) for t in types)] for s, c in report["answer_types"].items()])
    out += ["", "## Difficulty (kept)", ""]
    for s, hist in report["difficulty"].items():
        out.append(f"- {s}: " + ", ".join(f"{k}: {v}" for k, v in hist.items()))
    dup = report["duplicates"]
    out += ["", "## Duplicates", "", f"{dup['exact']} exact and {dup['near']} near duplicates dropped. "
            f"{dup['answer_conflicts']} exact duplicates had an answer that differs from the kept copy's:"]
    for c in dup["answer_conflict_examples"]:
        out.append(f"- {c['id']} ({_cell(c['answer'], 40)}) vs kept {c['kept_id']} ({_cell(c['kept_answer'], 40)})")
    out += ["", f"{dup['similar_kept']} near-identical texts were kept because their answers differ "
            "(a changed word makes a new problem):"]
    for c in dup["similar_kept_examples"]:
        out.append(f"- {c['id']} ({_cell(c['answer'], 40)}) ~ {c['similar_to']} ({_cell(c['its_answer'], 40)}), "
                   f"Jaccard {c['jaccard']:.2f}")
    dec = report["decontamination"]
    out += ["", "## Decontamination", ""]
    if not dec.get("enabled"):
        out.append("Disabled.")
    else:
        out.append(f"{dec['ngram']}-grams, an item is contaminated when the shared n-grams cover at least "
                   f"{dec['min_overlap']:.0%} of a benchmark item.")
        out.append("")
        out += _table(["benchmark", "items", "items hit"],
                      [[b, n, dec["items_hit"].get(b, 0)] for b, n in dec["benchmarks"].items()])
        if dec["hits"]:
            out += ["", "Benchmark items hit (first 50):", ""]
            for h in dec["hits"][:50]:
                train = ", ".join(f"{t['id']} ({t['overlap']:.0%})" for t in h["train"][:5])
                out.append(f"- {h['benchmark']}:{h['id']} <- {train}")
    out += ["", "## Examples of dropped items", ""]
    for name in report["filter_order"]:
        ex = report["examples"].get(name)
        if not ex:
            continue
        out += [f"### {name}", ""]
        out += _table(["id", "reason", "problem", "answer"],
                      [[e["id"], _cell(e["reason"], 100), _cell(e["problem"]), _cell(e["answer"] or "", 40)] for e in ex])
        out.append("")
    out += ["## Timings (s)", "", ", ".join(f"{k}: {v}" for k, v in report["timings_s"].items()), ""]
    return "\n".join(out)
