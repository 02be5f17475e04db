"""Training benchmark: time per step by phase, tokens/s, and (on a GPU) the fraction of the bf16 peak reached.

    python benchmarks/train_bench.py                       # CPU part (tiny config); GPU part too if CUDA is there
    python benchmarks/train_bench.py --cpu-only --steps 4
    python benchmarks/train_bench.py --gpu-only --gen-batch 64 --gen-tokens 512 --micro-batch 8
    python benchmarks/train_bench.py --gpu-only --device cpu --shape tiny   # check the GPU code path on a CPU

CPU part (tiny model, generated arithmetic, real sandbox and grader), all in one run:
  trl-native   TRL's own GRPOTrainer generation (HF generate, no tool loop): the baseline
  torl-C0      torl's rollout function without tools (max_tool_calls=0)
  torl-C1      torl's rollout function with one execution per response (the recipe)
Per step (first step dropped as warm-up; medians): rollout / tool execution / grading / update seconds, generated
tokens per second. Ratios: torl-C0 vs trl-native (cost of torl's engine without tools) and torl-C1 vs torl-C0
(cost of the tool loop; the reference reported 237 s / 118 s = 2.0x on 8xA800).

GPU part (a randomly initialised model of Qwen2.5-Math-1.5B's shape; fp32 master weights and bf16 compute, as the
recipe; --weights bf16 for bf16 weights): generation tokens/s with raw HF
`generate` (baseline) and with torl's TransformersBackend (per-row stops + logprobs), and policy-update tokens/s
of TRL's GRPO loss (fused log-prob head, gradient checkpointing, AdamW step) on prompt 400 + response 3072
tokens, each with model FLOPs / time / peak bf16 FLOPs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# dense bf16 peak TFLOP/s (no sparsity)
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0,
                    "L4": 121.0, "A10G": 70.0, "RTX 4090": 165.0}
QWEN25_MATH_15B = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=4096,
                       rope_theta=10000.0, tie_word_embeddings=True)
TINY_SHAPE = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)


# ------------------------------------------------------------------------------------------------ CPU part


class _StepTimer:
    """A TrainerCallback recording wall time per optimizer step (for the TRL-native baseline)."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                timer.t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timer.steps.append(time.perf_counter() - timer.t0)

        self.steps: list[float] = []
        self.t0 = 0.0
        self.callback = CB()


def _tiny_config(run_dir: Path, steps: int, tiny_train_steps: int, overrides: list[str]):
    from torl.train.config import load_config

    return load_config(REPO / "configs" / "tiny_cpu.yaml", [
        f"run_dir={run_dir}", f"train.max_steps={steps}", f"train.save_every={steps + 100}",
        f"model.tiny={{train_steps: {tiny_train_steps}}}", "validation.every=0", "validation.at_start=false",
        "logging.progress=false", "logging.tensorboard=false", "train.save_final_model=false", *overrides])


def bench_torl(run_dir: Path, steps: int, tiny_train_steps: int, max_tool_calls: int) -> dict:
    from torl.train.metrics import read_metrics
    from torl.train.trainer import build_trainer

    cfg = _tiny_config(run_dir, steps, tiny_train_steps, [f"rollout.max_tool_calls={max_tool_calls}"])
    run = build_trainer(cfg)
    try:
        run.trainer.train()
    finally:
        run.close()
    recs = [r for r in read_metrics(run_dir) if "time/step_s" in r][1:]  # drop the warm-up step

    def med(key):
        return statistics.median(float(r.get(key) or 0.0) for r in recs)

    gen_tokens = [r["train/response_length"] * r["train/num_samples"] * (1 - r["train/observation_token_share"])
                  for r in recs]
    return {
        "step_s": med("time/step_s"), "rollout_s": med("time/rollout_s"), "tool_exec_s": med("time/tool_exec_s"),
        "grading_s": med("time/grading_s"), "update_s": med("time/update_s"),
        "generated_tokens_per_s": med("throughput/generated_tokens_per_s"),
        "generated_tokens_per_step": statistics.median(gen_tokens),
        "step_tokens_per_s": statistics.median(g / r["time/step_s"] for g, r in zip(gen_tokens, recs, strict=True)),
        "code_ratio": med("train/code_ratio"), "executions_per_response": med("train/executions_per_response"),
        "response_length": med("train/response_length"), "steps_measured": len(recs),
    }


