"""The openai backend against a real vLLM OpenAI server (vLLM's CPU build, `python -m
vllm.entrypoints.openai.api_server` on loopback, started once for the module): token ids, logprobs against a
transformers forward pass, stop strings kept (also one ending inside a token), finish reasons, seeds, C = 0..3."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.engine_models import vllm_model_dir
from torl.rollout import GenerationRequest, RolloutConfig, build_prompt, make_backend, run_rollouts
from torl.rollout.tokens import decode, encode_prompt, eos_token_ids

from .conftest import check_invariants
from .test_vllm_backend import PROBLEMS, hf_logprobs

pytestmark = pytest.mark.engines

SERVED = "tiny-tir"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The api_server in its own process group (killed with it at the end); its log goes to a file."""
    model, port = vllm_model_dir(), free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "TORCH_COMPILE_DISABLE": "1"}
    log = open(model / "server.log", "w")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--served-model-name",
           SERVED, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--seed", "0",
           "--logprobs-mode", "processed_logprobs", "--no-enable-chunked-prefill", "--max-model-len", "1024"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited ({proc.returncode}): "
                                   f"{(model / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the vLLM server did not answer within 300 s: "
                                   f"{(model / 'server.log').read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def backend(server):
    return make_backend("openai", SERVED, base_url=server, tokenizer=str(vllm_model_dir()))


@pytest.fixture(scope="module")
def hf_model():
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(vllm_model_dir(), dtype=torch.float32).eval()


def ids(backend, problem: str) -> list[int]:
    return encode_prompt(backend.tokenizer, build_prompt(problem))


def generate(backend, requests):
    async def go():
        await backend.open_session()
        try:
            return await asyncio.gather(*(backend.agenerate(r) for r in requests))
        finally:
            await backend.close_session()

    return asyncio.run(go())


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_token_ids_and_logprobs_match_transformers(backend, hf_model, temperature):
    requests = [GenerationRequest(ids(backend, p), 40, (), temperature, seed=i) for i, p in enumerate(PROBLEMS)]
    for r, g in zip(requests, generate(backend, requests), strict=True):
        assert g.token_ids and len(g.token_ids) == len(g.logprobs)
        ref = hf_logprobs(hf_model, r.prompt_ids, g.token_ids, temperature)
        assert max(abs(a - b) for a, b in zip(g.logprobs, ref, strict=True)) < 1e-4


def test_finish_reasons_and_stop_kept(backend):
    tok = backend.tokenizer
    p = ids(backend, PROBLEMS[0])
    eos, stop, inside, length = generate(backend, [
        GenerationRequest(p, 200, (), 0.0),
        GenerationRequest(p, 200, ("```output",), 0.0),
        GenerationRequest(p, 200, ("```outp",), 0.0),
        GenerationRequest(p, 3, ("```output",), 0.0),
    ])
    assert eos.finish_reason == "eos"
    assert eos.token_ids[-1] in eos_token_ids(tok, [tok.convert_tokens_to_ids("<|im_end|>")])
    assert stop.finish_reason == "stop" and stop.stop_text == "```output"
    assert decode(tok, stop.token_ids).endswith("```output")
    assert stop.token_ids == eos.token_ids[: len(stop.token_ids)]
    # a stop ending inside the token "output": the whole token comes back
    assert inside.finish_reason == "stop" and inside.stop_text == "```outp"
    assert inside.token_ids == stop.token_ids and decode(tok, inside.token_ids).endswith("```output")
    assert length.finish_reason == "length" and len(length.token_ids) == 3


def test_seed_decides_the_tokens_whatever_the_batch(backend):
    target = GenerationRequest(ids(backend, PROBLEMS[2]), 30, (), 1.0, seed=99)
    (alone,) = generate(backend, [target])
    others = [GenerationRequest(ids(backend, p), 25, (), 1.0, seed=i) for i, p in enumerate(PROBLEMS)]
    crowded = generate(backend, [*others, target])[-1]
    (other,) = generate(backend, [GenerationRequest(target.prompt_ids, 30, (), 1.0, seed=100)])
    assert alone.token_ids == crowded.token_ids
    assert other.token_ids != alone.token_ids


@pytest.mark.parametrize("c", [0, 1, 2, 3])
def test_rollouts_with_a_real_sandbox(backend, c):
    from torl.sandbox import LocalSandbox

    cfg = RolloutConfig(max_tool_calls=c, max_response_tokens=160, temperature=1.0)
    prompts = [build_prompt(p) for p in PROBLEMS for _ in range(2)]
    with LocalSandbox(pool_size=2) as sandbox:
        results = run_rollouts(prompts, backend=backend, sandbox=sandbox if c else None, config=cfg,
                               seeds=list(range(len(prompts))))
    for r in results:
        check_invariants(r, backend.tokenizer)
        assert r.num_executions <= c and r.num_rounds <= c + 1
    executions = sum(r.num_executions for r in results)
    assert executions == 0 if c == 0 else executions >= len(prompts) // 2
