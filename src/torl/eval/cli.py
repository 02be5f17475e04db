"""`torl eval`: evaluate a model on the math benchmarks with the training tool loop; list benchmarks; compare runs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from torl.data.eval_sets import BENCHMARKS, resolve_benchmarks
from torl.errors import UserInputError
from torl.eval.results import compare_runs, results_markdown
from torl.eval.runner import (
    EVAL_TEMPERATURE,
    MODES,
    EvalConfig,
    check_resumable,
    eval_rollout,
    evaluate,
    run_record,
)
from torl.models.qwen25 import resolve_tokenizer_path
from torl.rollout import get_template, make_backend
from torl.rollout.cli import add_rollout_options, rollout_options
from torl.rollout.config import build_rollout_config, read_rollout_section
from torl.sandbox import make_sandbox

BACKENDS = ("transformers", "vllm", "openai")
EXAMPLES = """examples:
  torl eval --list
  torl eval --model ./ckpt --backend transformers --benchmarks aime24,math500 --out runs/eval/ckpt
  torl eval --model ./ckpt --backend vllm --temperature 0.6 -n 32 --benchmarks aime24,aime25 --out runs/eval/avg32
  torl eval --model served-name --backend openai --base-url http://localhost:8000/v1 --out runs/eval/api
  torl eval --model ./ckpt --benchmarks my.jsonl --columns problem=question,answer=gold --out runs/eval/mine
  torl eval --model runs/x/checkpoint-100 --rollout-from runs/x --out runs/eval/x100
  torl eval --compare runs/eval/ckpt runs/eval/step0 --reference torl-1.5b
  torl eval --model ./ckpt --out runs/eval/obs512 rollout.obs_max_chars=512 rollout.exec_memory_mb=2048

