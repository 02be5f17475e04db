"""`torl data build`: raw sources -> a verifiable, deduplicated, decontaminated training set with a report.

The pipeline, in order (each dropped item is counted under the first step that rejects it, per source):

    invalid_row         malformed row, skipped and counted under `skip_invalid` (otherwise the build stops)
    missing_fields      empty problem, or no answer and no \\boxed{} in the solution
    proof               proof problems (filters.is_proof)
    multiple_choice     a choice letter as answer without listed choices (all letter answers with
                        `drop_all_multiple_choice`)
    multi_part          several requested answers (filters.is_multi_part); after free_text_answer, as one
                        grader batch: a solution that boxes answers the grader finds different from its last
    free_text_answer    an answer in words (filters.is_free_text)
    unparseable_answer  the grader cannot read the answer (`torl.reward.can_parse` is False)
    prompt_too_long     the reference prompt is over `max_prompt_tokens` tokens of `tokenizer` (or over
                        `max_prompt_chars` characters when no tokenizer is named)
    contaminated        n-gram overlap with a shipped benchmark item (decontam.py)
    exact_duplicate     same normalised text as an earlier kept item (sources are read in the order given)
    near_duplicate      MinHash-LSH near copy of an earlier kept item, with the same numbers (dedup.py)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torl.data import filters
from torl.data.decontam import DEFAULT_MIN_OVERLAP, DEFAULT_NGRAM, build_index, shipped_benchmark_items
from torl.data.dedup import DedupConfig, exact_duplicates, near_duplicates
from torl.data.readers import InvalidRow, RawItem, SourceSpec, read_source
from torl.data.report import build_report, render_markdown
from torl.data.schema import Problem, write_problems
from torl.data.textnorm import compact_key
from torl.data.verl import base_prompt, write_verl_parquet
from torl.errors import UserInputError
from torl.models.qwen25 import resolve_tokenizer_path
from torl.reward import default_grader, grade_many, is_equivalent


@dataclass
class BuildConfig:
    max_prompt_tokens: int = 390  # the reference dropped prompts over 390 tokens (max prompt length 400)
    tokenizer: str | None = None  # a local tokenizer directory or "qwen2.5"; None -> character limit
    max_prompt_chars: int = 1560  # used without a tokenizer: 390 tokens x ~4 characters
    drop_all_multiple_choice: bool = False
    decontaminate: bool = True
    benchmarks: tuple[str, ...] | None = None  # shipped benchmarks to decontaminate against; None -> all
    decontam_ngram: int = DEFAULT_NGRAM
    decontam_min_overlap: float = DEFAULT_MIN_OVERLAP
    near_dup_threshold: float = 0.8
    dedup_same_numbers: bool = True
    skip_invalid: bool = False
    workers: int | None = None  # grader worker processes; None -> the grader's default (min(4, CPUs))
    split: str = "train"  # split read from datasets directories, and written to extra_info
    n_examples: int = 5  # dropped examples per filter in the report
    progress: bool = False


@dataclass(frozen=True)
class Dropped:
    id: str
    source: str
    filter: str
    reason: str
    where: str
    problem: str = ""
    answer: str | None = None


@dataclass
class BuildResult:
    problems: list[Problem]
    dropped: list[Dropped]
    report: dict = field(default_factory=dict)


def _equivalent(a: str, b: str) -> bool:
    try:
        return bool(is_equivalent(a, b))
    except Exception:  # a grader failure means "not shown equivalent"
        return False


def parse_flags(answers: Sequence[str], workers: int | None = None, progress: bool = False) -> dict[str, bool]:
    """`torl.reward.can_parse` for each distinct answer. The grader runs math-verify in its own worker
    processes (`workers` of them); threads keep them all busy."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    grader = default_grader(workers)

    def check(answer: str) -> bool:
        try:
            return bool(grader.can_parse(answer))
        except Exception:  # a grader failure on one answer must not stop a build; it counts as unparseable
            return False

    unique = list(dict.fromkeys(answers))
    with ThreadPoolExecutor(max_workers=2 * grader.processes) as pool:
        flags = list(tqdm(pool.map(check, unique), total=len(unique), desc="grader check", unit=" answers",
                          disable=not progress))
    return dict(zip(unique, flags, strict=True))


