"""`torl rollout`: tool-integrated samples for a problem file, one JSON line per sample."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torl.data.readers import read_problems
from torl.errors import UserInputError
from torl.models.qwen25 import resolve_tokenizer_path
from torl.rollout import RolloutConfig, get_template, make_backend
from torl.rollout.config import BUDGETS, INTERPRETERS, build_rollout_config
from torl.rollout.loop import run_rollouts
from torl.rollout.observation import STYLES
from torl.rollout.seeds import derive_seed
from torl.rollout.transcript import render
from torl.sandbox import make_sandbox

# The short options: aliases of rollout.KEY=VALUE overrides. flag -> (RolloutConfig field, type, choices, help)
ROLLOUT_OPTIONS: dict[str, tuple[str, type, tuple | None, str]] = {
    "--max-tool-calls": ("max_tool_calls", int, None, "executions per response, C"),
    "--tool-call-budget": ("tool_call_budget", str, BUDGETS,
                           "what C counts: executions, or rounds that may stop at ```output (the reference's)"),
    "--max-response-tokens": ("max_response_tokens", int, None, "response cap, tool output included"),
    "--temperature": ("temperature", float, None, "0 = greedy"),
    "--top-p": ("top_p", float, None, "nucleus sampling"),
    "--observation-style": ("observation_style", str, STYLES,
                            "torl (truthful) or reference (the reference's, bit for bit)"),
    "--exec-timeout": ("exec_timeout", float, None, "seconds per execution"),
    "--interpreter": ("interpreter", str, INTERPRETERS,
                      "stateless (a fresh interpreter per block, the paper's) or session (one per sample)"),
}
OVERRIDES_HELP = ("any RolloutConfig field, as `torl train` takes it, e.g. rollout.obs_max_chars=512 "
                  "rollout.exec_memory_mb=2048 (written together, before or after the options)")


def add_rollout_options(parser, *, defaults: dict | None = None) -> None:
    """The short rollout options (ROLLOUT_OPTIONS) and the positional rollout.KEY=VALUE overrides. A short option
    not given is None (the field keeps its base value) unless `defaults` (field -> value) names it."""
    defaults = defaults or {}
    for flag, (name, tp, choices, text) in ROLLOUT_OPTIONS.items():
        default = defaults.get(name)
        shown = default if name in defaults else getattr(RolloutConfig, name)
        parser.add_argument(flag, type=tp, choices=choices, default=default,
                            help=f"{text}; alias of rollout.{name} (default: {shown})")
    parser.add_argument("overrides", nargs="*", metavar="rollout.KEY=VALUE", help=OVERRIDES_HELP)


def rollout_options(args: argparse.Namespace) -> dict:
    """The RolloutConfig fields that the short options set (field -> value)."""
    names = (name for name, *_ in ROLLOUT_OPTIONS.values())
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rollout", help="generate tool-integrated responses for a problem file (JSONL out)",
        description="Generate with the TORL loop: stop at ```output, run the code in the sandbox, insert the "
                    "observation, continue. Writes one JSON line per sample. Rollout settings, last wins: "
                    "RolloutConfig's defaults <- the short options (--max-tool-calls, --temperature, ...) <- "
                    "rollout.KEY=VALUE overrides.")
    p.add_argument("--model", required=True, help="model directory (transformers/vllm) or served model name (openai)")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm", "openai"])
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="openai backend: server URL")
    p.add_argument("--tokenizer", default=None,
                   help="openai backend: tokenizer directory or qwen2.5 (default: --model)")
    p.add_argument("--input", required=True, help="problems (.jsonl or .parquet: id, problem, answer)")
    p.add_argument("--out", default=None, help="output JSONL (required unless --show)")
    p.add_argument("-n", type=int, default=1, help="samples per problem (default 1)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N problems")
    p.add_argument("--template", default="torl", help="prompt template name or file (default torl)")
    add_rollout_options(p)
    p.add_argument("--sandbox", default="local", help="'local' (default) or a Sandbox Fusion URL")
    p.add_argument("--sandbox-workers", type=int, default=None, help="local sandbox pool size")
    p.add_argument("--device", default=None, help="transformers backend: cpu, cuda, cuda:1 ...")
    p.add_argument("--batch-size", type=int, default=64, help="transformers: most sequences per generate call (vllm batches continuously, up to its max_num_seqs)")
    p.add_argument("--seed", type=int, default=0,
                   help="sample k of a problem is drawn from its own seed, derived from (seed, problem id, k): "
                        "the same seed gives the same samples whatever the batching (default 0)")
    p.add_argument("--ids", action="store_true", help="also write token ids, mask and logprobs")
    p.add_argument("--show", action="store_true", help="print each transcript, observations highlighted")
    p.set_defaults(func=_rollout)


def _rollout(args: argparse.Namespace) -> int:
    if args.out is None and not args.show:
        raise UserInputError("give --out FILE (or --show to only print)")
    if args.n < 1:
        raise UserInputError(f"-n must be >= 1, got {args.n}")
    config = build_rollout_config(None, args.overrides, flags=rollout_options(args))
    template = get_template(args.template)
    problems = read_problems(args.input)[: args.limit]
    if not problems:
        raise UserInputError(f"{args.input}: no problems")
    if args.backend in ("transformers", "vllm") and not Path(args.model).exists():
        raise UserInputError(f"--model {args.model}: no such directory")

    if args.backend == "transformers":
        backend = make_backend("transformers", args.model, device=args.device, max_batch_size=args.batch_size,
                               seed=args.seed)
    elif args.backend == "vllm":
        backend = make_backend("vllm", args.model, max_batch_size=args.batch_size, seed=args.seed)
    else:
        backend = make_backend("openai", args.model, base_url=args.base_url,
                               tokenizer=resolve_tokenizer_path(args.tokenizer) if args.tokenizer else None)
    tokenizer = backend.tokenizer
    jobs = [(p, k) for p in problems for k in range(args.n)]
    prompts = [template.render(p.problem, tokenizer) for p, _ in jobs]
    seeds = [derive_seed(args.seed, p.id, k) for p, k in jobs]

    sandbox = None
    if config.max_tool_calls > 0:
        sandbox = make_sandbox(args.sandbox, workers=args.sandbox_workers)

    out = open(args.out, "w", encoding="utf-8") if args.out else None  # noqa: SIM115 - closed below
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="rollout", unit="sample", dynamic_ncols=True, file=sys.stderr)
    totals = {"executions": 0, "eos": 0}

    def on_done(index: int, result) -> None:
        problem, k = jobs[index]
        totals["executions"] += result.num_executions
        totals["eos"] += result.finish_reason == "eos"
        if out is not None:
            row = {"problem_id": problem.id, "sample": k, "source": problem.source, "gold": problem.answer,
                   "seed": args.seed, "sample_seed": seeds[index], **result.to_dict(ids=args.ids)}
            row["tool_calls"] = [{"code": tc.code, "status": tc.result.status, "observation": tc.observation}
                                 for tc in result.tool_calls]
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
        bar.update(1)
        bar.set_postfix(executions=totals["executions"], refresh=False)

    try:
        results = run_rollouts(prompts, backend=backend, sandbox=sandbox, config=config, progress=on_done,
                               seeds=seeds)
    finally:
        bar.close()
        if out is not None:
            out.close()
        if sandbox is not None:
            sandbox.close()
        backend.close()
    if args.show:
        from rich.console import Console

        console = Console()
        for (problem, k), result in zip(jobs, results, strict=True):
            console.print(render(result, tokenizer, title=f"{problem.id} · sample {k} · gold {problem.answer}"))
    where = f" → {args.out}" if args.out else ""
    print(f"{len(results)} samples, {totals['executions']} executions, {totals['eos']} ended at EOS{where}",
          file=sys.stderr)
    return 0
