"""The vllm backend on the real engine (vLLM's CPU build, a tiny local model): token ids, logprobs against a
transformers forward pass, finish reasons, stop strings kept (also one that ends inside a token), per-request
seeds, continuous batching across tool calls, C = 0..3 with a real LocalSandbox, cancellation, bad requests."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest
import torch

from tests.engine_models import vllm_model_dir
from torl.rollout import GenerationRequest, RolloutConfig, build_prompt, devices, run_rollouts
from torl.rollout.backends.vllm_backend import VLLMBackend
from torl.rollout.tokens import decode, encode_prompt, eos_token_ids

from .conftest import check_invariants

pytestmark = pytest.mark.engines

PROBLEMS = ["What is 18 * 73?", "What is 64 + 98?", "What is 49 * 27?", "What is 50 - 56?"]


@pytest.fixture(scope="module")
def backend():
    b = VLLMBackend(vllm_model_dir(), dtype="float32")
    yield b
    b.close()


@pytest.fixture(scope="module")
def hf_model():
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(vllm_model_dir(), dtype=torch.float32).eval()


def prompt_ids(backend, problem: str) -> list[int]:
    return encode_prompt(backend.tokenizer, build_prompt(problem))


def generate(backend, requests):
    async def go():
        return await asyncio.gather(*(backend.agenerate(r) for r in requests))

    return asyncio.run(go())


def hf_logprobs(model, prompt: list[int], completion: list[int], temperature: float) -> list[float]:
    """log p(token) under softmax(logits / T) from one transformers forward pass (T = 1 for greedy)."""
    import torch

    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1: -1].float()
    lps = torch.log_softmax(logits / (temperature or 1.0), dim=-1)
    return lps.gather(1, torch.tensor(completion)[:, None])[:, 0].tolist()


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0])
def test_token_ids_and_logprobs_match_transformers(backend, hf_model, temperature):
    requests = [GenerationRequest(prompt_ids(backend, p), 40, (), temperature, seed=i)
                for i, p in enumerate(PROBLEMS)]
    for r, g in zip(requests, generate(backend, requests), strict=True):
        assert g.token_ids and len(g.token_ids) == len(g.logprobs)
        ref = hf_logprobs(hf_model, r.prompt_ids, g.token_ids, temperature)
        assert max(abs(a - b) for a, b in zip(g.logprobs, ref, strict=True)) < 1e-4
        if temperature == 0.0:  # greedy: every token is the forward pass's argmax
            import torch

            with torch.no_grad():
                logits = hf_model(torch.tensor([r.prompt_ids + g.token_ids])).logits[0]
            argmax = logits[len(r.prompt_ids) - 1: -1].argmax(-1).tolist()
            assert g.token_ids == argmax


def test_finish_reasons_eos_stop_length(backend):
    tok = backend.tokenizer
    ids = prompt_ids(backend, PROBLEMS[0])
    eos, stop, length = generate(backend, [
        GenerationRequest(ids, 200, (), 0.0),
        GenerationRequest(ids, 200, ("```output",), 0.0),
        GenerationRequest(ids, 3, ("```output",), 0.0),
    ])
    eos_ids = eos_token_ids(tok, [tok.convert_tokens_to_ids("<|im_end|>")])
    assert eos.finish_reason == "eos" and eos.token_ids[-1] in eos_ids and eos.stop_text is None
    assert "```output" in decode(tok, eos.token_ids)  # it wrote the marker, but nobody asked to stop there
    assert stop.finish_reason == "stop" and stop.stop_text == "```output"
    text = decode(tok, stop.token_ids)
    assert text.endswith("```output") and text.count("```output") == 1  # kept, as model tokens
    assert stop.token_ids == eos.token_ids[: len(stop.token_ids)]
    assert length.finish_reason == "length" and len(length.token_ids) == 3


def test_stop_that_ends_inside_a_token(backend):
    """"```outp" ends inside the token "output": the whole token is returned, and the rollout engine inserts
    the observation after the overshoot ("ut")."""
    from torl.sandbox import LocalSandbox

    tok = backend.tokenizer
    (g,) = generate(backend, [GenerationRequest(prompt_ids(backend, PROBLEMS[1]), 200, ("```outp",), 0.0)])
    assert g.finish_reason == "stop" and g.stop_text == "```outp"
    assert decode(tok, g.token_ids).endswith("```output") and tok.decode(g.token_ids[-1:]) == "output"
    cfg = RolloutConfig(max_tool_calls=1, max_response_tokens=160, temperature=0.0, stop="```outp")
    with LocalSandbox(pool_size=1) as sandbox:
        (res,) = run_rollouts([build_prompt(PROBLEMS[1])], backend=backend, sandbox=sandbox, config=cfg)
    check_invariants(res, tok)
    assert res.num_executions == 1 and res.tool_calls[0].result.ok
    out = res.tool_calls[0].result.stdout.strip()
    assert f"```output\n{out}\n```\n" in res.text and "```outputut" not in res.text


def test_per_request_seed_decides_the_tokens_whatever_the_batch(backend):
    """Same seed → same tokens alone, among other requests, and in the blocking mode; another seed differs."""
    ids = prompt_ids(backend, PROBLEMS[2])
    target = GenerationRequest(ids, 30, (), 1.0, seed=1234)
    (alone,) = generate(backend, [target])
    others = [GenerationRequest(prompt_ids(backend, p), 20 + 5 * i, (), 1.0, seed=i) for i, p in enumerate(PROBLEMS)]
    crowded = generate(backend, [*others[:2], target, *others[2:]])[2]
    blocking = VLLMBackend(backend.llm, tokenizer=backend.tokenizer, continuous=False)
    batched = generate(blocking, [*others, target])[-1]
    assert blocking.stats.batches == 1
    (other_seed,) = generate(backend, [GenerationRequest(ids, 30, (), 1.0, seed=4321)])
    assert alone.token_ids == crowded.token_ids == batched.token_ids
    assert other_seed.token_ids != alone.token_ids
    assert max(abs(a - b) for a, b in zip(alone.logprobs, crowded.logprobs, strict=True)) < 1e-5


@pytest.mark.parametrize("c", [0, 1, 2, 3])
def test_rollouts_with_a_real_sandbox(backend, c):
    from torl.sandbox import LocalSandbox

    cfg = RolloutConfig(max_tool_calls=c, max_response_tokens=160, temperature=1.0)
    prompts = [build_prompt(p) for p in PROBLEMS for _ in range(2)]
    before = backend.engine_stats.joined
    with LocalSandbox(pool_size=2) as sandbox:
        results = run_rollouts(prompts, backend=backend, sandbox=sandbox if c else None, config=cfg,
                               seeds=list(range(len(prompts))))
    for r in results:
        check_invariants(r, backend.tokenizer)
        assert r.num_executions <= c
        assert r.num_rounds <= c + 1
        assert all(m == 1 for m in r.mask) or c > 0
    executions = sum(r.num_executions for r in results)
    if c == 0:
        assert executions == 0
    else:
        assert executions >= len(prompts) // 2
        assert any(tc.result.ok and tc.result.stdout.strip() for r in results for tc in r.tool_calls)
        # continuous batching: samples back from their tool call joined a batch that was still running
        assert backend.engine_stats.joined > before


def test_cancelled_sample_is_aborted_in_the_engine(backend):
    async def go():
        long = GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 1000, (), 2.0, seed=1)
        steps = backend.engine_stats.steps
        task = asyncio.create_task(backend.agenerate(long))
        while backend.engine_stats.steps < steps + 3:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        short = GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 5, (), 0.0)
        return await backend.agenerate(short)

    assert len(asyncio.run(go()).token_ids) == 5
    assert not backend.engine.has_unfinished_requests()


def test_a_bad_request_fails_alone(backend):
    async def go():
        good = GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 8, (), 0.0)
        too_long = GenerationRequest([5] * 3000, 8)
        return await asyncio.gather(backend.agenerate(good), backend.agenerate(too_long), return_exceptions=True)

    good, bad = asyncio.run(go())
    assert len(good.token_ids) == 8
    assert isinstance(bad, Exception) and "maximum context length is 2048" in str(bad)


def test_engine_thread_makes_the_rank_device_current(backend, monkeypatch):
    """The current CUDA device is per thread: the engine thread sets the rank's (GPU mocked through torl's own
    hooks: CPU machine). An index-less "cuda" (a run not launched as distributed) is the current device of the
    thread that built the backend (here 4), never the engine thread's own (0)."""
    calls = []

    def set_cuda_device(index):
        if not isinstance(index, int):  # torch.cuda.set_device refuses torch.device("cuda")
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{index}")
        calls.append((index, threading.current_thread().name))

    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    monkeypatch.setattr(devices, "current_cuda_index", lambda: 4 if threading.current_thread().name ==
                        "MainThread" else 0)
    monkeypatch.setattr(devices, "set_cuda_device", set_cuda_device)
    for device, index in ((torch.device("cuda:3"), 3), (torch.device("cuda"), 4), ("cuda", 4)):
        b = VLLMBackend(backend.llm, tokenizer=backend.tokenizer, device=device)
        try:
            generate(b, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 4, (), 0.0)])
        finally:
            b.close()
        assert calls[-1] == (index, "torl-vllm-engine")
    blocking = VLLMBackend(backend.llm, tokenizer=backend.tokenizer, device=5, continuous=False)
    generate(blocking, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 4, (), 0.0)])
    assert calls[-1][0] == 5 and calls[-1][1] != threading.current_thread().name
    n = len(calls)
    on_cpu = VLLMBackend(backend.llm, tokenizer=backend.tokenizer, device=torch.device("cpu"))  # trainer on CPU
    generate(on_cpu, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 4, (), 0.0)])
    on_cpu.close()
    assert len(calls) == n