def boxes_other_answers(items: Sequence[RawItem], workers: int | None = None) -> list[str | None]:
    """For each item, why its solution boxes answers that differ from its gold (the last box), or None.
    All pairs go to the grader in one batch (`torl.reward.grade_many`)."""
    preds = [b for it in items for b in it.other_boxed]
    golds = [it.answer for it in items for _ in it.other_boxed]
    same = iter(grade_many(preds, golds, processes=workers) if preds else [])
    out = []
    for it in items:
        differ = [b for b in it.other_boxed if not next(same)]
        out.append(f"the solution also boxes {', '.join(f'`{b}`' for b in differ[:3])}, not its final "
                   f"`{it.answer}`" if differ else None)
    return out


def prompt_lengths(problems: Sequence[str], tokenizer: str | None, progress: bool = False) -> list[int]:
    """Length of each problem's reference prompt: tokens of `tokenizer` (a local directory or "qwen2.5"), else
    characters."""
    from tqdm.auto import tqdm

    prompts = [base_prompt(p) for p in problems]
    if tokenizer is None:
        return [len(p) for p in prompts]
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve_tokenizer_path(tokenizer), local_files_only=True)
    except Exception as e:  # transformers raises OSError/ValueError/... for a bad directory
        raise UserInputError(f"--tokenizer {tokenizer}: cannot load a tokenizer ({type(e).__name__}: {e})") from None
    lengths: list[int] = []
    for i in tqdm(range(0, len(prompts), 2048), desc="tokenize", disable=not progress):
        lengths.extend(len(ids) for ids in tok(prompts[i : i + 2048], add_special_tokens=False)["input_ids"])
    return lengths


def _content_reason(item: RawItem, config: BuildConfig) -> tuple[str, str] | None:
    """(filter, reason) of the first content filter that rejects the item, or None."""
    if why := filters.missing_fields(item.problem, item.answer):
        return "missing_fields", why
    problem, answer = item.problem, item.answer
    mc = filters.is_multiple_choice if config.drop_all_multiple_choice else filters.is_letter_without_choices
    checks = (
        ("proof", lambda: filters.is_proof(problem, answer)),
        ("multiple_choice", lambda: mc(problem, answer)),
        ("multi_part", lambda: filters.is_multi_part(problem, answer)),
        ("free_text_answer", lambda: filters.is_free_text(problem, answer)),
    )
    for name, check in checks:
        if why := check():
            return name, why
    return None


# Each stage takes the surviving items and returns (kept, drops, report part); a drop is (item, filter, reason).
Drops = list[tuple[RawItem, str, str]]


def _split(items: Sequence[RawItem], reasons: Sequence[tuple[str, str] | None]) -> tuple[list[RawItem], Drops]:
    kept, drops = [], []
    for item, reason in zip(items, reasons, strict=True):
        if reason:
            drops.append((item, *reason))
        else:
            kept.append(item)
    return kept, drops


def _stage_content(items: list[RawItem], config: BuildConfig) -> tuple[list[RawItem], Drops, dict]:
    from tqdm.auto import tqdm

    bar = tqdm(items, desc="filter", unit=" items", disable=not config.progress)
    return (*_split(items, [_content_reason(it, config) for it in bar]), {})


def _stage_grader(items: list[RawItem], config: BuildConfig) -> tuple[list[RawItem], Drops, dict]:
    """A solution that boxes answers other than its gold is multi-part; then the gold must parse."""
    boxed = boxes_other_answers(items, config.workers)
    items, drops = _split(items, [("multi_part", why) if why else None for why in boxed])
    ok = parse_flags([it.answer for it in items], config.workers, config.progress)
    reasons = [None if ok[it.answer] else ("unparseable_answer", f"the grader cannot parse the answer `{it.answer}`")
               for it in items]
    kept, more = _split(items, reasons)
    return kept, drops + more, {}


