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
    """sandbox: "local" (a LocalSandbox per agent-loop worker process, started on first use and closed at exit)
        or the URL of a Sandbox Fusion server (`torl sandbox serve` on each node: http://127.0.0.1:8080).
    sandbox_pool_size: worker processes of the local sandbox (None: its default).
    template: the prompt template applied to the user message's content ("torl": TORL-SPEC §3).
    seed: per-sample sampling seeds (None: the server's own randomness); see torl/verl/agent_loop.py.
    loop: RolloutConfig fields (max_tool_calls = C, tool_call_budget, observation_style, exec_timeout, ...).
    """

    sandbox: str = "local"
    sandbox_pool_size: int | None = None
    template: str = "torl"
    seed: int | None = None
    loop: dict[str, Any] = field(default_factory=dict)

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
