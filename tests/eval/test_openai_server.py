"""`torl eval --backend openai` against an OpenAI-compatible completions server on loopback (a scripted stand-in
for `vllm serve`: the remote engine is the only thing faked), with the real LocalSandbox."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from torl.cli import main

SCRIPTS = {
    "What is 6 * 7?": ["Compute.\n```python\nprint(6 * 7)\n```\n```output", "\\boxed{42}"],
    "What is 9 - 10?": ["\\boxed{1}"],
}
STOP = "```output"


@pytest.fixture
def server(tokenizer):
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen: list[dict] = []

    async def models(request):
        return JSONResponse({"object": "list", "data": [{"id": "served-model", "object": "model"}]})

    async def completions(request):
        body = await request.json()
        seen.append(body)
        context = tokenizer.decode(body["prompt"])
        problem = next(p for p in SCRIPTS if f"\n{p}\nAssistant:" in context)
        rounds = SCRIPTS[problem]
        round_index = context.count(STOP)  # each earlier round ended at the marker
        text = rounds[round_index]
        stop = body.get("stop") or []
        if STOP in stop and STOP in text:
            text, reason, matched = text[: text.index(STOP) + len(STOP)], "stop", STOP
        else:
            text, reason, matched = text + tokenizer.eos_token, "stop", None
        ids = tokenizer.encode(text, add_special_tokens=False)
        choice = {
            "text": text,
            "token_ids": ids,
            "logprobs": {"token_logprobs": [-0.1] * len(ids)},
            "finish_reason": reason,
            "stop_reason": matched,
        }
        return JSONResponse({"choices": [choice]})

    app = Starlette(
        routes=[Route("/v1/models", models), Route("/v1/completions", completions, methods=["POST"])]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    yield f"http://127.0.0.1:{port}/v1", seen
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_eval_through_openai_server(tmp_path, tokenizer, server, capsys):
    url, seen = server
    tok_dir = tmp_path / "tok"
    tokenizer.save_pretrained(tok_dir)
    bench = tmp_path / "api.jsonl"
    bench.write_text(
        json.dumps({"id": "a", "problem": "What is 6 * 7?", "answer": "42"})
        + "\n"
        + json.dumps({"id": "b", "problem": "What is 9 - 10?", "answer": "-1"})
        + "\n"
    )
    out = tmp_path / "out"
    argv = ["eval", "--backend", "openai", "--model", "served-model", "--base-url", url, "--tokenizer", str(tok_dir),
            "--benchmarks", str(bench), "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())["benchmarks"]["api"]
    assert res["accuracy"] == 0.5 and res["code_ratio"] == 0.5 and res["code_pass_ratio"] == 1.0
    records = {
        json.loads(x)["problem_id"]: json.loads(x)
        for x in (out / "samples" / "api.jsonl").read_text().splitlines()
    }
    assert records["a"]["tool_calls"][0]["observation"].strip() == "42" and records["a"]["correct"] is True
    assert records["b"]["pred"] == "1" and records["b"]["correct"] is False
    # the server got the served name, greedy decoding, the stop marker in round 1 and none after the execution
    assert {b["model"] for b in seen} == {"served-model"} and {b["temperature"] for b in seen} == {0.0}
    first_rounds = [b for b in seen if STOP not in tokenizer.decode(b["prompt"])]
    assert len(first_rounds) == 2 and all(b["stop"] == [STOP] for b in first_rounds)
    assert [b.get("stop") for b in seen if STOP in tokenizer.decode(b["prompt"])] == [None]
    assert "| api | 2 | 1 | 50.0 |" in capsys.readouterr().out