rollout settings, last wins: RolloutConfig's defaults with temperature 0 (greedy) <- --rollout-from RUN's
rollout section, except its temperature <- the short options (--max-tool-calls, --temperature, ...; --temperature
is 0 unless given) <- rollout.KEY=VALUE overrides. So --rollout-from evaluates greedily with every other setting
of the run; add --temperature T (or rollout.temperature=T) to sample. --mode cot sets max_tool_calls to 0 last.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on math benchmarks with the training tool loop",
        description=(
            "Evaluate a model with exactly the rollout and grading code of training (greedy, C=1 and the training "
            "prompt by default: the paper's protocol). Writes per-sample JSONL (resumable), results.json and "
            "results.md into --out."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_argument_group("what to do (default: evaluate)")
    what.add_argument("--list", action="store_true", help="print every shipped benchmark with its item count")
    what.add_argument(
        "--compare", nargs="+", metavar="DIR", help="print a side-by-side table of finished runs"
    )
    what.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME",
        help="add the paper's row to --compare (e.g. torl-1.5b, torl-7b, qwen2.5-math-1.5b-instruct-tir); repeatable",
    )

    m = p.add_argument_group("model")
    m.add_argument("--model", help="model directory (transformers/vllm) or served model name (openai)")
    m.add_argument(
        "--backend", choices=BACKENDS, default="transformers", help="generation engine (default: %(default)s)"
    )
    m.add_argument(
        "--base-url",
        default="http://localhost:8000/v1",
        help="openai backend: server URL (default: %(default)s)",
    )
    m.add_argument(
        "--api-key", default=None, help="openai backend: API key (default: $OPENAI_API_KEY, else none)"
    )
    m.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer directory or qwen2.5 (default: the model's; with --backend openai: --model when it is a "
        "directory)",
    )
    m.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword for the backend, e.g. dtype=bfloat16, tensor_parallel_size=2 (vllm); "
        "VALUE is read as JSON when it parses; repeatable",
    )

    b = p.add_argument_group("benchmarks and output")
    b.add_argument(
        "--benchmarks",
        default="aime24,aime25,math500,olympiadbench,amc23",
        help="comma-separated names (see --list) and/or .jsonl/.json/.parquet files; a veRL/reference parquet "
        "gives one benchmark per data_source (FILE.parquet:SOURCE picks one) (default: %(default)s)",
    )
    b.add_argument(
        "--columns",
        default=None,
        metavar="FIELD=COLUMN,...",
        help="for benchmark files: map id/problem/answer to the file's columns, e.g. problem=question,answer=gold",
    )
    b.add_argument("--limit", type=int, default=None, help="only the first N problems of each benchmark")
    b.add_argument("--out", help="output directory (reusing it resumes an interrupted run)")

    g = p.add_argument_group("generation (defaults: the paper's evaluation protocol)")
    g.add_argument(
        "--mode",
        choices=MODES,
        default="tir",
        help="tir: tool-integrated prompt; cot: no-tool prompt, no execution",
    )
    g.add_argument(
        "--template",
        default=None,
        help="torl, torl-chat, cot, cot-chat or a .txt/.json/.yaml file (default: torl for tir, cot for cot)",
    )
    g.add_argument(
        "--rollout-from",
        metavar="RUN",
        default=None,
        help="a `torl train` run directory (its config.yaml) or train YAML file: evaluate with its rollout "
        "section (all of it but the temperature; see below), recorded in results.json",
    )
    add_rollout_options(g, defaults={"temperature": EVAL_TEMPERATURE})
    g.add_argument(
        "-n", type=int, default=1, help="samples per problem: avg@n, pass@k, maj@n (default: %(default)s)"
    )
    g.add_argument(
        "--sandbox", default="local", help="'local' or a Sandbox Fusion URL (default: %(default)s)"
    )
    g.add_argument(
        "--batch-size", type=int, default=128, help="prompts per generation batch (default: %(default)s)"
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="sampling seed: sample i of a problem is drawn from its own seed derived from (seed, benchmark, "
        "problem id, i), so a rerun or a resumed run gives the same samples (default: %(default)s)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval_command)


def parse_columns(text: str | None) -> dict[str, str] | None:
    """Parse "problem=question,answer=gold" into {"problem": "question", "answer": "gold"}."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        field, sep, column = part.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise UserInputError(f"--columns: expected FIELD=COLUMN pairs separated by commas, got {part!r}")
        out[field.strip()] = column.strip()
    return out


def parse_engine_args(items: list[str]) -> dict:
    """["dtype=bfloat16", "tensor_parallel_size=2"] -> {"dtype": "bfloat16", "tensor_parallel_size": 2}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UserInputError(
                f"--engine-arg: expected KEY=VALUE with a Python identifier as KEY, got {item!r}"
            )
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def check_tokenizer(backend: str, model: str, tokenizer: str | None) -> str | None:
    """The tokenizer directory to load, checked to exist (None: the backend loads the model's own)."""
    if tokenizer is None and backend != "openai":
        return None
    if tokenizer is not None:
        tokenizer = resolve_tokenizer_path(tokenizer)  # "qwen2.5": the Qwen2.5 tokenizer built offline
    path = Path(tokenizer or model).expanduser()
    if not path.is_dir():
        if tokenizer is None:
            raise UserInputError(
                f"--backend openai needs the model's tokenizer: --model {model!r} is not a local directory, "
                "so pass --tokenizer DIR"
            )
        raise UserInputError(f"tokenizer path {tokenizer!r} does not exist or is not a directory")
    return str(path.resolve())


def check_model(backend: str, model: str | None) -> str:
    """Fail fast, before anything heavy: a local model directory must exist (the resolved path is returned)."""
    if not model:
        raise UserInputError("--model is required to evaluate (or use --list / --compare)")
    if backend == "openai":
        return model
    path = Path(model).expanduser()
    if not path.exists():
        raise UserInputError(
            f"model path {model!r} does not exist (give a local model directory; for a Hugging Face Hub model, "
            "download it first, e.g. `huggingface-cli download ORG/NAME --local-dir DIR`)"
        )
    if not path.is_dir():
        raise UserInputError(f"model path {model!r} is not a directory")
    if not (path / "config.json").is_file():
        raise UserInputError(f"model path {model!r} has no config.json: not a transformers model directory")
    return str(path.resolve())


def check_server(base_url: str, timeout: float = 5.0) -> None:
    """Fail fast when an OpenAI-compatible server does not answer."""
    import httpx

    url = base_url.rstrip("/") + "/models"
    try:
        httpx.get(url, timeout=timeout)
    except httpx.HTTPError as e:
        raise UserInputError(f"cannot reach the server at {base_url} ({type(e).__name__}: {e})") from None


def eval_rollout_config(args: argparse.Namespace):
    """The RolloutConfig of `torl eval`: the greedy defaults, or --rollout-from's section with the evaluation's
    temperature; then the short options; then the rollout.KEY=VALUE overrides (the precedence in --help)."""
    if not args.rollout_from:
        return build_rollout_config(eval_rollout(), args.overrides, flags=rollout_options(args))
    section, where, lines = read_rollout_section(args.rollout_from)
    return build_rollout_config(section, args.overrides, flags=rollout_options(args), where=where, lines=lines)


def run_eval_command(args: argparse.Namespace) -> int:
    if args.list:
        width = max(map(len, BENCHMARKS))
        for name, spec in BENCHMARKS.items():
            print(f"{name:<{width}}  {spec.n_items:>5}  {spec.description}")
        return 0
    if args.compare or args.reference:
        print(compare_runs(args.compare or [], args.reference), end="")
        return 0

    model = check_model(args.backend, args.model)
    tokenizer = check_tokenizer(args.backend, model, args.tokenizer)
    engine_args = parse_engine_args(args.engine_arg)
    if not args.out:
        raise UserInputError("--out DIR is required to evaluate")
    cfg = EvalConfig(
        benchmarks=[b.strip() for b in args.benchmarks.split(",") if b.strip()],
        mode=args.mode,
        template=args.template,
        rollout=eval_rollout_config(args),
        n=args.n,
        batch_size=args.batch_size,
        limit=args.limit,
        columns=parse_columns(args.columns),
        seed=args.seed,
    )
    # bad names, files and settings fail here, before the model loads
    resolve_benchmarks(cfg.benchmarks, cfg.columns)
    get_template(cfg.template)
    if args.backend == "openai":
        check_server(args.base_url)
    run_info = {"model": model, "backend": args.backend, "sandbox": args.sandbox}
    if args.rollout_from:
        run_info["rollout_from"] = str(Path(args.rollout_from).resolve())
    check_resumable(args.out, run_record(cfg, run_info))
    if tokenizer is not None:
        engine_args["tokenizer"] = tokenizer
    if args.backend == "openai":
        engine_args.update(base_url=args.base_url, api_key=args.api_key or os.environ.get("OPENAI_API_KEY"))
    return _evaluate(args, cfg, model, engine_args, run_info)


def _evaluate(args: argparse.Namespace, cfg, model: str, engine_args: dict, run_info: dict) -> int:
    try:
        backend = make_backend(args.backend, model, **engine_args)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        raise UserInputError(f"--engine-arg: the {args.backend} backend does not take it ({e})") from None
    sandbox = make_sandbox(args.sandbox) if cfg.rollout.max_tool_calls > 0 else None
    try:
        results = evaluate(
            cfg,
            backend=backend,
            sandbox=sandbox,
            out_dir=args.out,
            run_info=run_info,
            tokenizer=getattr(backend, "tokenizer", None),
            progress=not args.no_progress,
        )
    finally:
        if sandbox is not None:
            sandbox.close()
        close = getattr(backend, "close", None)
        if callable(close):
            close()
    print(results_markdown(results), end="")
    print(f"\nwrote {Path(args.out) / 'results.json'} and results.md")
    return 0
