"""The `torl_tir` veRL agent loop: torl's tool-integrated rollout engine, one veRL sample per instance.

veRL (0.9.1) builds one instance per sample and awaits `run(sampling_params, **dataset_columns)`. The loop here
is `torl.rollout.arun_rollouts` itself (the code behind `torl train` and `torl eval`): generate with the stop
marker, run the round's last python block in the sandbox, insert the observation, go on, token-exact. Only the
transport differs: `VerlServerBackend` speaks to veRL's server handle.

Prompt: the TORL template (TORL-SPEC §3) applied to the content of the sample's user message, as the reference
trainer did (its system message is ignored). A user message that still starts with the template's instruction
line (files written by older torl versions) has that line removed first, so it never appears twice.

Sandbox: one per worker process, shared by every sample the process runs, started on first use and closed at
exit: a LocalSandbox, or a client of the Sandbox Fusion server named by `torl.sandbox` (`torl sandbox serve`).

Seeds (`torl.seed`, optional): veRL's v1 trainer passes each of the n samples of a prompt its `session_id`, so a
sample's seed is derive_seed(seed, global step, index, session_id) and its tokens do not depend on scheduling.
Without a session_id (the v0 worker, which gives the n copies the same `index` and `uid`) no seed is sent, since
a seed from what it gives would make the n samples of a group identical.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput

from torl.rollout import arun_rollouts, build_prompt
from torl.rollout.result import RolloutResult
from torl.rollout.seeds import derive_seed
from torl.rollout.templates import TIR_INSTRUCTION
from torl.rollout.tokens import encode_prompt, eos_token_ids
from torl.sandbox.base import Sandbox
from torl.verl.backend import VerlServerBackend
from torl.verl.config import LoopSettings

log = logging.getLogger(__name__)

STDOUT_HEAD_CHARS = 200  # how much of a call's stdout travels with the sample (the reward only needs "any?")

_sandboxes: dict[tuple, Sandbox] = {}
_sandboxes_lock = threading.Lock()


def process_sandbox(spec: str, pool_size: int | None = None) -> Sandbox:
    """The sandbox of this process for `spec` ("local" or a Sandbox Fusion URL): built once, closed at exit."""
    key = (spec, pool_size)
    with _sandboxes_lock:
        box = _sandboxes.get(key)
        if box is None:
            from torl.sandbox import make_sandbox

            kwargs = {"pool_size": pool_size} if spec == "local" and pool_size else {}
            box = _sandboxes[key] = make_sandbox(spec, **kwargs)
            if len(_sandboxes) == 1:
                atexit.register(close_process_sandboxes)
        return box


def close_process_sandboxes() -> None:
    with _sandboxes_lock:
        boxes = list(_sandboxes.values())
        _sandboxes.clear()
    for box in boxes:
        try:
            box.close()
        except Exception as e:  # noqa: BLE001 - closing at exit must not raise
            log.warning("closing sandbox %r: %s", box, e)


@lru_cache(maxsize=8)
def _generation_eos(model_path: str) -> tuple[int, ...]:
    """EOS ids of a model's generation_config (vLLM stops on them too); () when it cannot be read."""
    try:
        from transformers import GenerationConfig

        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except Exception:  # noqa: BLE001 - no generation config (or a remote path): the tokenizer's EOS is used
        return ()
    if eos is None:
        return ()
    return tuple(int(i) for i in ([eos] if isinstance(eos, int) else eos))


def user_content(messages: Sequence[Mapping[str, Any]]) -> str:
    """The problem text of a sample: its last user message, without a leading TORL instruction line."""
    users = [m.get("content") for m in messages if m.get("role") == "user"]
    if not users or not isinstance(users[-1], str):
        raise ValueError(f"raw_prompt has no user message with text content: {list(messages)!r:.300}")
    content = users[-1]
    prefix = TIR_INSTRUCTION + "\n"
    return content[len(prefix):] if content.startswith(prefix) else content


