"""rollout.interpreter = "session" (issue 20, part 2) with the real LocalSandbox: later blocks of a response see
the names of earlier ones, each sample owns one session that ends with the sample (finished or failed), and
masks, observations and token ids are exactly those of stateless mode."""

import asyncio
import time

import pytest

from torl.errors import UserInputError
from torl.rollout import RolloutConfig, build_prompt, run_rollouts
from torl.rollout.backends.replay import ReplayBackend
from torl.rollout.config import build_rollout_config
from torl.rollout.loop import arun_rollouts
from torl.sandbox import ExecResult, LocalSandbox, Sandbox
from torl.sandbox.base import SessionError
from torl.verl.config import LoopSettings

from .conftest import check_invariants

PROMPT = build_prompt("What is (3 * 4) squared plus 1?")
C3 = [  # three blocks: the second and third use names the first defined
    "Define things.\n```python\nimport math\na = 3 * 4\ndef sq(x):\n    return x * x\nprint(a)\n```\n```output",
    "\nSquare it.\n```python\nb = sq(a)\nprint(b)\n```\n```output",
    "\nAdd one.\n```python\nprint(b + 1, math.isqrt(b))\n```\n```output",
    "\nSo the answer is \\boxed{145}.",
]


def roll(tokenizer, sandbox, scripts, **config):
    backend = ReplayBackend(tokenizer, scripts)
    results = run_rollouts([PROMPT] * len(scripts), backend=backend, sandbox=sandbox,
                           config=RolloutConfig(**config))
    for r in results:
        check_invariants(r, tokenizer, replay=True)
    return results


def live_sessions(sandbox) -> int:
    return 0 if sandbox._sessions is None else len(sandbox._sessions.sessions)


def test_later_blocks_use_names_of_the_first(tokenizer, local_sandbox):
    (r,) = roll(tokenizer, local_sandbox, [C3], max_tool_calls=3, interpreter="session")
    assert [tc.observation for tc in r.tool_calls] == ["12", "144", "145 12"]
    assert r.all_executions_ok and r.finish_reason == "eos"
    (plain,) = roll(tokenizer, local_sandbox, [C3], max_tool_calls=3)  # the paper's stateless mode cannot
    assert [tc.result.status for tc in plain.tool_calls] == ["ok", "error", "error"]
    assert "NameError: name 'sq' is not defined" in plain.tool_calls[1].observation
    assert live_sessions(local_sandbox) == 0  # each sample's session ended with it


def test_session_mode_is_token_exact_with_stateless_mode(tokenizer, local_sandbox):
    scripts = [
        ["```python\nprint(6 * 7)\n```\n```output", "\nThen\n```python\nprint('x' * 600)\n```\n```output",
         "\nDone \\boxed{42}."],
        ["```python\nraise ValueError('no')\n```\n```output", "\nok\n```python\nimport sympy\nprint(sympy.factorint"
         "(360))\n```\n```output", "\n\\boxed{1}"],
        ["No code: \\boxed{3}."],
    ]
    stateless = roll(tokenizer, local_sandbox, scripts, max_tool_calls=3)
    session = roll(tokenizer, local_sandbox, scripts, max_tool_calls=3, interpreter="session")
    for a, b in zip(stateless, session, strict=True):
        assert (a.completion_ids, a.mask, a.logprobs, a.text) == (b.completion_ids, b.mask, b.logprobs, b.text)
        assert [tc.observation for tc in a.tool_calls] == [tc.observation for tc in b.tool_calls]
        assert [tc.inserted for tc in a.tool_calls] == [tc.inserted for tc in b.tool_calls]
    assert len(session[0].tool_calls) == 2 and session[0].tool_calls[1].result.truncated is False


def test_a_timeout_loses_the_sample_session_and_the_model_is_told(tokenizer, local_sandbox):
    script = ["```python\nx = 1\nwhile True: pass\n```\n```output", "\nAgain\n```python\nprint(x)\n```\n```output",
              "\n\\boxed{1}"]
    (r,) = roll(tokenizer, local_sandbox, [script], max_tool_calls=2, interpreter="session", exec_timeout=0.5)
    first, second = r.tool_calls
    assert first.result.status == "timeout" and second.result.extra.get("session_lost")
    assert "SessionLost" in second.observation and "x" not in second.result.stdout
    assert live_sessions(local_sandbox) == 0


def test_sessions_end_when_a_sample_fails(tokenizer, local_sandbox):
    backend = ReplayBackend(tokenizer, [[C3[0]]])  # the second round is not scripted: the sample raises
    with pytest.raises(IndexError):
        run_rollouts([PROMPT], backend=backend, sandbox=local_sandbox,
                     config=RolloutConfig(max_tool_calls=3, interpreter="session"))
    assert live_sessions(local_sandbox) == 0


