"""The `torl` section of a veRL config: how the torl_tir agent loop runs (added as `+torl.<key>=<value>`).

veRL's own keys decide sampling (rollout.temperature / top_p, val_kwargs for validation) and the response length
(data.max_response_length); the `torl` keys decide the tool loop: the agent loop's own keys below, and every other
field of `torl.rollout.RolloutConfig` (max_tool_calls, tool_call_budget, observation_style, exec_timeout, ...).
Unknown keys are an error, so a typo cannot go unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torl.rollout.config import RolloutConfig

# RolloutConfig fields that veRL's own config decides, per sample
VERL_DECIDES = {"max_response_tokens": "data.max_response_length", "temperature": "actor_rollout_ref.rollout."
                "temperature (val_kwargs.temperature in validation)", "top_p": "actor_rollout_ref.rollout.top_p"}
LOOP_KEYS = frozenset(f.name for f in fields(RolloutConfig)) - set(VERL_DECIDES)


@dataclass
class LoopSettings:
    """sandbox: "local" (one LocalSandbox per node, shared by the node's agent-loop workers) or the URL of a
        Sandbox Fusion server (`torl sandbox serve` on each node: http://127.0.0.1:8080); see torl/verl/sandbox.py.
    sandbox_pool_size: worker processes of the local sandbox (None: the cores veRL leaves free on the node).
    sandbox_queue_timeout: the longest a call waits for one of the node's sandbox slots, in seconds (apart from
        exec_timeout, which starts once the snippet runs); beyond it the call is a sandbox_error.
    max_failed_share: the share of a step's samples that may fail (dropped by veRL, counted) before the run stops
        with the failures' messages (v1 trainer; v0 stops at the first failure, and a config error such as a
        prompt over prompt_length stops either at once); see torl/verl/failures.py.
    abort_resume_s: how long a round that veRL's server keeps aborting is resumed before the sample fails.
    template: the prompt template applied to the user message's content ("torl": TORL-SPEC §3).
    seed: per-sample sampling seeds (None: the server's own randomness); see torl/verl/agent_loop.py.
    loop: RolloutConfig fields (max_tool_calls = C, tool_call_budget, observation_style, exec_timeout,
        max_concurrent_tool_calls = executions in flight per node, ...).
    """

    sandbox: str = "local"
    sandbox_pool_size: int | None = None
    sandbox_queue_timeout: float = 60.0
    max_failed_share: float = 0.01
    abort_resume_s: float = 600.0
    template: str = "torl"
    seed: int | None = None
    loop: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sandbox_pool_size is not None and (not isinstance(self.sandbox_pool_size, int)
                                                   or self.sandbox_pool_size < 1):
            raise ValueError(f"torl.sandbox_pool_size must be an integer >= 1, got {self.sandbox_pool_size!r}")
        if not (isinstance(self.sandbox_queue_timeout, int | float) and self.sandbox_queue_timeout > 0):
            raise ValueError(f"torl.sandbox_queue_timeout must be > 0 seconds, got {self.sandbox_queue_timeout!r}")
        if not (isinstance(self.max_failed_share, int | float) and 0 <= self.max_failed_share < 1):
            raise ValueError(f"torl.max_failed_share must be a number in [0, 1), got {self.max_failed_share!r}")
        if not (isinstance(self.abort_resume_s, int | float) and self.abort_resume_s >= 0):
            raise ValueError(f"torl.abort_resume_s must be >= 0 seconds, got {self.abort_resume_s!r}")

    @classmethod
    def from_mapping(cls, raw: Mapping | None) -> LoopSettings:
        raw = dict(raw or {})
        own = {f.name for f in fields(cls)} - {"loop"}
        decided = sorted(set(raw) & set(VERL_DECIDES))
        if decided:
            raise ValueError("; ".join(f"torl.{k} is veRL's {VERL_DECIDES[k]}" for k in decided))
        unknown = sorted(set(raw) - own - LOOP_KEYS)
        if unknown:
            raise ValueError(f"veRL config key(s) {', '.join('torl.' + k for k in unknown)} unknown; "
                             f"known: {sorted(own | LOOP_KEYS)}")
        settings = cls(**{k: raw[k] for k in own if k in raw}, loop={k: raw[k] for k in raw if k in LOOP_KEYS})
        settings.rollout_config(max_response_tokens=1, temperature=1.0, top_p=1.0)  # bad values fail here
        return settings

    def rollout_config(self, *, max_response_tokens: int, temperature: float, top_p: float) -> RolloutConfig:
        """torl's RolloutConfig for one sample: the tool loop from here, sampling and length from veRL."""
        return RolloutConfig(**self.loop, max_response_tokens=max_response_tokens, temperature=temperature,
                             top_p=top_p)
