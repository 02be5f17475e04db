"""`torl data build` and `torl data limr`."""

from __future__ import annotations

import argparse
import sys

from torl.data.build import BuildConfig, build_dataset, write_outputs
from torl.data.limr import LimrConfig, select, write_limr_outputs
from torl.data.readers import parse_columns_arg, parse_source_arg
from torl.errors import UserInputError


def register(subparsers) -> None:
    group = subparsers.add_parser("data", help="build training sets: filter, deduplicate, decontaminate, LIMR")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    b = sub.add_parser(
        "build",
        help="raw NuminaMath/MATH/DeepScaleR/generic files -> filtered training set + report",
        description="Read the sources, drop unverifiable/proof/multi-part/long/contaminated/duplicate problems, "
        "and write train.parquet (veRL), problems.jsonl (torl), dropped.jsonl, report.json and report.md.",
    )
    b.add_argument("--source", action="append", required=True, metavar="FORMAT[:LABEL]=PATH",
                   help="numina|math|deepscaler|generic|verl = a file, a directory of files, or a datasets directory "
                   "(verl: a veRL/reference parquet, TORL-SPEC §2); "
                   "repeat for several sources (earlier sources win duplicates)")
    b.add_argument("--columns", action="append", default=[], metavar="LABEL:FIELD=COLUMN[,...]",
                   help="column names of a source, e.g. gsm:problem=question,answer=final; fields: id, problem, "
                   "answer, solution, messages, level, difficulty, type, subsource")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument("--tokenizer", help="local tokenizer directory, or qwen2.5 (built offline), for the prompt-length "
                   "limit")
    b.add_argument("--max-prompt-tokens", type=int, default=390)
    b.add_argument("--max-prompt-chars", type=int, default=1560, help="limit used when no --tokenizer is given")
    b.add_argument("--for", dest="flavour", choices=("torl", "reference"), default="torl",
                   help="train.parquet's user message: torl = the instruction line + the problem; reference = the "
                   "bare problem, as in the reference's own files, for the reference trainer, which adds the "
                   "instruction itself (TORL-SPEC §2; default: torl)")
    b.add_argument("--split", default="train", help="split to read from datasets directories (default: train)")
    b.add_argument("--benchmarks", help="comma-separated shipped benchmarks to decontaminate against (default: all)")
    b.add_argument("--no-decontaminate", action="store_true", help="skip decontamination")
    b.add_argument("--ngram", type=int, default=13, help="decontamination n-gram length (default 13)")
    b.add_argument("--min-overlap", type=float, default=0.5,
                   help="share of a benchmark item's n-grams a training problem must contain to be contaminated")
    b.add_argument("--near-dup-threshold", type=float, default=0.8, help="MinHash Jaccard for near duplicates")
    b.add_argument("--drop-multiple-choice", action="store_true",
                   help="drop every item answered by a choice letter (default: only those without listed choices)")
    b.add_argument("--skip-invalid", action="store_true", help="skip malformed rows and count them")
    b.add_argument("--workers", type=int, help="grader worker processes (default: min(4, CPUs))")
    b.set_defaults(func=_build)

    limr = sub.add_parser(
        "limr",
        help="LIMR selection from a training run's sample dumps",
        description="Score every problem by how closely its per-epoch accuracy follows the mean, keep s >= θ, and "
        "write scores.jsonl, selected_ids.txt, scores.png and limr_report.{json,md} (+ selected.jsonl/.parquet "
        "with --pool).",
    )
    limr.add_argument("--samples", required=True, metavar="RUN_DIR", help="run directory with samples/step_*.jsonl")
    limr.add_argument("--steps-per-epoch", type=int, required=True, metavar="K")
    limr.add_argument("--threshold", type=float, default=0.6, help="keep problems with s >= θ (default 0.6)")
    limr.add_argument("--missing", choices=("skip", "drop"), default="skip",
                      help="a problem not sampled in some epoch: score it over the epochs it has (skip), or drop it")
    limr.add_argument("--partial-epochs", choices=("drop", "keep"), default="drop",
                      help="epochs with fewer than K step files: leave them out (drop) or use them (keep)")
    limr.add_argument("--pool", help="the problems the run trained on (torl .jsonl/.parquet or veRL .parquet)")
    limr.add_argument("--skip-invalid", action="store_true", help="skip malformed sample lines and count them")
    limr.add_argument("--out", required=True, help="output directory")
    limr.set_defaults(func=_limr)


def _build(args: argparse.Namespace) -> int:
    columns: dict[str, dict[str, str]] = {}
    for text in args.columns:
        label, mapping = parse_columns_arg(text)
        columns.setdefault(label, {}).update(mapping)
    specs = []
    for text in args.source:
        head = text.split("=", 1)[0]
        label = head.partition(":")[2] or head.partition(":")[0]
        specs.append(parse_source_arg(text, columns.get(label.strip()), args.split))
    unused = set(columns) - {s.label for s in specs}
    if unused:
        raise UserInputError(f"--columns names unknown source label(s) {sorted(unused)}")
    config = BuildConfig(
        max_prompt_tokens=args.max_prompt_tokens,
        tokenizer=args.tokenizer,
        max_prompt_chars=args.max_prompt_chars,
        drop_all_multiple_choice=args.drop_multiple_choice,
        decontaminate=not args.no_decontaminate,
        benchmarks=tuple(b.strip() for b in args.benchmarks.split(",") if b.strip()) if args.benchmarks else None,
        decontam_ngram=args.ngram,
        decontam_min_overlap=args.min_overlap,
        near_dup_threshold=args.near_dup_threshold,
        skip_invalid=args.skip_invalid,
        workers=args.workers,
        split=args.split,
        progress=sys.stderr.isatty(),
    )
    result = build_dataset(specs, config)
    paths = write_outputs(result, args.out, args.split, args.flavour)
    r = result.report
    print(f"kept {r['n_kept']} of {r['n_input']} rows; report: {paths['report_md']}")
    for name in r["filter_order"]:
        if r["filters"][name]["total"]:
            print(f"  {name}: {r['filters'][name]['total']}")
    return 0


def _limr(args: argparse.Namespace) -> int:
    config = LimrConfig(
        steps_per_epoch=args.steps_per_epoch,
        threshold=args.threshold,
        missing=args.missing,
        partial_epochs=args.partial_epochs,
        skip_invalid=args.skip_invalid,
        progress=sys.stderr.isatty(),
    )
    result = select(args.samples, config)
    paths = write_limr_outputs(result, args.out, args.threshold, args.pool)
    r = result.report
    print(f"selected {r['n_selected']} of {r['n_problems']} problems (θ = {args.threshold}); "
          f"epochs used {r['epochs_used']}; report: {paths['report_md']}")
    return 0