def test_sessions_end_when_a_sample_is_cancelled(tokenizer, local_sandbox):
    backend = ReplayBackend(tokenizer, [[C3[0], "```python\nimport time\ntime.sleep(30)\n```\n```output"]])

    async def cancel_midway():
        task = asyncio.create_task(arun_rollouts([PROMPT], backend=backend, sandbox=local_sandbox,
                                                 config=RolloutConfig(max_tool_calls=3, interpreter="session")))
        while live_sessions(local_sandbox) == 0 or len(backend.requests) < 2:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert live_sessions(local_sandbox) == 0


def test_a_sandbox_without_sessions_fails_the_rollout_with_a_clear_error(tokenizer):
    """Not a sandbox_error observation per call (the run would go on, training on nothing but failed calls): the
    rollout stops and says which setting to change."""
    class Plain(Sandbox):
        def run(self, code, *, timeout=10.0, memory_mb=None, stdin=None):
            return ExecResult("ok", stdout="1\n")

    with pytest.raises(SessionError, match="cannot hold interpreter sessions") as e:
        roll(tokenizer, Plain(), [C3[:1] + C3[3:]], max_tool_calls=1, interpreter="session")
    assert "rollout.interpreter=session" in str(e.value) and "stateless" in str(e.value)


def test_the_session_cap_fails_the_rollout_and_names_max_sessions(tokenizer):
    with LocalSandbox(pool_size=1, max_sessions=1) as sandbox:
        with pytest.raises(SessionError, match="at most 1 sessions") as e:
            roll(tokenizer, sandbox, [C3, C3], max_tool_calls=3, interpreter="session")
        assert "rollout.interpreter=session" in str(e.value)
        assert "max_sessions" in str(e.value) and "torl sandbox serve --max-sessions" in str(e.value)
        assert live_sessions(sandbox) == 0  # the sample that got the one session closed it


def test_opening_the_session_is_inside_the_time_bound(tokenizer):
    """A session that takes longer to open than exec_timeout + tool_grace_s is a timeout (and the sample's later
    calls are told the session is lost); the session, once opened, is closed."""
    opened = []

    class SlowToOpen(LocalSandbox):
        def session(self, *, memory_mb=None):
            time.sleep(3.0)
            opened.append(super().session(memory_mb=memory_mb))
            return opened[-1]

    script = ["```python\nx = 1\n```\n```output", "\nAgain\n```python\nprint(x)\n```\n```output", "\n\\boxed{1}"]
    async def main(sandbox):
        start = time.monotonic()
        (r,) = await arun_rollouts([PROMPT], backend=ReplayBackend(tokenizer, [script]), sandbox=sandbox,
                                   config=RolloutConfig(max_tool_calls=2, interpreter="session", exec_timeout=0.5,
                                                        tool_grace_s=0.5))
        assert time.monotonic() - start < 2.5
        first, second = r.tool_calls
        assert first.result.status == "timeout" and "within 1 s" in first.result.reason
        assert second.result.extra.get("session_lost")
        deadline = time.monotonic() + 20
        while not (opened and opened[0].closed) and time.monotonic() < deadline:  # the late session is closed
            await asyncio.sleep(0.05)
        assert len(opened) == 1 and opened[0].closed and live_sessions(sandbox) == 0

    with SlowToOpen(pool_size=1) as sandbox:
        asyncio.run(main(sandbox))


def test_a_stuck_session_close_does_not_hold_up_the_batch(tokenizer):
    opened = []

    class StuckClose(LocalSandbox):
        def session(self, *, memory_mb=None):
            session = super().session(memory_mb=memory_mb)
            opened.append(session)

            async def never():
                await asyncio.Event().wait()

            session.aclose = never
            return session

    with StuckClose(pool_size=1) as sandbox:
        start = time.monotonic()
        (r,) = roll(tokenizer, sandbox, [C3], max_tool_calls=3, interpreter="session", tool_grace_s=1.0)
        assert time.monotonic() - start < 10
        assert [tc.observation for tc in r.tool_calls] == ["12", "144", "145 12"]
        assert len(opened) == 1
        opened[0].close()


def test_interpreter_is_validated():
    with pytest.raises(ValueError, match="interpreter must be one of"):
        RolloutConfig(interpreter="jupyter")


def test_the_verl_loop_takes_the_interpreter_from_its_torl_section():
    settings = LoopSettings.from_mapping({"interpreter": "session", "max_tool_calls": 3})
    config = settings.rollout_config(max_response_tokens=64, temperature=1.0, top_p=1.0)
    assert (config.interpreter, config.max_tool_calls) == ("session", 3)
    with pytest.raises(ValueError, match="interpreter must be one of"):
        LoopSettings.from_mapping({"interpreter": "kernel"})


def test_train_eval_and_rollout_configs_take_the_interpreter():
    """`rollout.interpreter=session` as `torl train`, `torl eval` and `torl rollout` take overrides; a bad value names
    the key."""
    assert build_rollout_config(None, ["rollout.interpreter=session"]).interpreter == "session"
    assert build_rollout_config(None, [], flags={"interpreter": "session"}).interpreter == "session"
    with pytest.raises(UserInputError, match="rollout.interpreter"):
        build_rollout_config(None, ["rollout.interpreter=kernel"])
