"""`torl rollout`: tool-integrated samples for a problem file, one JSON line per sample."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torl.errors import UserInputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rollout", help="generate tool-integrated responses for a problem file (JSONL out)",
        description="Generate with the TORL loop: stop at ```output, run the code in the sandbox, insert the "
                    "observation, continue. Writes one JSON line per sample.")
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
    p.add_argument("--max-tool-calls", type=int, default=1, help="executions per response, C (default 1)")
    p.add_argument("--tool-call-budget", default="executions", choices=["executions", "rounds"],
                   help="what C counts: executions (default) or rounds that may stop at ```output (the reference's)")
    p.add_argument("--max-response-tokens", type=int, default=3072)
    p.add_argument("--temperature", type=float, default=1.0, help="0 for greedy (default 1.0)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--observation-style", default="torl", choices=["torl", "reference"])
    p.add_argument("--exec-timeout", type=float, default=10.0, help="seconds per execution (default 10)")
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
    from torl.data.readers import read_problems
    from torl.rollout import RolloutConfig, get_template, make_backend
    from torl.rollout.engine import run_rollouts
    from torl.rollout.seeds import derive_seed

    if args.out is None and not args.show:
        raise UserInputError("give --out FILE (or --show to only print)")
    if args.n < 1:
        raise UserInputError(f"-n must be >= 1, got {args.n}")
    try:
        config = RolloutConfig(max_tool_calls=args.max_tool_calls, tool_call_budget=args.tool_call_budget,
                               max_response_tokens=args.max_response_tokens,
                               temperature=args.temperature, top_p=args.top_p,
                               observation_style=args.observation_style, exec_timeout=args.exec_timeout)
    except ValueError as e:
        raise UserInputError(str(e)) from None
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
        from torl.models.qwen25 import resolve_tokenizer_path

        backend = make_backend("openai", args.model, base_url=args.base_url,
                               tokenizer=resolve_tokenizer_path(args.tokenizer) if args.tokenizer else None)
    tokenizer = backend.tokenizer
    jobs = [(p, k) for p in problems for k in range(args.n)]
    prompts = [template.render(p.problem, tokenizer) for p, _ in jobs]
    seeds = [derive_seed(args.seed, p.id, k) for p, k in jobs]

    sandbox = None
    if config.max_tool_calls > 0:
        from torl.sandbox import make_sandbox

        kwargs = {"pool_size": args.sandbox_workers} if args.sandbox == "local" and args.sandbox_workers else {}
        sandbox = make_sandbox(args.sandbox, **kwargs)

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

        from torl.rollout.transcript import render

        console = Console()
        for (problem, k), result in zip(jobs, results, strict=True):
            console.print(render(result, tokenizer, title=f"{problem.id} · sample {k} · gold {problem.answer}"))
    where = f" → {args.out}" if args.out else ""
    print(f"{len(results)} samples, {totals['executions']} executions, {totals['eos']} ended at EOS{where}",
          file=sys.stderr)
    return 0
