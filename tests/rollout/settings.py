"""A non-default value for every RolloutConfig field, for the tests that each field set on a command line reaches
the engine. A field added later gets one by its type (a choice field: another of its choices), so it is covered
without editing the tests."""

from __future__ import annotations

import dataclasses
import json
import re

from torl.rollout.config import RolloutConfig

# values that keep a tiny-model run short and valid together
CHOSEN = {
    "max_tool_calls": 2,
    "max_response_tokens": 40,
    "temperature": 0.7,
    "top_p": 0.9,
    "stop": "```out",
    "observation_style": "reference",
    "obs_max_chars": 300,
    "obs_head_chars": 100,
    "obs_tail_chars": 150,
    "exec_timeout": 7.5,
    "exec_memory_mb": 1536,
    "tool_grace_s": 12.5,
    "max_concurrent_tool_calls": 3,
    "tool_call_budget": "rounds",
}


def changed_values() -> dict:
    """Field -> a valid value other than its default, for every field of RolloutConfig."""
    out = {}
    for f in dataclasses.fields(RolloutConfig):
        value = CHOSEN[f.name] if f.name in CHOSEN else _by_type(f)
        assert value != f.default, f"{f.name}: {value!r} is its default"
        out[f.name] = value
    RolloutConfig(**out)  # valid together
    return out


def as_overrides(values: dict) -> list[str]:
    """["rollout.KEY=VALUE", ...], each VALUE written so that the command line reads it back exactly."""
    return [f"rollout.{k}={json.dumps(v)}" for k, v in values.items()]


def _by_type(f: dataclasses.Field):
    default = f.default
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default + 0.5
    if isinstance(default, str):
        try:
            RolloutConfig(**{f.name: "\0"})
        except ValueError as e:  # "KEY must be one of ('a', 'b'), got ..."
            choices = re.findall(r"'([^']*)'", str(e).split("got")[0])
            return next(c for c in choices if c != default)
        return default + "x"
    raise AssertionError(f"RolloutConfig.{f.name}: give it a value in tests/rollout/settings.py CHOSEN")


def spy_engine(monkeypatch, module) -> list[RolloutConfig]:
    """Wrap `module.run_rollouts` (a command's seam into the engine): the list fills with the RolloutConfig of
    every call, and the real engine runs."""
    seen: list[RolloutConfig] = []
    real = module.run_rollouts

    def run_rollouts(*args, config, **kwargs):
        seen.append(config)
        return real(*args, config=config, **kwargs)

    monkeypatch.setattr(module, "run_rollouts", run_rollouts)
    return seen
