"""Rollout benchmark: torl's engine vs the reference's lockstep rounds, same simulated model and sandbox, same run.

    python benchmarks/rollout_bench.py [--out runs/bench/rollout_bench.json] [--samples 128] [--slots 16]

The simulated engine serves at most `--slots` sequences at once (continuous batching, fewer slots than samples)
and spends `--token-ms` per generated token of a sequence; the simulated sandbox runs `--workers` calls at once,
each taking its scripted latency, or the whole timeout when it hangs. Every sample writes reasoning, one
```python block, stops at ```output, gets the observation, then finishes (C = 1); round 1 is 20–50% of its tokens.

- lockstep (the reference): all samples generate a round, everyone waits for the slowest; all tool calls run,
  everyone waits for the slowest; next round.
- torl: `torl.rollout.run_rollouts` — every sample advances on its own.

Targets: with tool latency = 20% of each sample's generation time, torl's wall time <= 1.10x its no-tool wall
time (same tokens, tools taking no time); with 5% of calls hanging until the timeout, torl >= 1.5x faster than
lockstep. The hang case depends on how long the timeout is next to the batch's generation time, so it is
measured for several ratios; the target applies at timeout = 0.5x the no-tool wall time.

Two CPU costs of the loop, old and new in the same run (`--parts burst cpu`):

- burst: event-loop CPU for a burst of N requests to `BatchingBackend` (the transformers backend's and blocking
  vLLM's queue), instant generation; old = the queue that rebuilt its pending list on every call (kept below).
- cpu: the loop's CPU per response token with the Qwen2.5 tokenizer, an instant engine (pre-tokenised TIR
  responses, C = 1) and an instant sandbox; old = transformers' `decode` (per-token type checks) and a second full
  decode of each response, new = the Rust tokenizer's decode and the response text joined from its decoded rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
from pathlib import Path

import torl.rollout.loop as rollout_engine
from torl.models import qwen25_tokenizer
from torl.rollout import RolloutConfig, extract_code, format_observation, run_rollouts
from torl.rollout.backends.base import Backend, Generation, GenerationRequest
from torl.rollout.backends.batching import BatchingBackend
from torl.rollout.backends.replay import ReplayBackend
from torl.rollout.observation import inserted_text
from torl.rollout.tokens import decode, encode_plain, encode_prompt
from torl.sandbox import ExecResult, Sandbox
from torl.train.tiny_model import build_tiny_tokenizer

PROMPT = "What is 1 + 1?"


class SimEngine(Backend):
    """Scripted outputs served by an engine with `slots` sequences in flight and a fixed per-token latency."""

    name = "sim"

    def __init__(self, tokenizer, scripts, *, slots: int, token_s: float) -> None:
        self.replay = ReplayBackend(tokenizer, scripts)
        self.tokenizer = tokenizer
        self.slots, self.token_s = slots, token_s
        self.gate: asyncio.Semaphore | None = None
        self.tokens = 0

    async def open_session(self) -> None:
        self.gate = asyncio.Semaphore(self.slots)

    async def agenerate(self, request: GenerationRequest) -> Generation:
        gen = self.replay.generate(request)
        async with self.gate:
            await asyncio.sleep(len(gen.token_ids) * self.token_s)
        self.tokens += len(gen.token_ids)
        return gen


class SimSandbox(Sandbox):
    """Sleeps the latency written in the code ("# sim 0.0123", or "# sim hang": until the timeout)."""

    def __init__(self, workers: int, *, scale: float = 1.0) -> None:
        self.max_concurrency = workers
        self.scale = scale  # 0: tools take no time (the no-tool baseline)

    async def arun(self, code, *, timeout=10.0, memory_mb=None, stdin=None) -> ExecResult:
        what = re.search(r"# sim (\S+)", code).group(1)
        if what == "hang":
            await asyncio.sleep(timeout * self.scale)
            return ExecResult("timeout", reason=f"wall-clock timeout after {timeout:g} s", duration_s=timeout)
        await asyncio.sleep(float(what) * self.scale)
        return ExecResult("ok", stdout="2\n", return_code=0, duration_s=float(what))

    def run(self, code, *, timeout=10.0, memory_mb=None, stdin=None) -> ExecResult:
        raise NotImplementedError("the simulated sandbox is async only")


def make_scripts(tokenizer, *, samples: int, token_s: float, tool_frac: float, hang_frac: float, seed: int):
    """Per sample: round 1 = filler + a code block naming its tool latency; round 2 = filler + the answer."""
    rng = random.Random(seed)
    filler = encode_plain(tokenizer, " step")
    hang = set(rng.sample(range(samples), round(hang_frac * samples)))
    scripts, gen_s = [], []
    for i in range(samples):
        total = rng.randint(200, 600)
        first = int(total * rng.uniform(0.2, 0.5))
        latency = "hang" if i in hang else f"{tool_frac * total * token_s:.6f}"
        code = encode_plain(tokenizer, f"\n```python\n# sim {latency}\nprint(1 + 1)\n```\n```output")
        answer = encode_plain(tokenizer, "\nThe answer is \\boxed{2}.")
        scripts.append([filler * max(1, first - len(code)) + code,
                        filler * max(1, total - first - len(answer)) + answer])
        gen_s.append(total * token_s)
    return scripts, gen_s


async def lockstep(prompts, backend: Backend, sandbox: Sandbox, config: RolloutConfig) -> list[list[int]]:
    """The reference loop: C + 1 rounds, each a barrier for generation and then for the tool calls."""
    tok = backend.tokenizer
    await backend.open_session()
    gate = asyncio.Semaphore(sandbox.max_concurrency)
    states = [{"prompt": encode_prompt(tok, p), "ids": [], "done": False, "rounds": 0} for p in prompts]

    async def execute(code):
        async with gate:
            return await sandbox.arun(code, timeout=config.exec_timeout)

    for rnd in range(config.max_tool_calls + 1):
        live = [(i, s) for i, s in enumerate(states) if not s["done"]]
        stop = (config.stop,) if rnd < config.max_tool_calls else ()
        gens = await asyncio.gather(*(backend.agenerate(GenerationRequest(
            s["prompt"] + s["ids"], config.max_response_tokens - len(s["ids"]), stop, sample_index=i,
            round_index=s["rounds"])) for i, s in live))
        calls = []
        for (_, s), gen in zip(live, gens, strict=True):
            s["ids"] += gen.token_ids
            s["rounds"] += 1
            text = decode(tok, gen.token_ids)
            code = extract_code(text) if gen.finish_reason == "stop" else None
            s["done"] = gen.finish_reason != "stop"
            if code is not None:
                calls.append((s, text, code))
        results = await asyncio.gather(*(execute(code) for _, _, code in calls))
        for (s, text, _), result in zip(calls, results, strict=True):
            s["ids"] += encode_plain(tok, inserted_text(text, format_observation(result), stop=config.stop))
    return [s["ids"] for s in states]


def measure(tokenizer, scripts, args, *, tool_scale: float, timeout: float, engine: str) -> dict:
    backend = SimEngine(tokenizer, scripts, slots=args.slots, token_s=args.token_ms / 1e3)
    sandbox = SimSandbox(args.workers, scale=tool_scale)
    config = RolloutConfig(max_tool_calls=1, max_response_tokens=4096, exec_timeout=timeout, tool_grace_s=60)
    prompts = [PROMPT] * len(scripts)
    start = time.perf_counter()
    if engine == "torl":
        results = run_rollouts(prompts, backend=backend, sandbox=sandbox, config=config)
        ids = [r.completion_ids for r in results]
    else:
        ids = asyncio.run(lockstep(prompts, backend, sandbox, config))
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 4), "tokens": sum(len(x) for x in ids), "model_tokens": backend.tokens}


def run(args) -> dict:
    out: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
                 "params": vars(args).copy(), "scenarios": []}
    if "burst" in args.parts:
        out["burst"] = run_burst(args.burst_sizes)
    if "cpu" in args.parts:
        out["loop_cpu"] = run_cpu(args.cpu_samples, args.seed)
    if "walls" in args.parts:
        run_walls(args, out)
    return out


def run_walls(args, out: dict) -> None:
    tokenizer = build_tiny_tokenizer(seed=0)
    token_s = args.token_ms / 1e3
    # A: every tool call takes 20% of its sample's generation time
    scripts, gen_s = make_scripts(tokenizer, samples=args.samples, token_s=token_s, tool_frac=0.2, hang_frac=0,
                                  seed=args.seed)
    row = {"name": "tool latency = 20% of generation", "mean_sample_gen_s": round(sum(gen_s) / len(gen_s), 4)}
    for engine in ("torl", "lockstep"):
        row[f"{engine}_no_tool"] = measure(tokenizer, scripts, args, tool_scale=0, timeout=10, engine=engine)
        row[engine] = measure(tokenizer, scripts, args, tool_scale=1, timeout=10, engine=engine)
    row["torl_vs_no_tool"] = round(row["torl"]["wall_s"] / row["torl_no_tool"]["wall_s"], 3)
    row["lockstep_vs_torl"] = round(row["lockstep"]["wall_s"] / row["torl"]["wall_s"], 3)
    row["target"] = "torl_vs_no_tool <= 1.10"
    row["met"] = row["torl_vs_no_tool"] <= 1.10
    out["scenarios"].append(row)
    no_tool_wall = row["torl_no_tool"]["wall_s"]
    # B: 5% of calls hang until the timeout (others 20%), for timeouts of several sizes next to the batch
    scripts, _ = make_scripts(tokenizer, samples=args.samples, token_s=token_s, tool_frac=0.2, hang_frac=0.05,
                              seed=args.seed)
    for frac in args.timeout_fracs:
        timeout = frac * no_tool_wall
        row = {"name": f"5% hang, timeout = {frac:g} x no-tool wall", "timeout_s": round(timeout, 4)}
        for engine in ("torl", "lockstep"):
            row[engine] = measure(tokenizer, scripts, args, tool_scale=1, timeout=timeout, engine=engine)
        row["lockstep_vs_torl"] = round(row["lockstep"]["wall_s"] / row["torl"]["wall_s"], 3)
        if frac == 0.5:
            row["target"] = "lockstep_vs_torl >= 1.5"
            row["met"] = row["lockstep_vs_torl"] >= 1.5
        out["scenarios"].append(row)


# ---- burst: BatchingBackend's queue, old vs new ------------------------------------------------------------------
class EchoBatching(BatchingBackend):
    """torl's queue; generation is instant (one EOS token per request)."""

    def generate_batch(self, requests):
        return [Generation([0], [0.0], "eos") for _ in requests]


