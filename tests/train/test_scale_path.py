"""The multi-GPU path's defects, each checked where a CPU can: DDP over gloo with two real processes, the
server-mode barrier, ZeRO-3/FSDP with HF generate refused, generation threads on the rank's CUDA device, the
importance-sampling settings, sleep mode refused, sandbox workers per local rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from tests.train.conftest import REPO, make_config
from tests.train.ddp import ACCELERATE, check_ddp_run, launch_ddp_training
from torl.errors import UserInputError


def test_ddp_two_cpu_processes_with_hf_generate(tiny_model_h32, tmp_path):
    rows = launch_ddp_training(sys.executable, tiny_model_h32, tmp_path / "run")
    check_ddp_run(tmp_path / "run", rows)


@pytest.mark.parametrize("mode,waits", [("server", True), ("colocate", False)])
def test_server_mode_ranks_wait_for_the_weight_push(mode, waits, tmp_path):
    out = tmp_path / "barrier"
    proc = subprocess.run([*ACCELERATE, str(REPO / "tests" / "train" / "barrier_worker.py"), str(out), mode],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "barrier.rank1.json").read_text())
    assert result["world"] == 2
    assert (result["waited_s"] >= 1.5) is waits, result


@pytest.fixture(scope="module")
def tiny_model_h32(tmp_path_factory):
    from torl.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_h32") / "model", seed=0, num_heads=2)


# ------------------------------------------------------------------------------------------ refusals, sizing


@pytest.mark.parametrize("env,refused", [
    ({"ACCELERATE_USE_FSDP": "true"}, "FSDP"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "ZeRO-3"),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, None),
    ({}, None),
])
def test_hf_generate_refused_under_sharded_weights(env, refused):
    from torl.train.trainer import check_generation_sharding

    check_generation_sharding(True, env)  # vLLM: no collective while sampling
    if refused is None:
        check_generation_sharding(False, env)
    else:
        with pytest.raises(UserInputError, match=refused):
            check_generation_sharding(False, env)


def test_build_trainer_refuses_fsdp_with_hf_generate_before_loading(tiny_model, problems_file, tmp_path,
                                                                   monkeypatch):
    """What `accelerate launch --config_file configs/accelerate/fsdp.yaml` sets reaches the check."""
    from torl.train.trainer import build_trainer

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    cfg = make_config(tmp_path / "run", tiny_model, problems_file)
    with pytest.raises(UserInputError, match="FSDP with HF generate"):
        build_trainer(cfg)
    assert not (tmp_path / "run").exists(), "refused before the run directory is written"


def test_generation_threads_run_on_the_ranks_cuda_device(monkeypatch, tiny_tokenizer):
    """CUDA's current device is per thread: the thread that runs the engine's blocking calls must select the
    rank's GPU itself. (torl's CUDA hooks are the GPU boundary, recorded here; an index-less device:
    tests/rollout/test_devices.py.)"""
    import torch

    from torl.rollout import RolloutConfig, devices
    from torl.rollout.backends.base import Generation
    from torl.rollout.backends.batching import BatchingBackend
    from torl.train.rollout_func import run_rollouts_on_device

    current: dict[int, str] = {}
    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    monkeypatch.setattr(devices, "set_cuda_device", lambda i: current.__setitem__(threading.get_ident(), f"cuda:{i}"))
    seen: list[str | None] = []

    class Recording(BatchingBackend):
        tokenizer = tiny_tokenizer

        def generate_batch(self, requests):
            seen.append(current.get(threading.get_ident()))
            eos = tiny_tokenizer.eos_token_id
            return [Generation([eos], [0.0], "eos") for _ in requests]

    run_rollouts_on_device(["a", "b", "c"], backend=Recording(max_batch_size=1), sandbox=None,
                           config=RolloutConfig(max_tool_calls=0), device=torch.device("cuda", 1))
    assert seen and all(d == "cuda:1" for d in seen), seen


def test_importance_sampling_settings_reach_trl(tmp_path, problems_file, tiny_model):
    from torl.train.trainer import build_grpo_config

    default = build_grpo_config(make_config(tmp_path / "a", tiny_model, problems_file), processes=1)
    assert default.vllm_importance_sampling_correction is False  # the paper's on-policy objective
    cfg = make_config(tmp_path / "b", tiny_model, problems_file, "engine.vllm_importance_sampling_correction=true",
                      "engine.vllm_importance_sampling_mode=token_truncate", "engine.vllm_importance_sampling_cap=2")
    args = build_grpo_config(cfg, processes=1)
    assert (args.vllm_importance_sampling_correction, args.vllm_importance_sampling_mode,
            args.vllm_importance_sampling_clip_max) == (True, "token_truncate", 2.0)
    with pytest.raises(UserInputError, match="vllm_importance_sampling_mode"):
        make_config(tmp_path / "c", tiny_model, problems_file, "engine.vllm_importance_sampling_mode=tis")
    with pytest.raises(UserInputError, match="trl.vllm_importance_sampling_mode"):
        make_config(tmp_path / "d", tiny_model, problems_file, "trl.vllm_importance_sampling_mode=token_mask")


@pytest.mark.parametrize("recipe", ["torl_1.5b.yaml", "torl_7b.yaml"])
def test_recipes_generate_with_vllm_on_gpus_without_is_correction(recipe):
    from torl.train.config import read_config_file

    raw, _ = read_config_file(REPO / "configs" / recipe)
    engine = raw["engine"]
    assert engine["vllm"] == "auto" and engine["vllm_mode"] == "colocate"
    assert engine["vllm_importance_sampling_correction"] is False


@pytest.mark.parametrize("recipe", ["torl_1.5b.yaml", "torl_1.5b_reference.yaml"])
def test_1_5b_recipes_kv_cache_holds_the_worst_case_step(recipe):
    """Every sequence of a rank's step at full length fits in the colocated engine's KV cache on an 80 GB GPU (the
    arithmetic written next to the value; too small a cache makes vLLM preempt and recompute)."""
    from torl.train.config import read_config_file

    raw, _ = read_config_file(REPO / "configs" / recipe)
    gib, gpus, block = 2**30, 8, 16
    seqs = raw["grpo"]["prompts_per_step"] * raw["grpo"]["samples_per_prompt"] // gpus
    tokens = -(-(raw["data"]["max_prompt_tokens"] + raw["rollout"]["max_response_tokens"]) // block) * block
    kv_per_token = 28 * 2 * 128 * 2 * 2  # Qwen2.5-Math-1.5B: layers x KV heads x head dim x (K, V) x bf16
    weights, overhead, gpu = 1.54e9 * 2, 2 * gib, 79.2 * gib
    kv = raw["engine"]["vllm_gpu_memory_utilization"] * gpu - weights - overhead
    assert kv >= seqs * tokens * kv_per_token, f"{kv / kv_per_token:.0f} tokens of KV for {seqs * tokens}"


def test_vllm_auto_uses_vllm_only_with_cuda_and_vllm(tmp_path, problems_file, tiny_model, caplog):
    from torl.train.trainer import resolve_use_vllm

    cfg = make_config(tmp_path / "a", tiny_model, problems_file, "engine.vllm=auto")
    assert resolve_use_vllm(cfg, cuda=True, vllm_installed=True) is True
    assert resolve_use_vllm(cfg, cuda=False, vllm_installed=True) is False
    with caplog.at_level("WARNING"):
        assert resolve_use_vllm(cfg, cuda=True, vllm_installed=False) is False
    assert "3-4x longer" in caplog.text
    on = make_config(tmp_path / "b", tiny_model, problems_file, "engine.vllm=true")
    with pytest.raises(UserInputError, match="vLLM is not installed"):
        resolve_use_vllm(on, cuda=True, vllm_installed=False)


def test_sleep_mode_is_refused_with_the_reason(tmp_path, problems_file, tiny_model):
    with pytest.raises(UserInputError, match="trl.vllm_enable_sleep_mode.*wake-up of the KV cache"):
        make_config(tmp_path / "a", tiny_model, problems_file, "trl.vllm_enable_sleep_mode=true")


def test_sandbox_workers_are_shared_among_the_nodes_processes(tmp_path, problems_file, tiny_model, monkeypatch):
    from torl.train.trainer import local_sandbox_workers, make_run_sandbox

    assert local_sandbox_workers(None, cores=96, local_processes=8) == 12
    assert local_sandbox_workers(None, cores=4, local_processes=8) == 1
    assert local_sandbox_workers(None, cores=256, local_processes=1) == 32
    assert local_sandbox_workers(3, cores=96, local_processes=8) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    cfg = make_config(tmp_path / "a", tiny_model, problems_file, "engine.sandbox_workers=null")
    sandbox = make_run_sandbox(cfg)
    try:
        assert sandbox.pool_size == max(1, len(os.sched_getaffinity(0)) // 2)
    finally:
        sandbox.close()