class TorlTIRAgentLoop(AgentLoopBase):
    """veRL agent loop "torl_tir" (see the module docstring). Settings: the `torl` section of the veRL config."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.settings = LoopSettings.from_mapping(self.config.get("torl"))
        self.prompt_length = int(self.rollout_config.prompt_length)
        self.response_length = int(self.rollout_config.response_length)
        model_path = str(self.config.actor_rollout_ref.model.path)
        self.eos_ids = eos_token_ids(self.tokenizer, _generation_eos(model_path))

    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        problem = user_content(list(kwargs["raw_prompt"]))
        prompt_ids = encode_prompt(self.tokenizer, build_prompt(problem, self.settings.template, self.tokenizer))
        if len(prompt_ids) > self.prompt_length:
            raise ValueError(
                f"sample {_plain(kwargs.get('data_source'))!r} index {_plain(kwargs.get('index'))!r}: the prompt is "
                f"{len(prompt_ids)} tokens, over actor_rollout_ref.rollout.prompt_length={self.prompt_length}; "
                f"filter the data (torl data build --tokenizer MODEL) or raise data.max_prompt_length")
        backend = VerlServerBackend(self.server_manager, self.tokenizer, request_id=uuid4().hex,
                                    eos_ids=self.eos_ids, sampling_params=sampling_params,
                                    priority=int(kwargs.get("priority", 0) or 0))
        config = self.settings.rollout_config(
            max_response_tokens=self.response_length, temperature=float(sampling_params.get("temperature", 1.0)),
            top_p=float(sampling_params.get("top_p", 1.0)))
        sandbox = (process_sandbox(self.settings.sandbox, self.settings.sandbox_pool_size)
                   if config.max_tool_calls > 0 else None)
        seeds = None
        if self.settings.seed is not None and kwargs.get("session_id") is not None:
            seeds = [derive_seed(self.settings.seed, _plain(kwargs.get("global_steps")), _plain(kwargs.get("index")),
                                 _plain(kwargs["session_id"]))]
        start = time.perf_counter()
        [res] = await arun_rollouts([prompt_ids], backend=backend, sandbox=sandbox, config=config, seeds=seeds)
        wall = time.perf_counter() - start
        tool_s = sum(tc.result.duration_s for tc in res.tool_calls)
        steps = [s for s in backend.global_steps if s is not None]
        extra = {
            "tool_calls": [{"status": tc.result.status, "stdout": tc.result.stdout[:STDOUT_HEAD_CHARS]}
                           for tc in res.tool_calls],
            "num_executions": res.num_executions,
            "has_code": res.has_code,
            "finish_reason": res.finish_reason,
            "truncated": res.truncated,
            "turn_scores": [],
            "tool_rewards": [],
            "min_global_steps": min(steps) if steps else None,
            "max_global_steps": max(steps) if steps else None,
        }
        return AgentLoopOutput(
            prompt_ids=res.prompt_ids,
            response_ids=res.completion_ids,
            response_mask=res.mask,
            response_logprobs=response_logprobs(res, requested=bool(sampling_params.get("logprobs"))),
            num_turns=1 + res.num_rounds + len(res.tool_calls),  # user, each generation round, each tool answer
            metrics={"generate_sequences": max(0.0, wall - tool_s), "tool_calls": tool_s},
            extra_fields=extra,
        )


def _plain(value: Any) -> Any:
    """A numpy/torch scalar as a Python value (seeds hash their parts' text)."""
    return value.item() if hasattr(value, "item") else value


def response_logprobs(res: RolloutResult, *, requested: bool) -> list[float] | None:
    """The sample's logprobs for veRL: the sampled ones on model tokens, 0.0 on observation tokens (masked out
    of every loss), or None when the server was not asked for logprobs. Never NaN: a model token without a
    real logprob (only possible if the server dropped a stop text the engine then restored) is an error, since
    a batch cannot mix samples with and without logprobs."""
    if not requested:
        return None
    bad = [i for i, (m, lp) in enumerate(zip(res.mask, res.logprobs, strict=True)) if m and math.isnan(lp)]
    if bad:
        raise RuntimeError(f"{len(bad)} model token(s) came back without a logprob (first at response position "
                           f"{bad[0]}); the server must keep the stop text (include_stop_str_in_output)")
    return list(res.logprobs)
