"""GPU check of the training path, no download: a Qwen2.5-Math-1.5B-shaped model with random weights, GRPO steps
with TRL's colocated vLLM engine, the real sandbox and grader, and where each step's time goes.

    bash benchmarks/gpu_check.sh                         # one H100/H200-class GPU, < 8 minutes
    python benchmarks/gpu_check.py --steps 3 --prompts 16 --samples 8 --response-tokens 1024
    python benchmarks/gpu_check.py --cpu-smoke           # the same code path on vLLM's CPU build, tiny model

What runs: `torl.train.build_trainer` on configs/torl_1.5b.yaml (bf16 compute on fp32 master weights, gradient
checkpointing, AdamW, engine.vllm=true colocated, weights synced every step) at a reduced batch (16 prompts x 8
samples). A random-weight model writes no code and almost never stops, so every response is forced into the
recipe's shape: round 1 samples `--round-tokens` tokens from the engine and then carries a fixed code block
(real execution in the LocalSandbox, observation inserted), round 2 samples until the response budget is spent.
The inserted code tokens have no engine log-probability (NaN) and are left out of the gap.

Prints and writes JSON (--out, default runs/gpu_check/gpu_check.json): per step the time of generation (with the
tool calls overlapped), tool execution (summed over calls), grading and the update; generated and trained tokens
per second; model FLOP utilisation of the update (6 N tokens / time) and of the whole step (update + 2 N per
generated token) against the GPU's dense bf16 peak; and train/engine_logprob_gap (the engine's vs the
trainer's log-probabilities of the sampled tokens).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "H20": 148.0, "A100": 312.0, "A800": 312.0,
                    "L40S": 362.0}
QWEN25_MATH_15B = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=4096,
                       rope_theta=10000.0, tie_word_embeddings=True)
CODE = "```python\ntotal = sum(i * i for i in range(200000))\nprint(total)\n```\n```output"


def build_model(out: Path, cpu_smoke: bool) -> Path:
    """The model directory: Qwen2.5-Math-1.5B's shape, random bf16 weights, the Qwen2.5 tokenizer (tiny on CPU)."""
    if (out / "config.json").is_file():
        return out
    if cpu_smoke:
        from torl.models.tiny import build_tiny_model

        return build_tiny_model(out, seed=0, num_heads=2)
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from torl.models import qwen25_tokenizer

    tok = qwen25_tokenizer()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(**QWEN25_MATH_15B, bos_token_id=None, eos_token_id=eos, pad_token_id=eos)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=eos)
    tmp = out.with_name(out.name + ".building")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(out)
    del model
    torch.cuda.empty_cache()
    return out


def write_problems(path: Path, n: int) -> Path:
    from torl.data.schema import Problem
    from torl.data.schema import write_problems as write

    write([Problem(id=f"g{i}", problem=f"What is {17 + i} * {23 + 2 * i}?", answer=str((17 + i) * (23 + 2 * i)),
                   source="gpu_check") for i in range(n)], path)
    return path


def forced_tir_backend(inner, tokenizer, round_tokens: int):
    """Wrap a torl Backend: round 0 samples `round_tokens` tokens then carries CODE (stop "```output"); later
    rounds sample from the engine as they are."""
    import math

    from torl.rollout.backends.base import Backend, Generation

    code_ids = tokenizer.encode("\n" + CODE, add_special_tokens=False)

    class ForcedTIR(Backend):
        name = "forced-tir"

        def __init__(self):
            self.tokenizer = tokenizer

        async def open_session(self):
            await inner.open_session()

        async def close_session(self):
            await inner.close_session()

        async def agenerate(self, request):
            import dataclasses

            if request.round_index > 0:
                return await inner.agenerate(request)
            budget = max(1, min(round_tokens, request.max_new_tokens - len(code_ids)))
            head = await inner.agenerate(dataclasses.replace(request, max_new_tokens=budget, stop=()))
            if head.finish_reason == "eos":
                return head
            return Generation(list(head.token_ids) + code_ids, list(head.logprobs) + [math.nan] * len(code_ids),
                              "stop", stop_text="```output")

        def close(self):
            inner.close()

    return ForcedTIR()


def gpu_peak_tflops() -> tuple[str | None, float | None]:
    import torch

    if not torch.cuda.is_available():
        return None, None
    name = torch.cuda.get_device_name(0)
    for key, peak in PEAK_BF16_TFLOPS.items():
        if key in name:
            return name, peak
    return name, None