def bench_trl_native(run_dir: Path, steps: int, tiny_train_steps: int) -> dict:
    """TRL's own generation path (no rollout_func, so no tool loop), same model, data, batch and reward."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from torl.train.data import read_train_problems, render_prompts
    from torl.train.rewards import TIRReward
    from torl.train.trainer import build_grpo_config, load_policy_tokenizer, resolve_model_path

    cfg = _tiny_config(run_dir, steps, tiny_train_steps, [])
    path = resolve_model_path(cfg)
    tok = load_policy_tokenizer(path)
    rows = render_prompts(read_train_problems(cfg.data.train_files), tok, template=cfg.data.template,
                          max_prompt_tokens=cfg.data.max_prompt_tokens).rows
    args = build_grpo_config(cfg, 1)
    timer = _StepTimer()
    trainer = GRPOTrainer(model=path, reward_funcs=[TIRReward(cfg.reward)], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tok, callbacks=[timer.callback])
    trainer.train()
    hist = [h for h in trainer.state.log_history if "completions/mean_length" in h][1:]
    n = cfg.grpo.prompts_per_step * cfg.grpo.samples_per_prompt
    step_s = timer.steps[1:]
    return {
        "step_s": statistics.median(step_s),
        "generated_tokens_per_step": statistics.median(h["completions/mean_length"] * n for h in hist),
        "step_tokens_per_s": statistics.median(h["completions/mean_length"] * n / s
                                               for h, s in zip(hist, step_s, strict=True)),
        "response_length": statistics.median(h["completions/mean_length"] for h in hist),
        "steps_measured": len(step_s),
    }


def cpu_part(steps: int, tiny_train_steps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="torl-train-bench-") as tmp:
        tmp = Path(tmp)
        out = {"trl-native": bench_trl_native(tmp / "native", steps, tiny_train_steps),
               "torl-C0": bench_torl(tmp / "c0", steps, tiny_train_steps, 0),
               "torl-C1": bench_torl(tmp / "c1", steps, tiny_train_steps, 1)}
    out["ratios"] = {
        "torl-C0 / trl-native step time": out["torl-C0"]["step_s"] / out["trl-native"]["step_s"],
        "torl-C0 / trl-native step tokens/s": out["torl-C0"]["step_tokens_per_s"]
        / out["trl-native"]["step_tokens_per_s"],
        "torl-C1 / torl-C0 step time": out["torl-C1"]["step_s"] / out["torl-C0"]["step_s"],
        "reference C=1 / no tool step time (8xA800)": 237 / 118,
    }
    return out


def print_cpu(res: dict) -> None:
    cols = ("step_s", "rollout_s", "tool_exec_s", "grading_s", "update_s", "generated_tokens_per_s",
            "step_tokens_per_s", "response_length", "code_ratio", "executions_per_response")
    print("\nCPU, tiny config (medians per step)")
    print(f"{'variant':<12}" + "".join(f"{c:>24}" for c in cols))
    for name in ("trl-native", "torl-C0", "torl-C1"):
        row = res[name]
        print(f"{name:<12}" + "".join(f"{row[c]:>24.3f}" if c in row else f"{'-':>24}" for c in cols))
    for k, v in res["ratios"].items():
        print(f"  {k}: {v:.2f}x")


# ------------------------------------------------------------------------------------------------ GPU part


def peak_tflops(device_name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS.items():
        if key.lower() in device_name.lower():
            return value
    return None


def build_random_model(shape: dict, device: str, dtype):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**shape, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    return model


def n_params(model, *, embeddings: bool = False) -> int:
    n = sum(p.numel() for p in model.parameters())
    return n if embeddings else n - model.get_input_embeddings().weight.numel()


def bench_generation(model, tokenizer, *, batch: int, prompt_len: int, new_tokens: int, device: str,
                     reps: int = 2) -> dict:
    """Raw HF generate vs torl's TransformersBackend, same random prompts, sampling at temperature 1."""
    import torch
    from transformers import GenerationConfig

    from torl.rollout.backends.base import GenerationRequest
    from torl.rollout.backends.transformers_backend import TransformersBackend

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    gen = torch.Generator().manual_seed(0)
    prompts = torch.randint(5, model.config.vocab_size, (batch, prompt_len), generator=gen)
    model.eval()
    cfg = GenerationConfig(max_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                           pad_token_id=0, eos_token_id=0)
    backend = TransformersBackend(model, tokenizer, max_batch_size=batch)
    requests = [GenerationRequest(p.tolist(), new_tokens, (), 1.0, 1.0, i) for i, p in enumerate(prompts)]

    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.startswith("cuda") else contextlib.nullcontext

    def raw() -> int:
        with torch.no_grad(), amp():
            seqs = model.generate(input_ids=prompts.to(device), attention_mask=torch.ones_like(prompts).to(device),
                                  generation_config=cfg)
        return int((seqs[:, prompt_len:] != 0).sum())

    def ours() -> int:
        with amp():  # as torl.train's hf backend: the trainer's bf16 autocast
            return sum(len(g.token_ids) for g in backend.generate_batch(requests))

    runs: dict[str, list[tuple[float, int]]] = {"hf_generate": [], "torl_backend": []}
    raw(), ours()  # warm-up at full size (allocator, kernels)
    for _ in range(reps):  # interleaved, so both see the same machine state
        for name, fn in (("hf_generate", raw), ("torl_backend", ours)):
            sync()
            t = time.perf_counter()
            tokens = fn()
            sync()
            runs[name].append((time.perf_counter() - t, tokens))
    out = {}
    for name, rs in runs.items():
        rate = statistics.median(tok / s for s, tok in rs)
        out[name] = {"seconds": statistics.median(s for s, _ in rs), "tokens": rs[-1][1], "tokens_per_s": rate}
    return out