def finishes_within(seconds: float, fn):
    """Run fn() in a daemon thread; fail the test if it still runs after `seconds` (a hang), else return its
    exception (None if it returned)."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still waiting after {seconds} s: the engine thread's error was never handed out"
    return box.get("error")


def rollout(b, n: int = 4, max_tokens: int = 60):
    prompts = [build_prompt(PROBLEMS[i % len(PROBLEMS)]) for i in range(n)]
    cfg = RolloutConfig(max_tool_calls=0, max_response_tokens=max_tokens, temperature=1.0)
    return run_rollouts(prompts, backend=b, sandbox=None, config=cfg, seeds=list(range(n)))


def abort_leftovers(backend, b):
    """Requests the failed backend could not abort would go on being stepped by the shared engine."""
    backend.engine.abort_request([f"{b._prefix}-{i}" for i in range(next(b._ids))])
    assert not backend.engine.has_unfinished_requests()


def test_engine_thread_start_up_error_fails_the_rollout(backend, monkeypatch):
    """_init_thread raising (here: CUDA refusing the device) ends the rollout with the error within seconds,
    and the backend refuses later requests."""
    def broken(index):
        raise RuntimeError("CUDA error: invalid device ordinal (injected)")

    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    monkeypatch.setattr(devices, "set_cuda_device", broken)
    b = VLLMBackend(backend.llm, tokenizer=backend.tokenizer, device=torch.device("cuda:0"))
    error = finishes_within(10, lambda: rollout(b))
    assert isinstance(error, RuntimeError) and "invalid device ordinal" in str(error)
    with pytest.raises(RuntimeError, match="engine thread failed.*invalid device ordinal"):
        generate(b, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 3, (), 0.0)])
    b.close()


def test_engine_thread_abort_error_fails_every_waiting_request(backend, monkeypatch):
    """abort_request raising (a cancelled sample) fails the requests still waiting within seconds."""
    def broken(ids):
        raise RuntimeError("abort failed (injected)")

    b = VLLMBackend(backend.llm, tokenizer=backend.tokenizer)
    monkeypatch.setattr(backend.engine, "abort_request", broken)

    async def go():
        cancelled = asyncio.create_task(b.agenerate(GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 1000, (),
                                                                      1.0, seed=1)))
        other = asyncio.create_task(b.agenerate(GenerationRequest(prompt_ids(backend, PROBLEMS[1]), 1000, (),
                                                                  1.0, seed=2)))
        while b.engine_stats.steps < 2:
            await asyncio.sleep(0.005)
        cancelled.cancel()
        await other

    error = finishes_within(10, lambda: asyncio.run(go()))
    monkeypatch.undo()
    assert isinstance(error, RuntimeError) and "abort failed (injected)" in str(error)
    with pytest.raises(RuntimeError, match="engine thread failed"):
        generate(b, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 3, (), 0.0)])
    b.close()
    abort_leftovers(backend, b)


def test_engine_step_error_fails_the_rollout_and_closes_the_backend(backend, monkeypatch):
    """A step raising once ends the rollout with the error within seconds; the engine's state is then unknown,
    so the backend serves nothing more (a later request fails at once, without a step)."""
    step, steps = backend.engine.step, []

    def flaky():
        steps.append(1)
        if len(steps) == 3:
            raise RuntimeError("engine step failed (injected)")
        return step()

    b = VLLMBackend(backend.llm, tokenizer=backend.tokenizer)
    monkeypatch.setattr(backend.engine, "step", flaky)
    error = finishes_within(10, lambda: rollout(b))
    assert isinstance(error, RuntimeError) and "engine step failed (injected)" in str(error)
    n = len(steps)
    with pytest.raises(RuntimeError, match="engine thread failed"):
        generate(b, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 3, (), 0.0)])
    assert len(steps) == n
    b.close()
    assert not backend.engine.has_unfinished_requests()


def test_closed_backend_refuses_and_keeps_a_given_llm(backend):
    b = VLLMBackend(backend.llm, tokenizer=backend.tokenizer)
    generate(b, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 3, (), 0.0)])
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        generate(b, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 3, (), 0.0)])
    (g,) = generate(backend, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 3, (), 0.0)])
    assert len(g.token_ids) == 3 and not math.isnan(g.logprobs[0])


def outcome_within(seconds: float, future: asyncio.Future):
    """The exception (or result) a future of an idle event loop gets within `seconds`; TimeoutError if none."""
    loop = future.get_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(future, seconds))
    except BaseException as e:  # noqa: BLE001 - handed to the test
        return e
    finally:
        loop.close()


def test_close_is_ordered_against_a_request_being_queued(backend):
    """close() waits for a request that is being queued (agenerate holds `_state`), so the request reaches the
    engine thread before "close" and fails with it, instead of landing after it and waiting forever."""
    b = VLLMBackend(backend.llm, tokenizer=backend.tokenizer)
    generate(b, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 3, (), 0.0)])  # the engine thread runs
    future = asyncio.new_event_loop().create_future()
    with b._state:  # agenerate's critical section: checked usable, now queueing
        closer = threading.Thread(target=b.close, daemon=True)
        closer.start()
        closer.join(0.3)
        assert closer.is_alive() and not b._closed
        b._inbox.put(("add", f"{b._prefix}-late", GenerationRequest(prompt_ids(backend, PROBLEMS[1]), 50, (), 0.0),
                      future))
    closer.join(10)
    assert not closer.is_alive() and b._closed
    error = outcome_within(5, future)
    assert isinstance(error, RuntimeError) and "closed" in str(error)
    assert not backend.engine.has_unfinished_requests()


def test_a_request_queued_after_close_fails(backend):
    """Whatever is still queued behind "close" is failed by the engine thread as it stops."""
    b = VLLMBackend(backend.llm, tokenizer=backend.tokenizer)
    generate(b, [GenerationRequest(prompt_ids(backend, PROBLEMS[0]), 3, (), 0.0)])
    future = asyncio.new_event_loop().create_future()
    with b._state:  # both queued before the engine thread can drain (it drains under `_state`)
        b._inbox.put(("close", "", None, None))
        b._inbox.put(("add", f"{b._prefix}-late", GenerationRequest(prompt_ids(backend, PROBLEMS[1]), 50, (), 0.0),
                      future))
    error = outcome_within(5, future)
    assert isinstance(error, RuntimeError) and "closed before this request reached the engine" in str(error)
    b._thread.join(5)
    b.close()
    assert not backend.engine.has_unfinished_requests()
