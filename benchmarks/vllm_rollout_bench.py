"""Rollout wall time with one tool call (C = 1) over no tool (C = 0), on the real vLLM engine, for the vllm
backend's continuous batching and for its old blocking batches, in one run.

    .venv-engines/bin/python benchmarks/vllm_rollout_bench.py [--out runs/bench/vllm_rollout_bench.json]
        [--samples 64] [--max-response-tokens 320] [--tool-fractions 0,0.05,0.2] [--repeats 3]

vLLM's CPU build serves a tiny TIR model built here (head size 32, fitted briefly so that it writes a ```python
block, stops at ```output and answers after the observation). The same prompts, per-sample seeds, sampling and
token budget run with C = 0 and C = 1; with C = 1 every snippet runs in a real LocalSandbox, after sleeping
`fraction x T0 x u` seconds (T0: the faster of two continuous C = 0 runs, u in [0.5, 1.5) drawn from the code's hash, so
both modes get the same delay for the same snippet): tool latency as a fraction of the generation time of the
longest sample. Per-sample seeds make both modes sample the same tokens.

- continuous: `VLLMBackend(continuous=True)`, one engine request per round; a sample back from its tool call
  joins the running batch at the next engine step;
- blocking: `VLLMBackend(continuous=False)`, rounds grouped into blocking `LLM.generate` batches (torl's old
  vllm backend): a sample back from its tool call waits for the batch in progress to finish.

Ratio = median over repeats of wall(C=1) / wall(C=0), each mode against its own C = 0. Target: continuous
<= 1.10x at a realistic tool latency (the paper's blocking rollout: 2.0x, 237 s vs 118 s per step).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from torl.rollout.backends.vllm_backend import set_cpu_env_defaults
from torl.sandbox import ExecResult, Sandbox

PROBLEMS = [f"What is {a} {op} {b}?" for a, op, b in
            [(18, "*", 73), (64, "+", 98), (49, "*", 27), (50, "-", 56), (58, "-", 35), (14, "*", 41),
             (7, "+", 86), (93, "-", 12)]]


class DelayedSandbox(Sandbox):
    """A real sandbox whose snippets first sleep a set time (in the sandbox: the call takes that long)."""

    def __init__(self, inner: Sandbox, mean_s: float) -> None:
        self.inner = inner
        self.mean_s = mean_s
        self.max_concurrency = inner.max_concurrency
        self.calls = 0
        self.slept_s = 0.0

    def delay(self, code: str) -> float:
        u = int.from_bytes(hashlib.blake2b(code.encode(), digest_size=4).digest(), "little") / 2**32
        return self.mean_s * (0.5 + u)

    def _wrap(self, code: str) -> str:
        d = self.delay(code)
        self.calls += 1
        self.slept_s += d
        return f"import time as _t; _t.sleep({d:.4f})\n{code}" if d > 0 else code

    def run(self, code: str, **kw) -> ExecResult:
        return self.inner.run(self._wrap(code), **kw)

    async def arun(self, code: str, **kw) -> ExecResult:
        return await self.inner.arun(self._wrap(code), **kw)


FILLER = ["Let me compute it with Python.", "I will use code to calculate this.", "We can evaluate the expression.",
          "Let's write a short program."]


def long_tail_examples(n: int, *, seed: int, p_more: float = 0.8, most: int = 40) -> list[tuple[str, str]]:
    """(prompt, response) pairs of TIR arithmetic whose reasoning before the code and after the output runs for
    a geometric number of sentences (continue with probability `p_more`): a model fitted to them writes
    responses of very uneven length, as RL policies do (the longest of a batch is several times the mean)."""
    import random

    from torl.rollout import build_prompt

    rng = random.Random(seed)
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}

    def reasoning() -> str:
        k = 1
        while k < most and rng.random() < p_more:
            k += 1
        return " ".join(rng.choice(FILLER) for _ in range(k))

    out = []
    for _ in range(n):
        a, b, op = rng.randint(1, 99), rng.randint(1, 99), rng.choice(sorted(ops))
        x = ops[op](a, b)
        response = (f"{reasoning()}\n```python\nprint({a} {op} {b})\n```\n```output\n{x}\n```\n{reasoning()} "
                    f"The answer is \\boxed{{{x}}}.")
        out.append((build_prompt(f"What is {a} {op} {b}?"), response))
    return out


def build_long_tail_model(out: str | Path, *, steps: int = 300, batch_size: int = 16, seed: int = 0) -> Path:
    """torl's tiny model (head size 32) fitted to `long_tail_examples` (loss on the responses)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from torl.train.tiny_model import build_tiny_model, fit_responses

    build_tiny_model(out, seed=seed, num_heads=2)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    fit_responses(model, tok, long_tail_examples(1024, seed=seed + 1), seed=seed, steps=steps,
                  batch_size=batch_size)
    model.save_pretrained(out)
    return Path(out)


