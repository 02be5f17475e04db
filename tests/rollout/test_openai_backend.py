"""OpenAIBackend against a stand-in for `vllm serve` on loopback (the remote engine is the only thing faked; it
answers like vLLM's /v1/completions: all sampled ids as "token_id:N", stop text per include_stop_str_in_output,
EOS among the ids), with the real LocalSandbox."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from torl.rollout import GenerationRequest, RolloutConfig, build_prompt, make_backend, run_rollouts
from torl.rollout.backends.openai_backend import parse_completion
from torl.rollout.backends.replay import ReplayBackend, replay_logprob

from .conftest import check_invariants

STOP = "```output"
SCRIPTS = {f"What is {k} * 3?": [f"Compute.\n```python\nprint({k} * 3)\n```\n{STOP}", f"\\boxed{{{k * 3}}}"]
           for k in range(8)}


def _script(tokenizer):
    def script(request: GenerationRequest):
        context = tokenizer.decode(request.prompt_ids)
        problem = next(p for p in SCRIPTS if f"\n{p}\nAssistant:" in context)
        return SCRIPTS[problem][context.count(STOP)]  # every earlier round ended at the marker
    return script


@pytest.fixture
def fake_vllm(tokenizer):
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    state = {"bodies": [], "delay_s": 0.0, "fail": 0, "fail_status": 503, "strings": False, "in_flight": 0,
             "max_in_flight": 0}
    model = ReplayBackend(tokenizer, _script(tokenizer))

    async def completions(request):
        body = await request.json()
        state["bodies"].append(body)
        if state["fail"]:
            state["fail"] -= 1
            return JSONResponse({"error": {"message": "busy"}}, status_code=state["fail_status"])
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        await asyncio.sleep(state["delay_s"])
        state["in_flight"] -= 1
        gen = model.generate(GenerationRequest(body["prompt"], body["max_tokens"], tuple(body.get("stop") or ())))
        text = tokenizer.decode(gen.token_ids, skip_special_tokens=True)
        if gen.finish_reason == "stop" and not body.get("include_stop_str_in_output"):
            text = text[: text.index(gen.stop_text)]
        as_ids = body.get("return_tokens_as_token_ids") and not state["strings"]
        tokens = [f"token_id:{t}" if as_ids else tokenizer.decode([t]) for t in gen.token_ids]
        choice = {"index": 0, "text": text, "finish_reason": "length" if gen.finish_reason == "length" else "stop",
                  "stop_reason": gen.stop_text,
                  "logprobs": {"tokens": tokens, "token_logprobs": gen.logprobs, "text_offset": [],
                               "top_logprobs": [{tok: lp} for tok, lp in zip(tokens, gen.logprobs, strict=True)]}}
        return JSONResponse({"id": "cmpl-1", "object": "text_completion", "model": body["model"],
                             "choices": [choice], "usage": {"prompt_tokens": len(body["prompt"])}})

    app = Starlette(routes=[Route("/v1/completions", completions, methods=["POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", state
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def _backend(url, tokenizer, **kw):
    return make_backend("openai", "served", base_url=url, tokenizer=tokenizer, retry_delay_s=0.01, **kw)


def test_rollouts_through_the_server(fake_vllm, tokenizer, local_sandbox):
    url, state = fake_vllm
    prompts = [build_prompt(p) for p in SCRIPTS]
    results = run_rollouts(prompts, backend=_backend(url, tokenizer), sandbox=local_sandbox, config=RolloutConfig())
    for k, r in enumerate(results):
        check_invariants(r, tokenizer, replay=True)
        assert r.finish_reason == "eos" and r.completion_ids[-1] == tokenizer.eos_token_id
        assert [tc.observation for tc in r.tool_calls] == [str(k * 3)]
        assert r.text.endswith(f"```output\n{k * 3}\n```\n\\boxed{{{k * 3}}}")
        assert all(lp == replay_logprob(t) for t, lp, m in zip(r.completion_ids, r.logprobs, r.mask, strict=True)
                   if m)
    bodies = state["bodies"]
    assert len(bodies) == 16 and all(isinstance(t, int) for b in bodies for t in b["prompt"])
    first = [b for b in bodies if STOP not in tokenizer.decode(b["prompt"])]
    assert len(first) == 8 and all(b["stop"] == [STOP] for b in first)
    assert all("stop" not in b for b in bodies if b not in first)  # C used up: no stop string
    assert all(b["return_tokens_as_token_ids"] and b["include_stop_str_in_output"] and b["logprobs"] == 1
               and b["top_k"] == -1 and b["model"] == "served" for b in bodies)


def test_requests_run_concurrently(fake_vllm, tokenizer, local_sandbox):
    url, state = fake_vllm
    state["delay_s"] = 0.4
    start = time.monotonic()
    results = run_rollouts([build_prompt(p) for p in SCRIPTS], backend=_backend(url, tokenizer),
                           sandbox=local_sandbox, config=RolloutConfig())
    elapsed = time.monotonic() - start
    assert all(r.num_executions == 1 for r in results)
    assert state["max_in_flight"] >= 6 and elapsed < 16 * 0.4 / 3  # sequential would take 6.4 s
    state["delay_s"] = 0.05
    backend = _backend(url, tokenizer, max_concurrency=2)
    run_rollouts([build_prompt(p) for p in SCRIPTS][:4], backend=backend, sandbox=local_sandbox,
                 config=RolloutConfig())
    state["max_in_flight"] = 0
    run_rollouts([build_prompt(p) for p in SCRIPTS][:4], backend=backend, sandbox=local_sandbox,
                 config=RolloutConfig())
    assert state["max_in_flight"] == 2


def test_retries_then_clear_errors(fake_vllm, tokenizer, local_sandbox):
    url, state = fake_vllm
    prompt = [build_prompt("What is 1 * 3?")]
    state["fail"] = 2
    (r,) = run_rollouts(prompt, backend=_backend(url, tokenizer), sandbox=local_sandbox, config=RolloutConfig())
    assert r.tool_calls[0].observation == "3"
    state["fail"], state["fail_status"] = 1, 400
    with pytest.raises(RuntimeError, match="answered 400"):
        run_rollouts(prompt, backend=_backend(url, tokenizer), sandbox=local_sandbox, config=RolloutConfig())
    state["strings"] = True
    with pytest.raises(RuntimeError, match="return_tokens_as_token_ids"):
        run_rollouts(prompt, backend=_backend(url, tokenizer), sandbox=local_sandbox, config=RolloutConfig())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(RuntimeError, match="cannot reach"):
        run_rollouts(prompt, backend=_backend(dead, tokenizer, retries=1), sandbox=local_sandbox,
                     config=RolloutConfig())


def test_parse_completion_variants():
    req = GenerationRequest([1], 10, (STOP,))
    eos = parse_completion({"choices": [{"token_ids": [5, 0], "finish_reason": "stop", "stop_reason": None,
                                         "logprobs": {"token_logprobs": [-1.0, None]}}]}, req)
    assert (eos.token_ids, eos.finish_reason, eos.logprobs[0]) == ([5, 0], "eos", -1.0)
    assert eos.logprobs[1] != eos.logprobs[1]  # NaN: not reported
    stop = parse_completion({"choices": [{"token_ids": [7], "finish_reason": "stop", "matched_stop": STOP}]}, req)
    assert (stop.finish_reason, stop.stop_text, stop.logprobs[0] != stop.logprobs[0]) == ("stop", STOP, True)
    length = parse_completion({"choices": [{"logprobs": {"tokens": ["token_id:3"], "token_logprobs": [-0.5]},
                                            "finish_reason": "length"}]}, req)
    assert (length.token_ids, length.finish_reason) == ([3], "length")
    with pytest.raises(RuntimeError, match="malformed"):
        parse_completion({"error": "x"}, req)
    with pytest.raises(RuntimeError, match="finish_reason"):
        parse_completion({"choices": [{"token_ids": [1], "finish_reason": "abort"}]}, req)
