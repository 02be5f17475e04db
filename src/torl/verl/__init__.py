"""TORL on veRL (pinned: verl 0.9.1, whose agent-loop API moves between releases), without a fork.

- `agent_loop.TorlTIRAgentLoop` ("torl_tir"): torl's rollout loop (`torl.rollout.arun_rollouts`, the code of
  `torl train`/`torl eval`) as a veRL agent loop, over veRL's inference-server handle (`backend.py`).
  Registered through `agent_loop.yaml` (`actor_rollout_ref.rollout.agent.agent_loop_config_path`).
- `reward.compute_score`: torl's grader as veRL's `reward.custom_reward_function`.
- `sandbox`: one sandbox per node (a named Ray actor), its slot and queue bounds and health check.
- `failures` + `replay`: failed samples recorded for, counted and bounded by torl's replay buffer on veRL's v1
  trainer (`trainer.v1.sampler.custom_sampler`), with per-step tool metrics.
- `recipe`: a YAML recipe (configs/verl/torl_1.5b.yaml) → the full `python -m verl.trainer.main_ppo ...` command;
  `torl verl train RECIPE [key=value ...]` prints it and runs it.

Nothing here imports veRL at import time except `agent_loop` (which subclasses veRL's base class) and `replay`
(veRL's replay buffers); `sandbox` imports Ray only when it starts a node's sandbox.
"""

from pathlib import Path

AGENT_LOOP_YAML = Path(__file__).with_name("agent_loop.yaml")
AGENT_LOOP_NAME = "torl_tir"

__all__ = ["AGENT_LOOP_NAME", "AGENT_LOOP_YAML"]