def summarize(rows: list[dict], n_params: int, peak_tflops: float | None) -> dict:
    steps = [r for r in rows if "time/step_s" in r]
    timed = steps[1:] or steps  # the first step carries the engine's warm-up

    def med(key):
        vals = [r[key] for r in timed if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    out = {
        "steps": len(steps),
        "step_s": med("time/step_s"),
        "generation_s": med("time/rollout_s"),
        "tool_exec_s": med("time/tool_exec_s"),
        "grading_s": med("time/grading_s"),
        "update_s": med("time/update_s"),
        "generated_tokens_per_s": med("throughput/generated_tokens_per_s"),
        "update_tokens_per_s": med("throughput/update_tokens_per_s"),
        "engine_logprob_gap": [r.get("train/engine_logprob_gap") for r in steps],
        "mean_response_tokens": med("train/response_length"),
        "params": n_params,
        "peak_bf16_tflops": peak_tflops,
    }
    upd_tps, gen_tps = out["update_tokens_per_s"], out["generated_tokens_per_s"]
    if peak_tflops and upd_tps and out["update_s"] and out["step_s"]:
        peak = peak_tflops * 1e12
        out["mfu_update"] = 6 * n_params * upd_tps / peak
        step_flops = 6 * n_params * upd_tps * out["update_s"] + 2 * n_params * gen_tps * out["generation_s"]
        out["mfu_step"] = step_flops / out["step_s"] / peak
    else:
        out["mfu_update"] = out["mfu_step"] = None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--response-tokens", type=int, default=1024)
    ap.add_argument("--round-tokens", type=int, default=384, help="engine tokens before the forced code block")
    ap.add_argument("--micro-batch", type=int, default=8)
    ap.add_argument("--work-dir", default=str(REPO / "runs" / "gpu_check"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny model on vLLM's CPU build (checks the code path)")
    args = ap.parse_args(argv)
    if args.cpu_smoke:
        for k, v in {"VLLM_CPU_KVCACHE_SPACE": "1", "TORCH_COMPILE_DISABLE": "1",
                     "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}.items():
            os.environ.setdefault(k, v)
        args.prompts, args.samples, args.micro_batch = min(args.prompts, 2), min(args.samples, 4), 4
        args.response_tokens, args.round_tokens, args.steps = min(args.response_tokens, 64), 12, min(args.steps, 2)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    out_path = Path(args.out) if args.out else work / "gpu_check.json"
    t0 = time.perf_counter()

    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --cpu-smoke to check the code path on CPU)", file=sys.stderr)
        return 2
    model_dir = build_model(work / ("tiny_model" if args.cpu_smoke else "qwen25_math_1p5b_random"), args.cpu_smoke)
    build_s = time.perf_counter() - t0
    data = write_problems(work / "problems.jsonl", max(64, args.prompts * 2))

    from torl.train.config import load_config
    from torl.train.rollout_func import vllm_backend
    from torl.train.trainer import build_trainer

    overrides = [
        f"model.path={model_dir}", f"data.train_files=[{data}]", f"run_dir={work / 'run'}",
        f"grpo.prompts_per_step={args.prompts}", f"grpo.samples_per_prompt={args.samples}",
        f"grpo.micro_batch_size={args.micro_batch}", f"rollout.max_response_tokens={args.response_tokens}",
        f"train.max_steps={args.steps}", "train.save_every=100000", "train.save_final_model=false",
        "train.dump_samples=false", "validation.every=0", "validation.at_start=false",
        "logging.tensorboard=false", "logging.progress=false", "engine.vllm=true", "engine.vllm_mode=colocate",
    ]
    if args.cpu_smoke:
        overrides += ["train.precision=fp32", "model.gradient_checkpointing=false", "engine.sandbox_workers=2",
                      "optim.lr=1e-3"]
    cfg = load_config(REPO / "configs" / "torl_1.5b.yaml", overrides)
    with contextlib.suppress(FileNotFoundError):
        (work / "run" / "metrics.jsonl").unlink()

    @contextlib.contextmanager
    def factory(trainer):
        with vllm_backend(trainer) as inner:
            yield forced_tir_backend(inner, trainer.processing_class, args.round_tokens)

    run = build_trainer(cfg, backend_factory=factory)
    from transformers.trainer_utils import SaveStrategy

    run.trainer.args.save_strategy = SaveStrategy.NO  # no checkpoint at the last step (18 GB with the optimizer)
    setup_s = time.perf_counter() - t0 - build_s
    try:
        n_params = sum(p.numel() for p in run.trainer.model.parameters())
        run.trainer.train()
    finally:
        run.close()
    rows = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    gpu, peak = gpu_peak_tflops()
    result = {"gpu": gpu, "cpu_smoke": args.cpu_smoke, "prompts": args.prompts, "samples": args.samples,
              "response_tokens": args.response_tokens, "model_build_s": build_s, "setup_s": setup_s,
              **summarize(rows, n_params, peak), "total_s": time.perf_counter() - t0}
    out_path.write_text(json.dumps(result, indent=2))
    show = ["gpu", "steps", "step_s", "generation_s", "tool_exec_s", "grading_s", "update_s",
            "generated_tokens_per_s", "update_tokens_per_s", "mfu_update", "mfu_step", "engine_logprob_gap",
            "total_s"]
    width = max(map(len, show))
    for key in show:
        value = result.get(key)
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, list):
            value = ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value)
        print(f"{key:<{width}}  {value}")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