def _stage_length(items: list[RawItem], config: BuildConfig) -> tuple[list[RawItem], Drops, dict]:
    limit = config.max_prompt_tokens if config.tokenizer else config.max_prompt_chars
    unit = "tokens" if config.tokenizer else "characters"
    lengths = prompt_lengths([it.problem for it in items], config.tokenizer, config.progress)
    reasons = [("prompt_too_long", f"prompt is {n} {unit} (limit {limit})") if n > limit else None for n in lengths]
    return (*_split(items, reasons), {"prompt_limit": {"unit": unit, "limit": limit, "tokenizer": config.tokenizer}})


def _stage_decontam(
    items: list[RawItem], config: BuildConfig, benchmark_items: Sequence[tuple[str, str, str]] | None
) -> tuple[list[RawItem], Drops, dict]:
    from tqdm.auto import tqdm

    if not config.decontaminate:
        return items, [], {"decontamination": {"enabled": False}}
    refs = benchmark_items if benchmark_items is not None else shipped_benchmark_items(config.benchmarks)
    index = build_index(refs, config.decontam_ngram, config.decontam_min_overlap)
    hits_by_ref: dict = {}
    reasons = []
    for item in tqdm(items, desc="decontaminate", unit=" items", disable=not config.progress):
        ranked = sorted(index.hits(item.problem).items(), key=lambda kv: (-kv[1], kv[0].benchmark, kv[0].id))
        for ref, overlap in ranked:
            hits_by_ref.setdefault(ref, []).append({"id": item.id, "overlap": round(overlap, 3)})
        names = ", ".join(f"{r.benchmark}:{r.id} ({o:.0%})" for r, o in ranked[:3])
        more = f" and {len(ranked) - 3} more" if len(ranked) > 3 else ""
        reasons.append(("contaminated", f"{config.decontam_ngram}-gram overlap with {names}{more}") if ranked else None)
    report = {
        "enabled": True,
        "ngram": config.decontam_ngram,
        "min_overlap": config.decontam_min_overlap,
        "benchmarks": dict(index.n_items),
        "items_hit": dict(Counter(ref.benchmark for ref in hits_by_ref)),
        "hits": [{"benchmark": ref.benchmark, "id": ref.id, "train": train}
                 for ref, train in sorted(hits_by_ref.items(), key=lambda kv: (kv[0].benchmark, kv[0].id))],
    }
    return (*_split(items, reasons), {"decontamination": report})


def _stage_dedup(items: list[RawItem], config: BuildConfig) -> tuple[list[RawItem], Drops, dict]:
    """Exact, then near duplicates; the first occurrence (in source order) is kept."""
    texts = [it.problem for it in items]

    def same_answer(i: int, j: int) -> bool:
        a, b = items[i].answer, items[j].answer
        return compact_key(a) == compact_key(b) or _equivalent(a, b)

    exact = exact_duplicates(texts)
    found = near_duplicates(
        texts,
        DedupConfig(threshold=config.near_dup_threshold, same_numbers=config.dedup_same_numbers),
        skip={d.index for d in exact},
        same_answer=same_answer,
        progress=config.progress,
    )
    near = [d for d in found if d.kind == "near"]
    reasons: list[tuple[str, str] | None] = [None] * len(items)
    conflicts = []
    for d in (*exact, *near):
        kept = items[d.kept_index]
        sim = "" if d.kind == "exact" else f" (Jaccard {d.similarity:.2f}, same numbers and answer)"
        reasons[d.index] = (f"{d.kind}_duplicate", f"duplicate of {kept.id}{sim}")
        if d.kind == "exact" and not same_answer(d.index, d.kept_index):
            it = items[d.index]
            conflicts.append({"id": it.id, "answer": it.answer, "kept_id": kept.id, "kept_answer": kept.answer})
    similar = [
        {"id": items[d.index].id, "answer": items[d.index].answer, "similar_to": items[d.kept_index].id,
         "its_answer": items[d.kept_index].answer, "jaccard": d.similarity}
        for d in found if d.kind == "similar"
    ]
    n = config.n_examples
    report = {"exact": len(exact), "near": len(near), "answer_conflicts": len(conflicts),
              "answer_conflict_examples": conflicts[:n], "similar_kept": len(similar), "similar_kept_examples": similar[:n]}
    return (*_split(items, reasons), {"duplicates": report})


