"""The `torl` section of a veRL config: how the torl_tir agent loop runs (added as `+torl.<key>=<value>`).

veRL's own keys decide sampling (temperature, top_p), lengths (rollout.prompt_length / response_length) and the
number of samples; these keys decide the tool loop. Unknown keys are an error, so a typo cannot go unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from torl.rollout.config import RolloutConfig


@dataclass(frozen=True)
class LoopSettings:
    """max_tool_calls: C (TORL-SPEC §3; the paper's run: 1).
    sandbox: "local" (a LocalSandbox per agent-loop worker process, started on first use and closed at exit)
        or the URL of a Sandbox Fusion server (`torl sandbox serve` on each node: http://127.0.0.1:8080).
    sandbox_pool_size: worker processes of the local sandbox (None: its default).
    template: the prompt template applied to the user message's content ("torl": TORL-SPEC §3).
    seed: per-sample sampling seeds (None: the server's own randomness); see torl/verl/agent_loop.py.
    observation_style, exec_timeout, exec_memory_mb, tool_grace_s, max_concurrent_tool_calls, stop: as in
        `torl.rollout.RolloutConfig`.
    """

    max_tool_calls: int = 1
    sandbox: str = "local"
    sandbox_pool_size: int | None = None
    template: str = "torl"
    observation_style: str = "torl"
    exec_timeout: float = 10.0
    exec_memory_mb: int | None = None
    tool_grace_s: float = 30.0
    max_concurrent_tool_calls: int | None = None
    stop: str = "```output"
    seed: int | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping | None) -> LoopSettings:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"veRL config key(s) {', '.join('torl.' + k for k in unknown)} unknown; "
                             f"known: {sorted(known)}")
        return cls(**raw)

    def rollout_config(self, *, max_response_tokens: int, temperature: float, top_p: float) -> RolloutConfig:
        """torl's RolloutConfig for one sample: the tool loop from here, sampling and length from veRL."""
        return RolloutConfig(
            max_tool_calls=self.max_tool_calls, max_response_tokens=max_response_tokens,
            temperature=temperature, top_p=top_p, stop=self.stop, observation_style=self.observation_style,
            exec_timeout=self.exec_timeout, exec_memory_mb=self.exec_memory_mb, tool_grace_s=self.tool_grace_s,
            max_concurrent_tool_calls=self.max_concurrent_tool_calls,
        )