def bench_update(model, tokenizer, *, micro_batch: int, prompt_len: int, response_len: int, iters: int,
                 device: str) -> dict:
    """TRL's GRPO loss (fused head, token-mean, tool mask) forward + backward + AdamW step."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    model.train()
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(output_dir=tmp, per_device_train_batch_size=micro_batch, num_generations=2,
                          bf16=device.startswith("cuda"), gradient_checkpointing=True, loss_type="dapo", beta=0.0,
                          report_to="none", learning_rate=1e-6, use_cpu=not device.startswith("cuda"),
                          max_completion_length=response_len)
        trainer = GRPOTrainer(model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                              args=args, train_dataset=Dataset.from_list([{"prompt": "x"}] * 4),
                              processing_class=tokenizer)
    trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(trainer.model.parameters(), lr=1e-6, weight_decay=0.01)
    gen = torch.Generator().manual_seed(1)
    b, v = micro_batch, model.config.vocab_size
    tool_mask = torch.ones(b, response_len, dtype=torch.long)
    tool_mask[:, response_len // 3 : response_len // 3 + 64] = 0  # an observation block
    inputs = {
        "prompt_ids": torch.randint(5, v, (b, prompt_len), generator=gen).to(device),
        "prompt_mask": torch.ones(b, prompt_len, dtype=torch.long, device=device),
        "completion_ids": torch.randint(5, v, (b, response_len), generator=gen).to(device),
        "completion_mask": torch.ones(b, response_len, dtype=torch.long, device=device),
        "tool_mask": tool_mask.to(device),
        "advantages": torch.randn(b, generator=gen).to(device),
    }
    inputs["num_items_in_batch"] = (inputs["completion_mask"] * inputs["tool_mask"]).sum()
    trainer.current_gradient_accumulation_steps = 1
    times = []
    for _ in range(iters + 1):
        sync()
        t = time.perf_counter()
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - t)
    s = statistics.median(times[1:])
    tokens = b * (prompt_len + response_len)
    return {"seconds_per_micro_batch": s, "tokens": tokens, "tokens_per_s": tokens / s,
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None}


def gpu_part(a) -> dict:
    import torch

    from torl.train.tiny_model import build_tiny_tokenizer

    device = a.device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        return {"skipped": "no CUDA device (pass --device cpu --shape tiny to check the code path)"}
    shape = QWEN25_MATH_15B if a.shape == "qwen2.5-math-1.5b" else TINY_SHAPE
    # the recipe keeps fp32 master weights and computes in bf16 (autocast); --weights bf16 for pure bf16 weights
    dtype = torch.bfloat16 if a.weights == "bf16" and device.startswith("cuda") else torch.float32
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    peak = peak_tflops(name, a.peak_tflops)
    tokenizer = build_tiny_tokenizer()
    model = build_random_model(shape, device, dtype)
    n = n_params(model)
    layers, hidden = shape["num_hidden_layers"], shape["hidden_size"]
    res = {"device": name, "shape": a.shape, "weights": str(dtype), "params_non_embedding": n, "params_total": n_params(model, embeddings=True),
           "peak_bf16_tflops": peak}
    gen = bench_generation(model, tokenizer, batch=a.gen_batch, prompt_len=a.prompt_len, new_tokens=a.gen_tokens,
                           device=device, reps=a.reps)
    ctx = a.prompt_len + a.gen_tokens / 2  # mean context while decoding
    gen_flops_per_token = 2 * n_params(model, embeddings=True) + 4 * layers * hidden * ctx
    for v in gen.values():
        v["tflops"] = v["tokens_per_s"] * gen_flops_per_token / 1e12
        v["fraction_of_peak"] = v["tflops"] / peak if peak else None
    res["generation"] = gen
    res["generation"]["torl_backend / hf_generate tokens/s"] = (gen["torl_backend"]["tokens_per_s"]
                                                                / gen["hf_generate"]["tokens_per_s"])
    upd = bench_update(model, tokenizer, micro_batch=a.micro_batch, prompt_len=a.prompt_len,
                       response_len=a.response_len, iters=a.iters, device=device)
    seq = a.prompt_len + a.response_len
    # model FLOPs (recomputation not counted): 6 N per token + causal attention 6 * layers * hidden * seq
    train_flops_per_token = 6 * n_params(model, embeddings=True) + 6 * layers * hidden * seq
    upd["tflops"] = upd["tokens_per_s"] * train_flops_per_token / 1e12
    upd["fraction_of_peak"] = upd["tflops"] / peak if peak else None
    res["update"] = upd
    return res


def print_gpu(res: dict) -> None:
    print(f"\nGPU part: {res.get('skipped') or res['device']}")
    if "skipped" in res:
        return
    print(f"model: random {res['shape']} ({res['weights']} weights, bf16 compute), {res['params_total'] / 1e9:.3f} B "
          f"parameters; bf16 peak "
          f"{res['peak_bf16_tflops']} TFLOP/s")
    print(f"{'phase':<28}{'tokens/s':>14}{'TFLOP/s':>12}{'of peak':>10}")
    for name in ("hf_generate", "torl_backend"):
        r = res["generation"][name]
        frac = f"{r['fraction_of_peak']:.1%}" if r["fraction_of_peak"] is not None else "-"
        print(f"{'generation ' + name:<28}{r['tokens_per_s']:>14.1f}{r['tflops']:>12.2f}{frac:>10}")
    r = res["update"]
    frac = f"{r['fraction_of_peak']:.1%}" if r["fraction_of_peak"] is not None else "-"
    print(f"{'policy update (GRPO loss)':<28}{r['tokens_per_s']:>14.1f}{r['tflops']:>12.2f}{frac:>10}")
    print(f"  torl backend / raw generate: {res['generation']['torl_backend / hf_generate tokens/s']:.2f}x tokens/s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--gpu-only", action="store_true")
    ap.add_argument("--steps", type=int, default=4, help="CPU: steps per variant (the first is dropped)")
    ap.add_argument("--tiny-train-steps", type=int, default=100,
                    help="CPU: warm-start steps of the tiny model (so it writes code); cached after the first run")
    ap.add_argument("--device", help="GPU part device (default: cuda when available)")
    ap.add_argument("--shape", choices=("qwen2.5-math-1.5b", "tiny"), default="qwen2.5-math-1.5b")
    ap.add_argument("--gen-batch", type=int, default=64)
    ap.add_argument("--gen-tokens", type=int, default=512)
    ap.add_argument("--prompt-len", type=int, default=400)
    ap.add_argument("--response-len", type=int, default=3072)
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3, help="GPU: measured policy-update iterations")
    ap.add_argument("--reps", type=int, default=2, help="GPU: measured generation repetitions per variant")
    ap.add_argument("--weights", choices=("fp32", "bf16"), default="fp32",
                    help="GPU: dtype of the weights (compute is bf16 either way)")
    ap.add_argument("--peak-tflops", type=float, help="bf16 peak of the GPU, if not in the built-in table")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU: torch intra-op threads (default 1: on a shared 2-core machine 2-thread OpenMP teams "
                         "stall whenever the other core is busy, and a tiny model gains nothing from them)")
    ap.add_argument("--out", default="runs/bench/train_bench.json")
    a = ap.parse_args(argv)
    results = {"argv": sys.argv[1:]}
    if not a.gpu_only:
        import torch

        torch.set_num_threads(a.threads)
        results["cpu_threads"] = a.threads
    if not a.gpu_only:
        results["cpu"] = cpu_part(a.steps, a.tiny_train_steps)
    if not a.cpu_only:
        results["gpu"] = gpu_part(a)
    if "cpu" in results:
        print_cpu(results["cpu"])
    if "gpu" in results:
        print_gpu(results["gpu"])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