def build_dataset(
    sources: Sequence[SourceSpec],
    config: BuildConfig = BuildConfig(),
    *,
    benchmark_items: Sequence[tuple[str, str, str]] | None = None,
) -> BuildResult:
    """Run the whole pipeline. `benchmark_items` ((benchmark, id, problem) triples) replaces the shipped
    benchmarks as the decontamination reference when given."""
    if not sources:
        raise UserInputError("no sources given; pass --source FORMAT=PATH at least once")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    items: list[RawItem] = []
    invalid: list[InvalidRow] = []
    next_index: Counter = Counter()
    inputs = []
    for spec in sources:
        got, bad = read_source(spec, skip_invalid=config.skip_invalid, first_index=next_index[spec.label],
                               progress=config.progress)
        next_index[spec.label] += len(got) + len(bad)
        items.extend(got)
        invalid.extend(bad)
        inputs.append({"label": spec.label, "format": spec.format, "path": str(spec.path), "rows": len(got) + len(bad),
                       "invalid": len(bad)})
    timings["read"] = time.perf_counter() - t0

    dropped = [Dropped(r.id, r.source, "invalid_row", r.reason, r.where) for r in invalid]
    parts: dict = {}
    stages = (
        ("content_filters", lambda xs: _stage_content(xs, config)),
        ("grader_check", lambda xs: _stage_grader(xs, config)),
        ("prompt_length", lambda xs: _stage_length(xs, config)),
        ("decontaminate", lambda xs: _stage_decontam(xs, config, benchmark_items)),
        ("deduplicate", lambda xs: _stage_dedup(xs, config)),
    )
    alive = items
    for name, stage in stages:
        t = time.perf_counter()
        alive, drops, part = stage(alive)
        dropped += [Dropped(it.id, it.source, f, why, it.where, (it.problem or "")[:500], it.answer)
                    for it, f, why in drops]
        parts.update(part)
        timings[name] = time.perf_counter() - t

    problems = [Problem(it.id, it.problem.strip(), it.answer, it.source, dict(it.meta)) for it in alive]
    timings["total"] = time.perf_counter() - t0

    report = build_report(
        inputs=inputs,
        n_input=len(items) + len(invalid),
        problems=problems,
        dropped=dropped,
        config=asdict(config),
        decontamination=parts["decontamination"],
        duplicates=parts["duplicates"],
        prompt_limit=parts["prompt_limit"],
        timings={k: round(v, 3) for k, v in timings.items()},
        n_examples=config.n_examples,
    )
    return BuildResult(problems, dropped, report)


def write_outputs(result: BuildResult, out_dir: str | Path, split: str = "train",
                  flavour: str = "torl") -> dict[str, Path]:
    """Write train.parquet (veRL), problems.jsonl (torl), dropped.jsonl, report.json and report.md.
    flavour "reference": train.parquet holds the bare problem as its user message, for the reference trainer
    (`torl.data.verl`); the columns are the same."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "verl": out / f"{split}.parquet",
        "problems": out / "problems.jsonl",
        "dropped": out / "dropped.jsonl",
        "report_json": out / "report.json",
        "report_md": out / "report.md",
    }
    write_verl_parquet(result.problems, paths["verl"], split, flavour)
    result.report["verl_flavour"] = flavour
    write_problems(result.problems, paths["problems"])
    with paths["dropped"].open("w", encoding="utf-8") as f:
        for d in result.dropped:
            f.write(json.dumps(asdict(d), ensure_ascii=False) + "\n")
    result.report["outputs"] = {k: str(v) for k, v in paths.items()}
    paths["report_json"].write_text(json.dumps(result.report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["report_md"].write_text(render_markdown(result.report), encoding="utf-8")
    return paths