class QuadraticBatching(EchoBatching):
    """The old queue (the baseline): every call rebuilt the whole pending list, O(N^2) for a burst of N."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._pending = []

    async def agenerate(self, request: GenerationRequest) -> Generation:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending = [(r, f) for r, f in self._pending if f.get_loop() is loop and not f.done()]
        self._pending.append((request, future))
        if self._drainer is None or self._drainer.done() or self._drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            start, seen = loop.time(), -1
            while (len(self._pending) < self.max_batch_size and len(self._pending) != seen
                   and loop.time() - start < self.max_wait_s):
                seen = len(self._pending)
                await asyncio.sleep(self.batch_wait_s)
            batch = [(r, f) for r, f in self._pending[: self.max_batch_size] if not f.done()]
            del self._pending[: self.max_batch_size]
            if batch:
                outputs = await asyncio.to_thread(self.generate_batch, [r for r, _ in batch])
                for (_, f), out in zip(batch, outputs, strict=True):
                    f.set_result(out)


def burst_cpu_s(cls, n: int) -> float:
    """CPU seconds for n requests arriving at once (the vLLM blocking default: batches of up to 1,024)."""
    backend = cls(max_batch_size=1024, batch_wait_s=0.0)

    async def go():
        return await asyncio.gather(*(backend.agenerate(GenerationRequest([1], 1, sample_index=i)) for i in range(n)))

    start = time.process_time()
    out = asyncio.run(go())
    assert len(out) == n
    return time.process_time() - start


def run_burst(sizes) -> list[dict]:
    rows = []
    for n in sizes:
        old, new = burst_cpu_s(QuadraticBatching, n), burst_cpu_s(EchoBatching, n)
        rows.append({"requests": n, "old_cpu_s": round(old, 4), "new_cpu_s": round(new, 4),
                     "speedup": round(old / new, 1)})
    return rows


# ---- cpu: the loop's CPU per token, old vs new tokenizer work ----------------------------------------------------
class Pretokenized(Backend):
    """An instant engine: round r of sample i is scripts[i][r] = (ids, finish_reason, stop_text)."""

    name = "pretokenized"

    def __init__(self, tokenizer, scripts) -> None:
        self.tokenizer, self.scripts = tokenizer, scripts

    async def agenerate(self, request: GenerationRequest) -> Generation:
        ids, finish, stop = self.scripts[request.sample_index][request.round_index]
        return Generation(list(ids), [-0.5] * len(ids), finish, stop)


def tir_scripts(tok, samples: int, seed: int):
    """TIR responses of 300-3,000 tokens: reasoning, one python block stopped at ```output, then the answer + EOS."""
    rng = random.Random(seed)
    prose = encode_plain(tok, "We need the sum of the roots, so by Vieta's formulas $x_1 + x_2 = -b/a$; let us "
                              "check it numerically. 数学的な確認 ∑ x² ≈ 3.14159… ")
    code = encode_plain(tok, "\n```python\n# sim 0\nimport sympy as sp\nx = sp.symbols('x')\n"
                             "print(sp.solve(x**2 - 5*x + 6, x))\n```\n```output")
    answer = encode_plain(tok, "\nThe roots are 2 and 3, so the answer is \\boxed{5}.")
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    scripts = []
    for _ in range(samples):
        total = rng.randint(300, 3000)
        first = int(total * rng.uniform(0.2, 0.5))
        r1 = (prose * (first // len(prose) + 1))[: max(1, first - len(code))] + code
        r2 = (prose * (total // len(prose) + 1))[: max(1, total - first - len(answer))] + answer + [eos]
        scripts.append([(r1, "stop", "```output"), (r2, "eos", None)])
    return scripts


def old_decode(tokenizer, ids, *, skip_special_tokens: bool = True) -> str:
    """The old `torl.rollout.tokens.decode` (the baseline): transformers' decode."""
    return tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)


def loop_cpu(tok, scripts, *, old: bool) -> dict:
    """CPU of run_rollouts per response token; old: the loop as it was (old decode, second full decode)."""
    saved = rollout_engine.decode, rollout_engine.joined_text
    if old:
        rollout_engine.decode = old_decode
        rollout_engine.joined_text = lambda t, pieces, ids: old_decode(t, ids)
    try:
        config = RolloutConfig(max_tool_calls=1, max_response_tokens=4096, exec_timeout=10)
        start = time.process_time()
        results = run_rollouts([PROMPT] * len(scripts), backend=Pretokenized(tok, scripts),
                               sandbox=SimSandbox(64, scale=0), config=config)
        cpu = time.process_time() - start
    finally:
        rollout_engine.decode, rollout_engine.joined_text = saved
    tokens = sum(len(r.completion_ids) for r in results)
    return {"cpu_s": round(cpu, 4), "tokens": tokens, "us_per_token": round(cpu / tokens * 1e6, 3),
            "texts": [r.text for r in results]}


def run_cpu(samples: int, seed: int, repeats: int = 3) -> dict:
    tok = qwen25_tokenizer()
    scripts = tir_scripts(tok, samples, seed)
    runs = {"old": [], "new": []}
    for _ in range(repeats):  # alternated; the fastest of each
        for kind in runs:
            runs[kind].append(loop_cpu(tok, scripts, old=kind == "old"))
    old, new = (min(runs[k], key=lambda r: r["cpu_s"]) for k in ("old", "new"))
    assert old.pop("texts") == new.pop("texts"), "the new loop must produce the same texts"
    return {"samples": samples, "old": old, "new": new,
            "speedup": round(old["us_per_token"] / new["us_per_token"], 2)}


def print_table(out: dict) -> None:
    if "burst" in out:
        print("\n| burst of requests (BatchingBackend) | old CPU s | new CPU s | speed-up |\n|---|---|---|---|")
        for r in out["burst"]:
            print(f"| {r['requests']:,} | {r['old_cpu_s']:.3f} | {r['new_cpu_s']:.3f} | {r['speedup']:.0f}x |")
    if "loop_cpu" in out:
        c = out["loop_cpu"]
        print(f"\nloop CPU per response token (Qwen2.5 tokenizer, {c['samples']} TIR samples, "
              f"{c['new']['tokens']:,} tokens, instant engine and sandbox): old {c['old']['us_per_token']:.2f} us, "
              f"new {c['new']['us_per_token']:.2f} us ({c['speedup']:.2f}x)")
    if not out["scenarios"]:
        return
    p = out["params"]
    print(f"\n{p['samples']} samples, {p['slots']} engine slots, {p['token_ms']} ms/token, "
          f"{p['workers']} sandbox workers, C = 1\n")
    print("| scenario | torl s | lockstep s | lockstep / torl | torl / torl no-tool | target |")
    print("|---|---|---|---|---|---|")
    for s in out["scenarios"]:
        vs = s.get("torl_vs_no_tool", "")
        target = f"{s['target']}: {'met' if s['met'] else 'NOT met'}" if "target" in s else ""
        print(f"| {s['name']} | {s['torl']['wall_s']:.3f} | {s['lockstep']['wall_s']:.3f} | "
              f"{s['lockstep_vs_torl']:.2f}x | {vs if vs == '' else f'{vs:.3f}x'} | {target} |")
    a = out["scenarios"][0]
    print(f"\nno-tool walls: torl {a['torl_no_tool']['wall_s']:.3f} s, lockstep {a['lockstep_no_tool']['wall_s']:.3f} s"
          f"; tokens per run: {a['torl']['tokens']} (torl) / {a['lockstep']['tokens']} (lockstep)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--slots", type=int, default=16, help="sequences the simulated engine runs at once")
    ap.add_argument("--token-ms", type=float, default=0.5, help="ms per generated token of one sequence")
    ap.add_argument("--workers", type=int, default=16, help="sandbox calls at once")
    ap.add_argument("--timeout-fracs", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench/rollout_bench.json")
    ap.add_argument("--parts", nargs="+", choices=["walls", "burst", "cpu"], default=["walls", "burst", "cpu"])
    ap.add_argument("--burst-sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    ap.add_argument("--cpu-samples", type=int, default=256, help="TIR samples for the CPU-per-token row")
    a = ap.parse_args()
    result = run(a)
    print_table(result)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {a.out}")
