"""`torl grade`: grade one answer, or a JSONL file of responses, against gold answers."""

from __future__ import annotations

import argparse
import json
import sys

from torl.errors import UserInputError
from torl.reward.extract import extract_answer
from torl.reward.grader import DEFAULT_TIMEOUT, Grader
from torl.reward.reference import reference_extract
from torl.reward.values import DEFAULT_REL_TOL

_DESCRIPTION = """\
Grade answers with torl's math-equivalence checker.

  torl grade --pred '\\frac{1}{2}' --gold '0.5'
  torl grade --file rollouts.jsonl [--json] [--skip-invalid]

--file reads one JSON object per line with a response (key "response" or "text"; its last \\boxed{} is the
answer) or an already extracted answer ("pred"), and a gold ("gold" or "answer"). It prints the accuracy;
--json prints one JSON object per item instead (the summary goes to stderr).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "grade",
        help="grade answers against gold answers (math equivalence)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--pred", help="an answer, or a response whose last \\boxed{} is the answer")
    source.add_argument("--file", help="JSONL file of {response|text|pred, gold|answer} records")
    p.add_argument("--gold", help="the gold answer (with --pred)")
    p.add_argument("--json", action="store_true", help="print per-item JSON")
    p.add_argument(
        "--skip-invalid", action="store_true", help="skip (and count) bad lines instead of stopping"
    )
    p.add_argument(
        "--mode",
        choices=("torl", "reference"),
        default="torl",
        help="grader (default: torl); reference: the reference's extraction and check, TORL-SPEC §4",
    )
    p.add_argument(
        "--rel-tol",
        type=float,
        default=None,
        help="relative tolerance of a decimal against a value without a finite decimal expansion "
        "(default 1e-4: 1.4142 = sqrt(2), 3.14 != pi; mode torl)",
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds per symbolic comparison (default 5)")
    p.add_argument(
        "--processes", type=int, default=None, help="grading worker processes (default: min(4, CPUs))"
    )
    p.set_defaults(func=_run)


def _extract(response: str, mode: str) -> str | None:
    return reference_extract(response) if mode == "reference" else extract_answer(response)


def _answer_of(text: str, mode: str) -> str | None:
    return _extract(text, mode) if ("\\boxed" in text or "\\fbox" in text) else (text.strip() or None)


def _run(args: argparse.Namespace) -> int:
    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    if timeout <= 0:
        raise UserInputError(f"--timeout must be > 0, got {timeout}")
    if args.processes is not None and args.processes < 1:
        raise UserInputError(f"--processes must be >= 1, got {args.processes}")
    rel_tol = DEFAULT_REL_TOL if args.rel_tol is None else args.rel_tol
    if not 0 <= rel_tol < 1:
        raise UserInputError(f"--rel-tol must be in [0, 1), got {rel_tol}")
    with Grader(args.processes, timeout=timeout, rel_tol=rel_tol) as grader:
        if args.pred is not None:
            return _grade_one(args, grader)
        return _grade_file(args, grader)


def _grade_one(args, grader) -> int:
    if args.gold is None:
        raise UserInputError("--pred needs --gold")
    pred = _answer_of(args.pred, args.mode)
    verdict = grader.verdicts([pred], [args.gold], mode=args.mode)[0]
    if args.json:
        print(
            json.dumps({"pred": pred, "gold": args.gold, "correct": verdict.equal, "method": verdict.method})
        )
    else:
        print("correct" if verdict.equal else "wrong")
    return 0


def _read_records(path: str, skip_invalid: bool, mode: str) -> tuple[list[tuple[int, str | None, str]], int]:
    records, skipped = [], 0
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as e:
        raise UserInputError(f"cannot read {path}: {e.strerror}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
                if "pred" in record:
                    pred = record["pred"]
                    if pred is not None and not isinstance(pred, str):
                        raise ValueError('"pred" must be a string or null')
                else:
                    response = record.get("response", record.get("text"))
                    if not isinstance(response, str):
                        raise ValueError('needs a string "response" (or "text", or "pred")')
                    pred = _extract(response, mode)
                gold = record.get("gold", record.get("answer"))
                if isinstance(gold, (int, float)) and not isinstance(gold, bool):
                    gold = str(gold)
                if not isinstance(gold, str):
                    raise ValueError('needs a string "gold" (or "answer")')
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                if not skip_invalid:
                    raise UserInputError(f"{path}:{lineno}: {e}") from None
                skipped += 1
                continue
            records.append((lineno, pred, gold))
    return records, skipped


def _grade_file(args, grader) -> int:
    records, skipped = _read_records(args.file, args.skip_invalid, args.mode)
    preds = [r[1] for r in records]
    golds = [r[2] for r in records]
    verdicts = grader.verdicts(preds, golds, mode=args.mode, progress=sys.stderr.isatty())
    correct = sum(v.equal for v in verdicts)
    n = len(records)
    stats = grader.stats
    summary = {
        "accuracy": correct / n if n else 0.0,
        "correct": correct,
        "total": n,
        "no_answer": sum(p is None for p in preds),
        "timeouts": stats.timeouts,
        "skipped_invalid": skipped,
    }
    if args.json:
        for (lineno, pred, gold), v in zip(records, verdicts, strict=True):
            print(
                json.dumps(
                    {"line": lineno, "pred": pred, "gold": gold, "correct": v.equal, "method": v.method}
                )
            )
        print(json.dumps(summary), file=sys.stderr)
    else:
        print(
            f"accuracy {summary['accuracy']:.4f} ({correct}/{n})  no answer: {summary['no_answer']}  "
            f"timeouts: {summary['timeouts']}  invalid lines skipped: {skipped}"
        )
    return 0
