"""GPU check of the training path, no download: GRPO steps of a Qwen2.5-Math-1.5B-shaped model with random weights
and the real Qwen2.5 tokenizer, the real sandbox and grader, where each step's time goes, and proof that the
weights that generate are the weights being trained.

    bash benchmarks/gpu_check.sh                    # one H100/H200, transformers backend, < 8 minutes
    bash benchmarks/gpu_check.sh --engine vllm      # TRL's colocated vLLM engine (needs vLLM)
    bash benchmarks/gpu_check.sh --cpu-smoke        # the same code path on CPU, a 2-layer model, < 5 minutes

What runs: `torl.train.build_trainer` on configs/torl_1.5b.yaml (bf16 compute on fp32 master weights, gradient
checkpointing, AdamW, one optimizer update per step) at 16 prompts x 8 samples, generating with torl's
transformers backend (HF `generate` on the trainer's own model; the accelerator's image has no vLLM) or, with
`--engine vllm`, TRL's colocated vLLM engine (weights pushed into it every step).

Forced TIR shape. A random-weight model writes no code and never answers, so every response is forced into the
recipe's shape: round 1 samples `--round-tokens` tokens, then carries a fixed code block (run in the real
LocalSandbox, observation inserted); round 2 samples until the response budget is nearly spent and then carries
a final "\\boxed{...}" and EOS: the right answer on even samples, a wrong one on odd samples. Without that every
reward would be -1, every GRPO advantage 0, the gradient zero, and no step could show a missed weight sync.
Forced tokens have no engine log-probability (NaN) and are left out of the gap.

Weight sync proof (after each sync, i.e. when each rollout starts): a few engine parameters are compared with
the trainer's: exactly with the transformers backend (generation runs on the trainer's own parameter tensors:
the check asserts they are the same storage, so no copy can be stale) and in fp32; within bf16 rounding
(|engine - trainer| <= 2^-8 |trainer|) for a bf16 vLLM engine. From the second sync on, the engine's
parameters must also have changed since the previous sync (the update reached them). And, so that the
log-probability gap could show a skipped sync: after each update the step's first micro-batch is scored again
with the new weights; the mean |change| of its log-probabilities is the gap a skipped sync would have shown
(`stale_gap`), and it must exceed the gap threshold at least 10x (hence the learning rate: `--lr`).

Times per step (GPU work synchronised at each boundary): generation (rollout wall time, tool calls overlapped),
tools (sandbox time summed over calls), grading, update (forward + backward of every micro-batch + optimizer
step), sync (weight push into the engine; 0 with shared weights), other (the rest: TRL's batching and padding,
reward bookkeeping, torl's callbacks). MFU of the update: 6 N FLOP per token over the update time, against the
card's dense bf16 peak, on real tokens (prompt + response) and on padded tokens (what the micro-batches hold).

Each phase's JSON is written to the output folder (`--out`, default $OUT/gpu_check or runs/gpu_check/out) as it
finishes: env.json, build.json, setup.json, step_1.json..., gpu_check.json. The last line printed starts with
`gpu_check:`. Exit status 1 when a check fails (parameters differ, gap over the threshold, stale gap under 10x).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# dense bf16 TFLOP/s by the vendors' datasheets; the H100's depends on the part (checked before "H100")
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200 NVL", 835.0), ("H100", 989.0),
                    ("H200", 989.0), ("H800", 989.0), ("H20", 148.0), ("A100", 312.0), ("A800", 312.0),
                    ("L40S", 362.0)]
H100_PCIE_SMS = 114  # the SXM part has 132
QWEN25_MATH_15B = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=4096,
                       rope_theta=10000.0, tie_word_embeddings=True)
# the CPU smoke: the same family and vocabulary (the real tokenizer), two small layers
SMOKE_SHAPE = dict(QWEN25_MATH_15B, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=1, num_key_value_heads=1)  # head_dim 64: vLLM's CPU attention needs it
CODE = "```python\ntotal = sum(i * i for i in range(200000))\nprint(total)\n```\n```output"
PROBLEM = re.compile(r"What is (\d+) \* (\d+)\?")
# engine/trainer gap above which the run is not on-policy. bf16: ~4x what bf16 rounding alone gave on a CPU proxy
# (4 of the 28 layers at full width, bf16 autocast: 3.4e-3 to 4.8e-3), room for the other 24 layers
GAP_THRESHOLD = {"bf16": 2e-2, "fp32": 1e-3}
STALE_FACTOR = 10.0


# ------------------------------------------------------------------------------------------------ output


class Phases:
    """Writes each phase's JSON into `out` as soon as it is known (atomically), so a run killed at its time
    limit still leaves what it measured."""

    def __init__(self, out: Path) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.json"):
            old.unlink()

    def write(self, name: str, data: dict) -> None:
        tmp = self.out / f".{name}.json.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(self.out / f"{name}.json")


# ------------------------------------------------------------------------------------------------ model, data


def gpu_info() -> dict:
    """The card and its dense bf16 peak (None on CPU or an unknown card)."""
    import torch

    if not torch.cuda.is_available():
        return {"gpu": None, "peak_bf16_tflops": None}
    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "sms": props.multi_processor_count, "memory_gib": props.total_memory / 2**30,
            "peak_bf16_tflops": peak_bf16_tflops(props.name, props.multi_processor_count)}


def peak_bf16_tflops(name: str, sms: int) -> float | None:
    """Dense bf16 peak of a card from its name, and for an H100 its SM count (PCIe 114, SXM 132)."""
    peak = next((p for key, p in PEAK_BF16_TFLOPS if key in name), None)
    if "H100" in name and "NVL" not in name and sms == H100_PCIE_SMS:
        peak = 756.0  # a PCIe part whose name does not say so
    return peak


def build_model(out: Path, shape: dict, device: str) -> Path:
    """The model directory: Qwen2.5-Math-1.5B's architecture at `shape`, random bf16 weights (seed 0), the
    Qwen2.5 tokenizer built offline from its BPE ranks (torl.models.qwen25)."""
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from torl.models.qwen25 import qwen25_tokenizer

    tok = qwen25_tokenizer()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(**shape, bos_token_id=None, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=eos)
    tmp = out.with_name(out.name + ".building")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def write_problems(path: Path, n: int) -> Path:
    from torl.data.schema import Problem
    from torl.data.schema import write_problems as write

    write([Problem(id=f"g{i}", problem=f"What is {17 + i} * {23 + 2 * i}?", answer=str((17 + i) * (23 + 2 * i)),
                   source="gpu_check") for i in range(n)], path)
    return path


def forced_tir_backend(inner, tokenizer, round_tokens: int):
    """Wrap a torl Backend into the forced TIR shape (module docstring): round 0 samples `round_tokens` tokens
    then carries CODE (a "```output" stop); round 1 samples, then ends with a boxed answer, right on even
    samples and wrong on odd ones, and EOS."""
    import dataclasses

    from torl.rollout.backends.base import Backend, Generation

    code_ids = tokenizer.encode("\n" + CODE, add_special_tokens=False)
    eos = tokenizer.eos_token_id

    class ForcedTIR(Backend):
        name = "forced-tir"

        def __init__(self):
            self.tokenizer = tokenizer

        async def open_session(self):
            await inner.open_session()

        async def close_session(self):
            await inner.close_session()

        async def agenerate(self, request):
            if request.round_index == 0:
                forced = code_ids
                stop = ("stop", "```output")
            else:
                match = PROBLEM.search(tokenizer.decode(request.prompt_ids))
                answer = int(match[1]) * int(match[2]) if match else 0
                answer += request.sample_index % 2  # odd samples answer wrong
                forced = tokenizer.encode(f"\nThe answer is \\boxed{{{answer}}}.", add_special_tokens=False)
                forced = forced + [eos]
                stop = ("eos", None)
            budget = request.max_new_tokens - len(forced)
            if request.round_index == 0:
                budget = min(round_tokens, budget)
            if budget < 1:
                return await inner.agenerate(request)
            head = await inner.agenerate(dataclasses.replace(request, max_new_tokens=budget, stop=()))
            if head.finish_reason == "eos":
                return head
            return Generation(list(head.token_ids) + forced, list(head.logprobs) + [math.nan] * len(forced),
                              stop[0], stop_text=stop[1])

        def close(self):
            inner.close()

    return ForcedTIR()


# ------------------------------------------------------------------------------------------------ probes


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compared_parameter_names(model) -> list[str]:
    """A few parameters an engine holds unfused (vLLM fuses q/k/v and gate/up): the embedding (= the tied output
    layer), the first attention output projection, the last MLP down projection, two norms."""
    layers = model.config.num_hidden_layers
    return ["model.embed_tokens.weight", "model.layers.0.self_attn.o_proj.weight",
            f"model.layers.{layers - 1}.mlp.down_proj.weight", "model.layers.0.input_layernorm.weight",
            "model.norm.weight"]


class SyncProbe:
    """Compares the engine's parameters with the trainer's after each sync (module docstring)."""

    def __init__(self, trainer, engine: str) -> None:
        self.trainer = trainer
        self.engine = engine
        self.names = compared_parameter_names(trainer.model)
        self.previous: dict | None = None  # engine values at the previous sync (the small parameters)
        self.records: list[dict] = []

    def trainer_params(self) -> dict:
        named = dict(self.trainer.model.named_parameters())
        return {n: named[n] for n in self.names}

    def engine_params(self, backend) -> dict:
        if self.engine == "transformers":
            named = dict(backend.model.named_parameters())
            return {n: named[n] for n in self.names if n in named}
        from torl.train.vllm_sync import engine_model

        named = dict(engine_model(self.trainer.vllm_generation.llm).named_parameters())
        return {n: named[n] for n in self.names if n in named and named[n].numel() > 0}

    def check(self, backend) -> dict:
        import torch

        start = time.perf_counter()
        engine, trainer = self.engine_params(backend), self.trainer_params()
        rec: dict = {"step": self.trainer.state.global_step, "compared": [], "max_abs_diff": 0.0}
        shared = all(engine.get(n) is not None and engine[n].data_ptr() == trainer[n].data_ptr()
                     for n in self.names)
        rec["shared"] = shared
        changed = 0.0
        current = {}
        with torch.no_grad():
            for n, e in engine.items():
                t = trainer[n]
                rows = min(e.shape[0], t.shape[0])  # vLLM may pad the vocabulary
                e, t = e[:rows], t[:rows]
                if e.shape != t.shape:
                    continue
                rec["compared"].append(n)
                diff = (e.float() - t.float()).abs()
                rec["max_abs_diff"] = max(rec["max_abs_diff"], float(diff.max()))
                if e.dtype == torch.float32:
                    ok = bool(torch.equal(e, t.float()))
                else:  # round-to-nearest into a 7-bit mantissa: at most half an ulp, <= 2^-8 |t|
                    ok = bool(torch.equal(e, t.to(e.dtype))) and bool((diff <= t.float().abs() * 2**-8).all())
                rec.setdefault("equal", {})[n] = ok
                if "embed" not in n:  # snapshots of the small ones only
                    current[n] = e.detach().float().clone()
                    if self.previous is not None and n in self.previous:
                        changed = max(changed, float((current[n] - self.previous[n]).abs().max()))
        rec["engine_dtype"] = str(next(iter(engine.values())).dtype) if engine else None
        rec["tolerance"] = "exact" if rec["engine_dtype"] == "torch.float32" else "bf16 rounding"
        rec["changed_since_last_sync"] = changed if self.previous is not None else None
        problems = [f"{n} differs" for n, ok in rec.get("equal", {}).items() if not ok]
        if len(rec["compared"]) < 2:
            problems.append(f"only {rec['compared']} comparable")
        if self.engine == "transformers" and not shared:
            problems.append("generation does not run on the trainer's parameter tensors")
        if self.previous is not None and changed == 0.0:
            problems.append("engine parameters unchanged since the previous sync")
        rec["ok"], rec["problems"] = not problems, problems
        rec["check_s"] = time.perf_counter() - start
        self.previous = current
        self.records.append(rec)
        return rec


class StepProbe:
    """Times the parts of each step (GPU synchronised at each boundary), counts the update's real and padded
    tokens, and scores each step's first micro-batch again after the update (the stale gap)."""

    def __init__(self, trainer, device) -> None:
        self.trainer = trainer
        self.device = device
        self.reset()
        self._wrap()

    def reset(self) -> None:
        self.train_step_s = 0.0  # training_step calls (they include _prepare_inputs)
        self.prepare_s = 0.0  # _prepare_inputs (generation, grading, batching on the first micro-batch)
        self.optimizer_s = 0.0
        self.sync_s = 0.0
        self.real_tokens = 0
        self.padded_tokens = 0
        self.first_call = None  # (args, kwargs, logps, mask) of the step's first micro-batch's loss forward
        self._loss_inputs = None
        self._last_backward_end = None

    def _timed(self, name: str, fn):
        def wrapper(*args, **kwargs):
            _sync(self.device)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _sync(self.device)
                end = time.perf_counter()
                setattr(self, name, getattr(self, name) + end - start)
                if name == "train_step_s":
                    self._last_backward_end = end

        return wrapper

    def _wrap(self) -> None:
        tr = self.trainer
        tr.training_step = self._timed("train_step_s", tr.training_step)
        tr._prepare_inputs = self._timed("prepare_s", tr._prepare_inputs)
        if getattr(tr, "use_vllm", False):
            tr.vllm_generation.sync_weights = self._timed("sync_s", tr.vllm_generation.sync_weights)
        compute_loss, logps = tr._compute_loss, tr._get_per_token_logps_and_entropies

        def counted_loss(model, inputs):
            self.padded_tokens += inputs["prompt_ids"].numel() + inputs["completion_ids"].numel()
            self.real_tokens += int(inputs["prompt_mask"].sum()) + int(inputs["completion_mask"].sum())
            self._loss_inputs = inputs if self.first_call is None else None
            return compute_loss(model, inputs)

        def recorded_logps(*args, **kwargs):
            out = logps(*args, **kwargs)
            inputs, self._loss_inputs = self._loss_inputs, None  # the first call in the loss is the loss's
            if inputs is not None:
                mask = inputs["completion_mask"]
                if "tool_mask" in inputs:
                    mask = mask * inputs["tool_mask"]
                self.first_call = (args, kwargs, out[0].detach(), mask)
            return out

        tr._compute_loss = counted_loss
        tr._get_per_token_logps_and_entropies = recorded_logps  # wraps TorlGRPOTrainer's (the engine gap's)
        self._original_logps = logps

    def stale_gap(self) -> float | None:
        """Mean |log p_new - log p_old| over the first micro-batch's model tokens: the gap a skipped sync would
        have shown this step (the engine would still hold the old weights)."""
        import torch

        if self.first_call is None:
            return None
        args, kwargs, old, mask = self.first_call
        with torch.no_grad():
            new = self._original_logps(*args, **kwargs)[0].detach()
        keep = mask.bool() if mask is not None else torch.ones_like(old, dtype=torch.bool)
        return float((new.float() - old.float()).abs()[keep].mean()) if keep.any() else None

    def on_optimizer_step(self) -> None:
        """Gradient clipping, the grad norm and the optimizer step: from the last backward to here."""
        _sync(self.device)
        if self._last_backward_end is not None:
            self.optimizer_s += time.perf_counter() - self._last_backward_end


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["transformers", "vllm"], default="transformers")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--response-tokens", type=int, default=1024)
    ap.add_argument("--round-tokens", type=int, default=384, help="engine tokens before the forced code block")
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--generation-batch", type=int, default=128, help="sequences per HF generate call")
    ap.add_argument("--lr", type=float, default=None,
                    help="learning rate (default 1e-4 for the full shape, 1e-3 for the smoke's: one step then moves "
                         "log-probs by more than 10x the gap threshold; the CPU proxy moved them 0.9 to 2.1 at 1e-4)")
    ap.add_argument("--gap-threshold", type=float, default=None, help="default 2e-2 in bf16, 1e-3 in fp32")
    ap.add_argument("--work-dir", default=str(REPO / "runs" / "gpu_check"))
    ap.add_argument("--out", default=None, help="folder for the per-phase JSON (default $OUT/gpu_check)")
    ap.add_argument("--cpu-smoke", action="store_true", help="the same code path on CPU with a 2-layer model")
    ap.add_argument("--cpu", action="store_true", help="run on CPU at the sizes given (e.g. to calibrate --lr)")
    ap.add_argument("--shape", choices=["full", "smoke"], default=None,
                    help="Qwen2.5-Math-1.5B's shape (default) or the smoke's 2-layer width-64 one")
    ap.add_argument("--layers", type=int, default=None, help="override the shape's number of layers")
    ap.add_argument("--precision", choices=["bf16", "fp32"], default=None,
                    help="default bf16 (fp32 master weights, bf16 compute); fp32 with --cpu-smoke")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        args.prompts, args.samples, args.micro_batch = min(args.prompts, 2), min(args.samples, 2), 4
        args.response_tokens, args.round_tokens = min(args.response_tokens, 96), 12
        args.steps, args.generation_batch = min(args.steps, 2), 8
    if (args.cpu or args.cpu_smoke) and args.engine == "vllm":  # vLLM's CPU build
        for k, v in {"VLLM_CPU_KVCACHE_SPACE": "1", "TORCH_COMPILE_DISABLE": "1",
                     "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}.items():
            os.environ.setdefault(k, v)
    args.cpu = args.cpu or args.cpu_smoke
    args.shape = args.shape or ("smoke" if args.cpu_smoke else "full")
    args.precision = args.precision or ("fp32" if args.cpu_smoke else "bf16")
    args.lr = args.lr if args.lr is not None else (1e-3 if args.shape == "smoke" else 1e-4)
    args.gap_threshold = args.gap_threshold or GAP_THRESHOLD[args.precision]
    default_out = Path(os.environ["OUT"]) / "gpu_check" if os.environ.get("OUT") else Path(args.work_dir) / "out"
    args.out = Path(args.out) if args.out else default_out
    return args


def versions() -> dict:
    import accelerate
    import torch
    import transformers
    import trl

    return {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__, "trl": trl.__version__}


def median(rows: list[dict], key: str):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(args, steps: list[dict], n_params: int, peak: float | None) -> dict:
    """Medians over the steps after the first (which carries the warm-up), MFU, and the verdicts."""
    timed = steps[1:] or steps
    keys = ["step_s", "generation_s", "tools_s", "grading_s", "update_s", "sync_s", "other_s",
            "generated_tokens_per_s", "real_tokens", "padded_tokens"]
    out = {k: median(timed, k) for k in keys}
    for name, tokens in (("mfu_update_real", "real_tokens"), ("mfu_update_padded", "padded_tokens")):
        vals = [6 * n_params * s[tokens] / s["update_s"] / (peak * 1e12) for s in timed
                if peak and s["update_s"]]
        out[name] = statistics.median(vals) if vals else None
    gaps = [s["engine_logprob_gap"] for s in steps]
    stale = [s["stale_gap"] for s in steps]
    out.update(engine_logprob_gap=gaps, stale_gap=stale, gap_threshold=args.gap_threshold)
    problems = [] if len(steps) == args.steps else [f"{len(steps)} of {args.steps} steps ran"]
    if any(g is None or g > args.gap_threshold for g in gaps):
        problems.append(f"engine/trainer gap {gaps} not all under {args.gap_threshold}")
    if any(s is None or s < STALE_FACTOR * args.gap_threshold for s in stale):
        problems.append(f"stale gap {stale} not all >= {STALE_FACTOR:g}x the threshold: a skipped sync could "
                        f"pass unseen; raise --lr")
    bad_sync = [f"step {s['step']}: {s['sync_check']['problems']}" for s in steps if not s["sync_check"]["ok"]]
    problems += bad_sync
    out["problems"], out["ok"] = problems, not problems
    return out


def final_line(result: dict) -> str:
    def f(v, spec=".3g"):
        return "-" if v is None else format(v, spec)

    gpu = result["env"]["gpu"] or "cpu"
    gaps = ",".join(f(g, ".2g") for g in result["engine_logprob_gap"])
    stale = ",".join(f(g, ".2g") for g in result["stale_gap"])
    mem = result.get("peak_gpu_memory_gib")
    mem_text = f"peak_gpu_mem={f(mem)}GiB" if mem is not None else f"peak_rss={f(result['peak_rss_gib'])}GiB"
    return (f"gpu_check: backend={result['engine']} device=\"{gpu}\" steps={result['steps']} "
            f"step={f(result['step_s'])}s [generation={f(result['generation_s'])} tools={f(result['tools_s'])} "
            f"grading={f(result['grading_s'])} update={f(result['update_s'])} sync={f(result['sync_s'])} "
            f"other={f(result['other_s'])}] gen_tok/s={f(result['generated_tokens_per_s'])} "
            f"mfu_update_real={f(result['mfu_update_real'])} mfu_update_padded={f(result['mfu_update_padded'])} "
            f"{mem_text} gap=[{gaps}] stale_gap=[{stale}] threshold={result['gap_threshold']:g} "
            f"weights={result['weights']} total={f(result['total_s'], '.0f')}s "
            f"{'ok' if result['ok'] else 'FAILED: ' + '; '.join(result['problems'])}")


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    phases = Phases(args.out)

    import torch

    cuda = torch.cuda.is_available()
    if not args.cpu and not cuda:
        print("gpu_check: no CUDA device (--cpu-smoke checks the code path on CPU)", file=sys.stderr)
        return 2
    device = torch.device("cuda", torch.cuda.current_device()) if cuda and not args.cpu else torch.device("cpu")
    env = {**gpu_info(), **versions(), "engine": args.engine, "cpu_smoke": args.cpu_smoke,
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    phases.write("env", env)
    peak = env["peak_bf16_tflops"] if device.type == "cuda" else None

    shape = dict(SMOKE_SHAPE if args.shape == "smoke" else QWEN25_MATH_15B)
    if args.layers:
        shape["num_hidden_layers"] = args.layers
    name = f"qwen25_{args.shape}_{shape['num_hidden_layers']}layers_random"
    model_dir = build_model(work / name, shape, device.type)
    build_s = time.perf_counter() - t0
    phases.write("build", {"model_dir": str(model_dir), "shape": shape, "build_s": build_s})
    data = write_problems(work / "problems.jsonl", max(64, args.prompts * 2))

    from transformers import TrainerCallback

    from torl.train.config import load_config
    from torl.train.rollout_func import hf_backend, vllm_backend
    from torl.train.trainer import build_trainer

    overrides = [
        f"model.path={model_dir}", f"data.train_files=[{data}]", f"run_dir={work / 'run'}",
        f"grpo.prompts_per_step={args.prompts}", f"grpo.samples_per_prompt={args.samples}",
        f"grpo.micro_batch_size={args.micro_batch}", f"rollout.max_response_tokens={args.response_tokens}",
        f"train.max_steps={args.steps}", "train.save_every=100000", "train.save_final_model=false",
        "train.dump_samples=false", "validation.every=0", "validation.at_start=false",
        "logging.tensorboard=false", "logging.progress=false", f"optim.lr={args.lr}",
        f"engine.vllm={'true' if args.engine == 'vllm' else 'false'}", "engine.vllm_mode=colocate",
        f"engine.generation_batch_size={args.generation_batch}",
    ]
    overrides.append(f"train.precision={args.precision}")
    if args.cpu:
        overrides.append("engine.sandbox_workers=2")  # gradient checkpointing stays on, as on the GPU
    cfg = load_config(REPO / "configs" / "torl_1.5b.yaml", overrides)
    with contextlib.suppress(FileNotFoundError):
        (work / "run" / "metrics.jsonl").unlink()

    holder: dict = {}

    @contextlib.contextmanager
    def factory(trainer):
        inner_cm = (vllm_backend(trainer) if args.engine == "vllm"
                    else hf_backend(trainer, max_batch_size=args.generation_batch))
        with inner_cm as inner:
            holder["sync_check"] = holder["sync_probe"].check(inner)  # after TRL's sync, before sampling
            yield forced_tir_backend(inner, trainer.processing_class, args.round_tokens)

    steps: list[dict] = []

    class Probe(TrainerCallback):
        """After torl's step callback: one JSON per step."""

        def on_optimizer_step(self, a, state, control, **kw):
            holder["step_probe"].on_optimizer_step()

        def on_step_end(self, a, state, control, **kw):
            p = holder["step_probe"]
            m = run.callback.last_metrics
            stale = p.stale_gap()
            step_s, gen, grading = m.get("time/step_s"), m.get("time/rollout_s"), m.get("time/grading_s")
            update = p.train_step_s - p.prepare_s + p.optimizer_s
            check = holder.get("sync_check") or {"ok": False, "problems": ["no sync check ran"]}
            row = {
                "step": state.global_step, "step_s": step_s, "generation_s": gen,
                "tools_s": m.get("time/tool_exec_s"), "grading_s": grading, "update_s": update,
                "sync_s": p.sync_s, "other_s": step_s - gen - grading - update - p.sync_s,
                "forward_backward_s": p.train_step_s - p.prepare_s, "optimizer_s": p.optimizer_s,
                "generated_tokens_per_s": m.get("throughput/generated_tokens_per_s"),
                "real_tokens": p.real_tokens, "padded_tokens": p.padded_tokens,
                "engine_logprob_gap": m.get("train/engine_logprob_gap"), "stale_gap": stale,
                "reward_mean": m.get("train/reward_mean"), "accuracy": m.get("train/accuracy"),
                "response_length": m.get("train/response_length"),
                "code_ratio": m.get("train/code_ratio"), "sync_check": check,
            }
            if device.type == "cuda":
                row["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            steps.append(row)
            phases.write(f"step_{state.global_step}", row)
            print(f"gpu_check step {state.global_step}: {json.dumps({k: v for k, v in row.items() if k != 'sync_check'}, default=str)}",
                  flush=True)
            holder.pop("sync_check", None)
            p.reset()

    run = build_trainer(cfg, backend_factory=factory, callbacks=[Probe()])
    from transformers.trainer_utils import SaveStrategy

    run.trainer.args.save_strategy = SaveStrategy.NO  # no checkpoint at the last step (18 GB with the optimizer)
    holder["sync_probe"] = SyncProbe(run.trainer, args.engine)
    holder["step_probe"] = StepProbe(run.trainer, device)
    n_params = sum(p.numel() for p in run.trainer.model.parameters())
    setup_s = time.perf_counter() - t0 - build_s
    phases.write("setup", {"setup_s": setup_s, "params": n_params, "lr": args.lr,
                           "compared_parameters": holder["sync_probe"].names})
    try:
        run.trainer.train()
    finally:
        run.close()
    shared = all(s["sync_check"].get("shared") for s in steps)
    result = {"env": env, "engine": args.engine, "steps": len(steps), "params": n_params, "lr": args.lr,
              "model_build_s": build_s, "setup_s": setup_s,
              "weights": "shared" if shared else "copied",
              **summarize(args, steps, n_params, peak),
              "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
              "total_s": time.perf_counter() - t0}
    if device.type == "cuda":
        result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        result["peak_gpu_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
    phases.write("gpu_check", result)
    print(f"wrote {args.out}")
    print(final_line(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
