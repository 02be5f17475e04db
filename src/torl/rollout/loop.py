"""The tool-integrated generation loop (TORL-SPEC §3), one asyncio task per sample.

Per sample: generate with the stop marker; if the round stopped there, run the last python block of the round
in the sandbox (a fresh interpreter, or with `interpreter="session"` the sample's own interpreter session, which
keeps the earlier blocks' globals), append the observation, continue. After `max_tool_calls` executions (or, with
`tool_call_budget="rounds"`, rounds generated with the marker: the reference's count) the next round runs without
the stop marker. The response ends at EOS or at `max_response_tokens` (observations count).

Token-exact: the model's sampled ids are kept as they are (mask 1, their logprobs); only the inserted observation
is tokenised, on its own (mask 0, logprob 0.0). Samples never wait for each other: while one sample's code runs,
the others keep generating, and a slow or hanging call costs only its own sample.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from torl.rollout.backends.base import Backend, GenerationRequest
from torl.rollout.config import RolloutConfig
from torl.rollout.observation import extract_code, format_observation, inserted_text
from torl.rollout.result import RolloutResult, ToolCall
from torl.rollout.seeds import derive_seed
from torl.rollout.tokens import decode, encode_plain, encode_prompt, joined_text
from torl.sandbox.base import ExecResult, Sandbox, Session, SessionError, lost_result

log = logging.getLogger(__name__)

Progress = bool | Callable[[int, RolloutResult], None] | None


def run_rollouts(prompts: Sequence[str | Sequence[int]], *, backend: Backend, sandbox: Sandbox | None,
                 config: RolloutConfig | None = None, progress: Progress = None,
                 seeds: Sequence[int] | None = None) -> list[RolloutResult]:
    """Roll out one sample per prompt (repeat a prompt n times for n samples); results in input order.

    prompts: prompt strings (tokenised with the backend's tokenizer) or prompt token ids.
    sandbox: any `torl.sandbox.Sandbox` (may be None when `config.max_tool_calls == 0`).
    progress: True for a tqdm bar, or a callback `(index, result)` called as each sample finishes.
    seeds: one seed per sample (`torl.rollout.seeds.sample_seeds`); round r of sample i is requested with
        `derive_seed(seeds[i], r)`. None: the backend's shared random state (not reproducible under batching).
    Works inside a running event loop too (the run then gets its own loop in a worker thread).
    """
    coro = arun_rollouts(prompts, backend=backend, sandbox=sandbox, config=config, progress=progress, seeds=seeds)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="torl-rollout") as pool:
        return pool.submit(asyncio.run, coro).result()


async def arun_rollouts(prompts: Sequence[str | Sequence[int]], *, backend: Backend, sandbox: Sandbox | None,
                        config: RolloutConfig | None = None, progress: Progress = None,
                        seeds: Sequence[int] | None = None) -> list[RolloutResult]:
    """Async form of `run_rollouts`."""
    config = config or RolloutConfig()
    if config.max_tool_calls > 0 and sandbox is None:
        raise ValueError("a sandbox is needed when max_tool_calls > 0")
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    loop = _Loop(backend, sandbox, config)
    bar = None
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(prompts), desc="rollout", unit="sample", dynamic_ncols=True)
    await backend.open_session()
    tasks = [asyncio.create_task(loop.sample(i, p, None if seeds is None else seeds[i]))
             for i, p in enumerate(prompts)]
    try:
        for done in asyncio.as_completed(tasks):
            index, result = await done
            if bar is not None:
                bar.update(1)
                bar.set_postfix(executions=loop.executions, refresh=False)
            elif callable(progress):
                progress(index, result)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        await backend.close_session()
    return [t.result()[1] for t in tasks]


class _Loop:
    """The per-sample loop, with what all samples of one run share (backend, sandbox gate, config)."""

    def __init__(self, backend: Backend, sandbox: Sandbox | None, config: RolloutConfig) -> None:
        self.backend = backend
        self.tokenizer = backend.tokenizer
        self.sandbox = sandbox
        self.config = config
        limit = config.max_concurrent_tool_calls or getattr(sandbox, "max_concurrency", 8) or 8
        self.gate = asyncio.Semaphore(limit)
        self.executions = 0

    async def sample(self, index: int, prompt: str | Sequence[int], seed: int | None = None
                     ) -> tuple[int, RolloutResult]:
        """One sample; in session mode it owns one interpreter session, closed when the sample ends however it
        ends (finished, failed, cancelled)."""
        state = _SampleState()
        try:
            return await self._sample(index, prompt, seed, state)
        finally:
            if state.session is not None:
                grace = self.config.tool_grace_s
                try:  # bounded: a close that hangs must not hold up the rest of the batch
                    await asyncio.wait_for(state.session.aclose(), grace)
                except TimeoutError:
                    log.warning("closing the interpreter session took over %g s (tool_grace_s); left to the "
                                "sandbox (it ends idle sessions itself)", grace)
                except Exception as e:  # noqa: BLE001 - closing must not replace the sample's own outcome
                    log.warning("closing the interpreter session failed: %s: %s", type(e).__name__, e)

    async def _sample(self, index: int, prompt: str | Sequence[int], seed: int | None, state: _SampleState
                      ) -> tuple[int, RolloutResult]:
        cfg, tok = self.config, self.tokenizer
        if isinstance(prompt, str):
            res = RolloutResult(prompt=prompt, prompt_ids=encode_prompt(tok, prompt))
        else:
            ids = [int(t) for t in prompt]
            res = RolloutResult(prompt=decode(tok, ids, skip_special_tokens=False), prompt_ids=ids)
        ids, mask, logprobs = res.completion_ids, res.mask, res.logprobs
        model_texts: list[str] = []
        pieces: list[str] = []  # the decoded text of each span of ids, in order (res.text without a second decode)
        while True:
            room = cfg.max_response_tokens - len(ids)
            if room <= 0:
                res.finish_reason, res.truncated = "length", True
                break
            spent = res.num_rounds if cfg.tool_call_budget == "rounds" else res.num_executions
            stop = (cfg.stop,) if spent < cfg.max_tool_calls else ()
            round_seed = None if seed is None else derive_seed(seed, res.num_rounds)
            gen = await self.backend.agenerate(GenerationRequest(
                res.prompt_ids + ids, room, stop, cfg.temperature, cfg.top_p, index, res.num_rounds, round_seed))
            res.num_rounds += 1
            finish = gen.finish_reason if len(gen.token_ids) <= room else "length"
            tokens, lps = list(gen.token_ids[:room]), [float(x) for x in gen.logprobs[:room]]
            round_text = decode(tok, tokens)
            if finish == "stop":
                if not stop:
                    raise RuntimeError(f"backend {self.backend.name!r} reported a stop string it was not given")
                if cfg.stop not in round_text:  # the engine dropped the stop text: it is the model's, restore it
                    restored = encode_plain(tok, _missing_marker(round_text, cfg.stop))[: room - len(tokens)]
                    tokens += restored
                    lps += [math.nan] * len(restored)
                    round_text = decode(tok, tokens)
                    if cfg.stop not in round_text:
                        finish = "length"
            ids += tokens
            mask += [1] * len(tokens)
            logprobs += lps
            model_texts.append(round_text)
            pieces.append(round_text)
            if finish == "eos":
                res.finish_reason = "eos"
                break
            if finish == "length" or len(ids) >= cfg.max_response_tokens:
                res.finish_reason, res.truncated = "length", True
                break
            code = extract_code(round_text, stop=cfg.stop, run_blank=cfg.observation_style == "reference")
            if code is None:  # stopped at the marker without a finished block: nothing runs, go on
                continue
            result = await self.execute(code, state)
            res.num_executions += 1
            obs = format_observation(result, cfg.observation_style, fmt=cfg.observation_format)
            obs_ids = encode_plain(tok, inserted_text(round_text, obs, stop=cfg.stop))
            room = cfg.max_response_tokens - len(ids)
            cut = len(obs_ids) > room
            obs_ids = obs_ids[:room]
            ids += obs_ids
            mask += [0] * len(obs_ids)
            logprobs += [0.0] * len(obs_ids)
            res.tool_calls.append(ToolCall(code, result, obs, decode(tok, obs_ids)))
            pieces.append(res.tool_calls[-1].inserted)
            if cut:
                res.finish_reason, res.truncated = "length", True
                break
        res.text = joined_text(tok, pieces, ids)
        res.has_code = any("```python" in t for t in model_texts)
        res.all_executions_ok = all(tc.result.ok for tc in res.tool_calls)
        return index, res

    async def execute(self, code: str, state: _SampleState | None = None) -> ExecResult:
        """Run one snippet (in the sample's session when `interpreter` is "session"); a failing or silent sandbox
        becomes a sandbox_error/timeout result. Raises SessionError when session mode cannot open the sample's
        session (a sandbox without sessions, or its session cap reached): that is a setup error, not the code's."""
        cfg = self.config
        self.executions += 1
        state = state or _SampleState()
        if state.lost is not None:
            return lost_result(state.lost)
        async with self.gate:
            try:  # opening the session and the call share one time bound
                return await asyncio.wait_for(self._call(code, state), cfg.exec_timeout + cfg.tool_grace_s)
            except TimeoutError:
                why = f"no answer from the sandbox within {cfg.exec_timeout + cfg.tool_grace_s:g} s"
                if cfg.interpreter == "session":
                    state.lost = why
                return ExecResult("timeout", reason=why, duration_s=cfg.exec_timeout)
            except SessionError:
                raise
            except Exception as e:  # noqa: BLE001 - the sandbox's failure must not end the other samples
                log.warning("sandbox call failed: %s: %s", type(e).__name__, e)
                return ExecResult("sandbox_error", reason=f"{type(e).__name__}: {e}")

    async def _call(self, code: str, state: _SampleState) -> ExecResult:
        cfg = self.config
        if cfg.interpreter != "session":
            return await self.sandbox.arun(code, timeout=cfg.exec_timeout, memory_mb=cfg.exec_memory_mb)
        if state.session is None:
            state.session = await self._open_session()
        try:
            return await state.session.arun(code, timeout=cfg.exec_timeout, memory_mb=cfg.exec_memory_mb)
        except SessionError as e:  # only a closed session raises; the sample's own is closed only at its end
            return ExecResult("sandbox_error", reason=f"SessionError: {e}")

    async def _open_session(self) -> Session:
        """The sample's session; SessionError (with what to change) when the sandbox cannot open one. An open
        given up on (time bound, cancellation) closes its session once it arrives."""
        opening = asyncio.ensure_future(self.sandbox.asession(memory_mb=self.config.exec_memory_mb))
        try:
            return await asyncio.shield(opening)
        except SessionError as e:
            hints = []
            if "max_sessions" in str(e):
                hints.append("raise the session cap (LocalSandbox(max_sessions=...), `torl sandbox serve "
                             "--max-sessions N`) to at least the samples rolled out at once")
            if "stateless" not in str(e):
                hints.append("use rollout.interpreter=stateless")
            raise SessionError(f"rollout.interpreter=session: the sandbox could not open the sample's interpreter "
                               f"session: {e}" + "".join(f"; {h}" for h in hints)) from e
        except BaseException:
            opening.add_done_callback(_close_late)
            raise


class _SampleState:
    """What one sample holds between its executions: its interpreter session (session mode)."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.lost: str | None = None  # the session stopped answering: later calls say so without trying


def _close_late(opening: asyncio.Future) -> None:
    """Close a session whose opening finished after the sample stopped waiting for it (in a thread: a close
    may block)."""
    if opening.cancelled() or opening.exception() is not None:
        return
    threading.Thread(target=opening.result().close, name="torl-session-close", daemon=True).start()


def _missing_marker(text: str, marker: str) -> str:
    """The part of `marker` not already at the end of `text` (an engine may keep a prefix of the stop text)."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return marker[k:]
    return marker