def widen_model(src: str | Path, out: str | Path, *, layers: int, intermediate: int) -> Path:
    """The same model made slower to run: `layers` layers (the new ones add nothing: zero attention output and
    MLP down projections) and MLPs of width `intermediate` (zero-padded). Its logits are the source's (up to
    rounding), so it writes the same TIR transcripts; a step costs what a bigger model's would."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    config = model.config
    n = config.num_hidden_layers
    config.num_hidden_layers, config.intermediate_size = layers, intermediate
    if hasattr(config, "layer_types"):
        config.layer_types = [config.layer_types[0]] * layers
    torch.manual_seed(0)
    big = type(model)(config)
    src_state = model.state_dict()
    state = {}
    for name, value in big.state_dict().items():
        layer = int(name.split(".")[2]) if name.startswith("model.layers.") else None
        if layer is not None and layer >= n:  # a new layer: contributes nothing to the residual stream
            zero = name.endswith(("o_proj.weight", "o_proj.bias", "down_proj.weight"))
            state[name] = torch.zeros_like(value) if zero else value
            continue
        old = src_state[name]
        new = torch.zeros_like(value)
        new[tuple(slice(0, d) for d in old.shape)] = old
        state[name] = new
    big.load_state_dict(state)
    big.generation_config = model.generation_config
    big.save_pretrained(out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return Path(out)


def rollout(backend, sandbox, prompts, seeds, c: int, max_tokens: int) -> tuple[float, dict]:
    from torl.rollout import RolloutConfig, run_rollouts

    cfg = RolloutConfig(max_tool_calls=c, max_response_tokens=max_tokens, temperature=1.0, exec_timeout=30.0)
    start = time.perf_counter()
    results = run_rollouts(prompts, backend=backend, sandbox=sandbox if c else None, config=cfg, seeds=seeds)
    wall = time.perf_counter() - start
    model_tokens = sum(sum(r.mask) for r in results)
    return wall, {"model_tokens": model_tokens, "executions": sum(r.num_executions for r in results),
                  "eos": sum(r.finish_reason == "eos" for r in results)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bench/vllm_rollout_bench.json")
    ap.add_argument("--model", default=None,
                    help="model directory; built there (or in a temporary one) when it does not exist")
    ap.add_argument("--train-steps", type=int, default=300, help="built model: fitting steps")
    ap.add_argument("--layers", type=int, default=12, help="built model: layers (the 2 fitted + inert ones)")
    ap.add_argument("--intermediate", type=int, default=2048, help="built model: MLP width (zero-padded)")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--max-response-tokens", type=int, default=320)
    ap.add_argument("--tool-fractions", default="0,0.05,0.2",
                    help="tool latency per call as a fraction of the C=0 wall time (comma-separated)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sandbox-workers", type=int, default=32,
                    help="LocalSandbox workers (enough that sleeping snippets do not queue)")
    args = ap.parse_args()
    fractions = [float(x) for x in args.tool_fractions.split(",")]

    set_cpu_env_defaults()
    from torl.rollout import build_prompt
    from torl.rollout.backends.vllm_backend import VLLMBackend
    from torl.rollout.seeds import sample_seeds
    from torl.sandbox import LocalSandbox

    with tempfile.TemporaryDirectory(prefix="torl-vllm-bench-") as tmp:
        model = args.model
        if model is None or not Path(model).exists():
            print("building the long-tail TIR model ...", file=sys.stderr)
            small = build_long_tail_model(Path(tmp) / "small", steps=args.train_steps)
            model = str(widen_model(small, model or Path(tmp) / "model", layers=args.layers,
                                    intermediate=args.intermediate))
        continuous = VLLMBackend(model, dtype="float32", seed=0)
        blocking = VLLMBackend(continuous.llm, tokenizer=continuous.tokenizer, continuous=False)
        backends = {"continuous": continuous, "blocking": blocking}
        prompts = [build_prompt(PROBLEMS[i % len(PROBLEMS)]) for i in range(args.samples)]
        seeds = sample_seeds(0, args.samples)
        inner = LocalSandbox(pool_size=args.sandbox_workers)
        rollout(continuous, None, prompts[:4], seeds[:4], 0, 32)  # warm-up
        # T0 calibrates the tool latency: the faster of two C = 0 runs (the other's load only slows a run down)
        t0 = min(rollout(continuous, None, prompts, seeds, 0, args.max_response_tokens)[0] for _ in range(2))
        runs: dict[str, dict] = {m: {"c0": [], **{f"c1@{f:g}": [] for f in fractions}} for m in backends}
        info: dict[str, dict] = {}
        try:
            for rep in range(args.repeats):
                for mode, backend in backends.items():
                    wall, stats = rollout(backend, None, prompts, seeds, 0, args.max_response_tokens)
                    runs[mode]["c0"].append(wall)
                    info[f"{mode}/c0"] = stats
                    for f in fractions[rep % len(fractions):] + fractions[: rep % len(fractions)]:  # no order bias
                        sandbox = DelayedSandbox(inner, f * t0)
                        wall, stats = rollout(backend, sandbox, prompts, seeds, 1, args.max_response_tokens)
                        runs[mode][f"c1@{f:g}"].append(wall)
                        info[f"{mode}/c1@{f:g}"] = {**stats, "tool_s_mean": sandbox.slept_s / max(1, sandbox.calls)}
                    print(f"repeat {rep + 1}/{args.repeats} {mode}: " + ", ".join(
                        f"{k} {v[-1]:.2f}s" for k, v in runs[mode].items()), file=sys.stderr)
        finally:
            inner.close()
            blocking.close()
            continuous.close()

    rows = []
    for f in fractions:
        row = {"tool_fraction": f, "tool_latency_s": f * t0}
        for mode in backends:
            c0 = runs[mode]["c0"]
            c1 = runs[mode][f"c1@{f:g}"]
            row[mode] = {"c0_s": statistics.median(c0), "c1_s": statistics.median(c1),
                         "ratio": statistics.median(b / a for a, b in zip(c0, c1, strict=True))}
        rows.append(row)
    print(f"\nvLLM {_vllm_version()} (CPU build), {args.samples} samples, <= {args.max_response_tokens} tokens, "
          f"median of {args.repeats}; tool latency = fraction x T0 (T0 = {t0:.2f} s)\n")
    print(f"{'tool fraction':>13} {'latency s':>9} | {'continuous C0':>13} {'C1':>7} {'C1/C0':>6} | "
          f"{'blocking C0':>11} {'C1':>7} {'C1/C0':>6}")
    for r in rows:
        c, b = r["continuous"], r["blocking"]
        print(f"{r['tool_fraction']:>13g} {r['tool_latency_s']:>9.3f} | {c['c0_s']:>12.2f}s {c['c1_s']:>6.2f}s "
              f"{c['ratio']:>5.2f}x | {b['c0_s']:>10.2f}s {b['c1_s']:>6.2f}s {b['ratio']:>5.2f}x")
    target = next((r for r in rows if r["tool_fraction"] == 0.05), rows[-1])
    ok = target["continuous"]["ratio"] <= 1.10
    print(f"\ntarget: continuous C1/C0 <= 1.10x at tool fraction {target['tool_fraction']:g}: "
          f"{target['continuous']['ratio']:.2f}x {'met' if ok else 'NOT met'} (blocking: "
          f"{target['blocking']['ratio']:.2f}x; the paper: 2.0x)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "args": vars(args), "vllm": _vllm_version(), "t0_s": t0, "rows": rows, "runs": runs, "stats": info,
        "engine": {"steps": continuous.engine_stats.steps, "requests": continuous.engine_stats.requests,
                   "joined_running_batch": continuous.engine_stats.joined,
                   "mean_running": continuous.engine_stats.mean_running},
        "blocking_batches": {"batches": blocking.stats.batches, "mean_size": blocking.stats.mean_batch_size},
        "target_met": ok, "cpu_count": os.cpu_count(),
    }, indent=2))
    print(f"wrote {out}")
    return 0


def _vllm_version() -> str:
    import vllm

    return vllm.__version__


if __name__ == "__main__":
    sys.exit(main())
