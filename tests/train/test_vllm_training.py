"""GRPO training with TRL's colocated vLLM engine on vLLM's CPU build: weight sync, the on-policy gap, the CLI.

Real engine, real sandbox, real grader, tiny local model (head size 32, as vLLM's CPU attention needs). The
model is pushed by an entropy bonus at a large learning rate, so its weights change clearly every step whatever
the (mostly wrong) answers score.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.train.conftest import TINY_CPU, arithmetic_problems

pytestmark = pytest.mark.engines

VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "TORCH_COMPILE_DISABLE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
MOVING = ["grpo.entropy_coef=0.5", "optim.lr=0.01"]  # a step that clearly changes the model
SMALL = ["grpo.prompts_per_step=2", "grpo.samples_per_prompt=4", "grpo.micro_batch_size=4",
         "rollout.max_response_tokens=48", "engine.sandbox_workers=1", "logging.progress=false",
         "logging.tensorboard=false", "train.save_every=100"]


@pytest.fixture(scope="module", autouse=True)
def vllm_env():
    old = {k: os.environ.get(k) for k in VLLM_ENV}
    os.environ.update(VLLM_ENV)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def vllm_tiny_model(tmp_path_factory):
    from torl.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("vllm_tiny") / "model", seed=0, num_heads=2)


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    from torl.data.schema import write_problems

    path = tmp_path_factory.mktemp("vllm_data") / "train.jsonl"
    write_problems(arithmetic_problems(8), path)
    return path


def gaps(run_dir) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train/engine_logprob_gap"] for r in rows if "train/engine_logprob_gap" in r]


@pytest.fixture(scope="module")
def synced_run(vllm_tiny_model, train_file, tmp_path_factory):
    """`torl train configs/tiny_cpu.yaml engine.vllm=true`, colocated, 3 steps (with a validation pass)."""
    run_dir = tmp_path_factory.mktemp("vllm_run") / "run"
    cmd = [sys.executable, "-m", "torl.train", str(TINY_CPU), "engine.vllm=true", f"model.path={vllm_tiny_model}",
           f"data.train_files=[{train_file}]", f"run_dir={run_dir}", "train.max_steps=3", "validation.every=3",
           "validation.at_start=false", "validation.max_items=2", *SMALL, *MOVING]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, **VLLM_ENV})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return run_dir


def test_cli_trains_with_colocated_vllm(synced_run, vllm_tiny_model):
    import torch
    from safetensors.torch import load_file

    rows = [json.loads(line) for line in (synced_run / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in rows) == 3
    assert any("val/mean_accuracy" in r for r in rows), "validation ran through the engine"
    start = load_file(vllm_tiny_model / "model.safetensors")
    final = load_file(synced_run / "final" / "model.safetensors")
    moved = max((final[k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-3, f"the model barely changed ({moved}): the gap test would prove nothing"
    assert torch.isfinite(torch.tensor(gaps(synced_run))).all()


def test_engine_logprob_gap_with_and_without_weight_sync(synced_run, vllm_tiny_model, train_file, tmp_path):
    """Synced: the engine samples from exactly the trained weights (fp32: gap < 1e-3 every step). Sync skipped:
    the engine keeps the initial weights and the gap grows at least 10x. (That run also turns TRL's
    importance-sampling correction on: its statistics are logged, and its own mean |difference| agrees.)"""
    from torl.train import load_config
    from torl.train.trainer import build_trainer

    synced = gaps(synced_run)
    assert len(synced) == 3 and max(synced) < 1e-3, synced

    cfg = load_config(TINY_CPU, ["engine.vllm=true", f"model.path={vllm_tiny_model}",
                                 f"data.train_files=[{train_file}]", f"run_dir={tmp_path / 'nosync'}",
                                 "train.max_steps=3", "validation.every=0", "validation.at_start=false",
                                 "train.save_final_model=false", "engine.vllm_importance_sampling_correction=true",
                                 "engine.vllm_importance_sampling_mode=token_truncate", *SMALL, *MOVING])
    run = build_trainer(cfg)
    try:
        run.trainer.vllm_generation.sync_weights = lambda: None  # deliberately skip the weight sync
        run.trainer.train()
    finally:
        run.close()
    stale = gaps(tmp_path / "nosync")
    assert len(stale) == 3
    print(f"engine_logprob_gap synced={synced} unsynced={stale}")
    assert stale[-1] >= 10 * max(synced), (synced, stale)
    rows = [json.loads(line) for line in (tmp_path / "nosync" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "train/engine_logprob_gap" in r]
    assert all("sampling/importance_sampling_ratio/mean" in r for r in steps)
    trl_gap = [r["sampling/sampling_logp_difference/mean"] for r in steps]
    assert trl_gap == pytest.approx(stale, rel=1e-3, abs=1e-6), (trl_gap, stale)


def test_cpu_sync_repacks_a_tied_output_layer(vllm_tiny_model):
    """TRL's in-place load fails on the CPU build; reload_weights alone leaves a tied lm_head's packed kernel on the
    old weights (a silent error); with the repack the engine matches the new weights."""
    import torch
    from transformers import AutoModelForCausalLM
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from torl.train.vllm_sync import engine_model, repack_cpu_kernels

    hf = AutoModelForCausalLM.from_pretrained(vllm_tiny_model, dtype=torch.float32)
    assert hf.config.tie_word_embeddings
    llm = LLM(model=str(vllm_tiny_model), dtype="float32", max_model_len=256, seed=0, enforce_eager=True)
    prompt = list(range(5, 25))

    def gap() -> float:
        sp = SamplingParams(max_tokens=12, temperature=1.0, logprobs=0, seed=1)
        out = llm.generate([TokensPrompt(prompt_token_ids=prompt)], sp, use_tqdm=False)[0].outputs[0]
        ids = list(out.token_ids)
        lps = torch.tensor([out.logprobs[i][t].logprob for i, t in enumerate(ids)])
        with torch.no_grad():
            logits = hf(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1]
        ref = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(ids)[:, None])[:, 0]
        return (ref - lps).abs().mean().item()

    assert gap() < 1e-5
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert gap() > 1e-2
    with pytest.raises(AttributeError, match="weight_loader"):  # TRL 1.16's colocate sync on this build
        for name, p in hf.named_parameters():
            engine_model(llm).load_weights([(name, p.data)])
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(hf.named_parameters())})
    llm.reset_prefix_cache()
    assert gap() > 1e-2, "reload_weights alone now refreshes the tied lm_head: the repack may be unnecessary"
    assert repack_cpu_kernels(engine_model(llm)) >= 1
    llm.reset_prefix_cache()
    assert gap() < 1e-5


def test_ddp_two_cpu_processes_with_colocated_vllm(vllm_tiny_model, tmp_path):
    """Two processes, one colocated engine each (TRL's external launcher over the gloo group), weights synced."""
    from tests.train.ddp import check_ddp_run, launch_ddp_training

    rows = launch_ddp_training(sys.executable, vllm_tiny_model, tmp_path / "run", "engine.vllm=true", *MOVING)
    check_ddp_run(tmp_path / "run", rows)
