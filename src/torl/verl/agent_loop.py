"""The `torl_tir` veRL agent loop: torl's tool-integrated rollout loop, one veRL sample per instance.

veRL (0.9.1) builds one instance per sample and awaits `run(sampling_params, **dataset_columns)`. The loop here
is `torl.rollout.arun_rollouts` itself (the code behind `torl train` and `torl eval`): generate with the stop
marker, run the round's last python block in the sandbox, insert the observation, go on, token-exact. Only the
transport differs: `VerlServerBackend` speaks to veRL's server handle.

Prompt: the TORL template (TORL-SPEC §3) applied to the content of the sample's user message, as the reference
trainer did (its system message is ignored). A user message that still starts with the template's instruction
line (files written by older torl versions) has that line removed first, so it never appears twice.

Sandbox: one per node, shared by every worker process of the node (`torl/verl/sandbox.py`): a LocalSandbox sized
to the cores veRL leaves free, or a client of the node's Sandbox Fusion server named by `torl.sandbox`, behind a
node-wide bound on executions (`torl.max_concurrent_tool_calls`) whose queueing does not count against
`exec_timeout`. Each tool call's status and queue wait travel with the sample.

Failures: a failed sample raises `SampleFailed` naming the sample (data source, index, uid, session); on veRL's
v1 trainer it is also recorded for torl's replay buffer, which counts and bounds failures per step
(`torl/verl/failures.py`). Aborted rounds are resumed by the backend (`torl/verl/backend.py`); each sample
records the range of policy versions (`min_global_steps`, `max_global_steps`) it was generated under.

Seeds (`torl.seed`, optional): veRL's v1 trainer passes each of the n samples of a prompt its `session_id`, so a
sample's seed is derive_seed(seed, global step, index, session_id) and its tokens do not depend on scheduling.
Without a session_id (the v0 worker, which gives the n copies the same `index` and `uid`) no seed is sent, since
a seed from what it gives would make the n samples of a group identical.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
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
from torl.verl.backend import VerlServerBackend
from torl.verl.config import LoopSettings
from torl.verl.failures import PromptTooLong, SampleFailed, failure_kind, report_failure, sample_name
from torl.verl.sandbox import node_sandbox, pool_size_for

log = logging.getLogger(__name__)

STDOUT_HEAD_CHARS = 200  # how much of a call's stdout travels with the sample (the reward only needs "any?")


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
        self.use_v1 = bool(self.config.trainer.get("use_v1", True))  # veRL 0.9.1's default

    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        """One sample; a failure is recorded (v1) and raised as SampleFailed naming the sample."""
        try:
            return await self._run(sampling_params, **kwargs)
        except Exception as e:
            await report_failure(e, kwargs, use_v1=self.use_v1)
            raise SampleFailed(f"torl_tir {sample_name(kwargs)}: {type(e).__name__}: {e}", failure_kind(e)) from e

    async def sandbox(self):
        """The node's sandbox (see torl/verl/sandbox.py), sized to the cores veRL leaves free unless set."""
        s = self.settings
        pool = s.sandbox_pool_size or pool_size_for(self.config, len(os.sched_getaffinity(0)))
        return await node_sandbox(s.sandbox, pool_size=pool, max_concurrent=s.loop.get("max_concurrent_tool_calls"),
                                  queue_timeout_s=s.sandbox_queue_timeout)

    async def _run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        problem = user_content(list(kwargs["raw_prompt"]))
        prompt_ids = encode_prompt(self.tokenizer, build_prompt(problem, self.settings.template, self.tokenizer))
        if len(prompt_ids) > self.prompt_length:
            raise PromptTooLong(
                f"the prompt is {len(prompt_ids)} tokens, over actor_rollout_ref.rollout.prompt_length="
                f"{self.prompt_length}; filter the data (torl data build --tokenizer MODEL) or raise "
                f"data.max_prompt_length")
        backend = VerlServerBackend(self.server_manager, self.tokenizer, request_id=uuid4().hex,
                                    eos_ids=self.eos_ids, sampling_params=sampling_params,
                                    priority=int(kwargs.get("priority", 0) or 0),
                                    abort_resume_s=self.settings.abort_resume_s)
        config = self.settings.rollout_config(
            max_response_tokens=self.response_length, temperature=float(sampling_params.get("temperature", 1.0)),
            top_p=float(sampling_params.get("top_p", 1.0)))
        sandbox = None
        if config.max_tool_calls > 0:
            sandbox = await self.sandbox()
            # the engine's own guard around a call must also cover the node's queue (bounded on its own)
            config = dataclasses.replace(config, tool_grace_s=config.tool_grace_s + self.settings.sandbox_queue_timeout)
        seeds = None
        if self.settings.seed is not None and kwargs.get("session_id") is not None:
            seeds = [derive_seed(self.settings.seed, _plain(kwargs.get("global_steps")), _plain(kwargs.get("index")),
                                 _plain(kwargs["session_id"]))]
        start = time.perf_counter()
        [res] = await arun_rollouts([prompt_ids], backend=backend, sandbox=sandbox, config=config, seeds=seeds)
        wall = time.perf_counter() - start
        tool_s = sum(tc.result.duration_s for tc in res.tool_calls)
        steps = backend.global_steps
        extra = {
            "tool_calls": [{"status": tc.result.status, "stdout": tc.result.stdout[:STDOUT_HEAD_CHARS],
                            "queue_s": float(tc.result.extra.get("queue_s", 0.0)),
                            "queue_timeout": bool(tc.result.extra.get("queue_timeout", False))}
                           for tc in res.tool_calls],
            "num_executions": res.num_executions,
            "has_code": res.has_code,
            "finish_reason": res.finish_reason,
            "truncated": res.truncated,
            "aborts": backend.aborts,
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
