"""RolloutConfig: everything that decides how one tool-integrated response is generated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from torl.config import apply_overrides, from_dict, override_keys, read_yaml
from torl.errors import UserInputError
from torl.rollout.observation import STYLES, ObservationFormat

BUDGETS: tuple[str, ...] = ("executions", "rounds")
INTERPRETERS: tuple[str, ...] = ("stateless", "session")
RUN_CONFIG_FILE = "config.yaml"  # what a `torl train` run directory holds (torl.train.rundir.CONFIG_FILE)


@dataclass
class RolloutConfig:
    """How the loop runs (reference values as defaults, TORL-SPEC §3 and §5).

    max_tool_calls: C (0: no tool; the first round has no stop string). What it counts is `tool_call_budget`:
        "executions" (default): code runs; a round that stops at the marker without a complete block costs
        nothing. "rounds" (the reference's `num_llm_calls_available`, TORL-SPEC §3 step 5): every round generated
        with the stop marker costs one, whether or not code ran. Either way, once C is spent the next round is
        generated without the stop marker.
    max_response_tokens: cap on the whole response, observations included; a response cut by it is truncated.
    temperature, top_p: sampling (temperature 0 = greedy).
    stop: the marker that ends a round for execution; it stays in the response as model tokens.
    observation_style: "torl" (truthful, default) or "reference" (bit for bit; also runs a whitespace-only
        python block, as the reference does).
    obs_max_chars, obs_head_chars, obs_tail_chars: "torl" style truncation (head + "..." + tail).
    exec_timeout, exec_memory_mb: per execution, passed to the sandbox.
    tool_grace_s: how long past exec_timeout the loop waits for a sandbox answer before recording a timeout.
    max_concurrent_tool_calls: executions in flight at once (None: the sandbox's `max_concurrency`).
    interpreter: "stateless" (the paper's, default: each block runs in a fresh interpreter) or "session" (each
        sample owns one interpreter session for its lifetime, so a block sees the variables, imports and
        functions of the sample's earlier blocks; the sandbox must hold sessions: LocalSandbox or
        `torl sandbox serve`).
    """

    max_tool_calls: int = 1
    max_response_tokens: int = 3072
    temperature: float = 1.0
    top_p: float = 1.0
    stop: str = "```output"
    observation_style: str = "torl"
    obs_max_chars: int = 256
    obs_head_chars: int = 128
    obs_tail_chars: int = 128
    exec_timeout: float = 10.0
    exec_memory_mb: int | None = None
    tool_grace_s: float = 30.0
    max_concurrent_tool_calls: int | None = None
    tool_call_budget: str = "executions"
    interpreter: str = "stateless"

    def __post_init__(self) -> None:
        if self.max_tool_calls < 0:
            raise ValueError(f"max_tool_calls must be >= 0, got {self.max_tool_calls}")
        if self.max_response_tokens < 1:
            raise ValueError(f"max_response_tokens must be >= 1, got {self.max_response_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tool_calls > 0 and not self.stop:
            raise ValueError("stop must be a non-empty string when max_tool_calls > 0")
        if self.tool_call_budget not in BUDGETS:
            raise ValueError(f"tool_call_budget must be one of {BUDGETS}, got {self.tool_call_budget!r}")
        if self.interpreter not in INTERPRETERS:
            raise ValueError(f"interpreter must be one of {INTERPRETERS}, got {self.interpreter!r}")
        if self.observation_style not in STYLES:
            raise ValueError(f"observation_style must be one of {STYLES}, got {self.observation_style!r}")
        if self.exec_timeout <= 0:
            raise ValueError(f"exec_timeout must be > 0, got {self.exec_timeout}")
        if self.max_concurrent_tool_calls is not None and self.max_concurrent_tool_calls < 1:
            raise ValueError(f"max_concurrent_tool_calls must be >= 1, got {self.max_concurrent_tool_calls}")
        h, t, m = self.obs_head_chars, self.obs_tail_chars, self.obs_max_chars
        if h < 0 or t < 0 or h + t > m:
            raise ValueError(f"obs_head_chars + obs_tail_chars must be <= obs_max_chars (each >= 0), got {h} + {t} "
                             f"and {m}")

    @property
    def observation_format(self) -> ObservationFormat:
        return ObservationFormat(self.obs_max_chars, self.obs_head_chars, self.obs_tail_chars)

    def to_dict(self) -> dict:
        return asdict(self)


def build_rollout_config(base: RolloutConfig | Mapping | None = None, overrides: Sequence[str] = (), *,
                         flags: Mapping[str, Any] | None = None, where: str = "command line",
                         lines: Mapping[str, int] | None = None) -> RolloutConfig:
    """One checked RolloutConfig from, in order of precedence (last wins): `base` (a RolloutConfig, or a raw
    `rollout:` mapping read from `where`, e.g. by `read_rollout_section`; None: the defaults), `flags` (field ->
    value, a command's short options), `overrides` ("rollout.KEY=VALUE", as `torl train` takes them).

    A bad key or value is a UserInputError naming it: "command-line override rollout.top_p: ..." for flags and
    overrides, "FILE:LINE: rollout.KEY: ..." for the base section."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if "=" not in item or not key.startswith("rollout."):
            raise UserInputError(f"override {item!r}: expected rollout.KEY=VALUE (KEY one of "
                                 f"{', '.join(f.name for f in fields(RolloutConfig))})")
    section = base.to_dict() if isinstance(base, RolloutConfig) else dict(base or {})
    raw = {"rollout": {**section, **(flags or {})}}
    apply_overrides(raw, overrides)
    named = override_keys(overrides) | {f"rollout.{k}" for k in flags or {}}
    return from_dict(RolloutConfig, raw["rollout"], where=where, lines=dict(lines or {}), prefix="rollout.",
                     overridden=named)


def read_rollout_section(path: str | Path) -> tuple[dict, str, dict[str, int]]:
    """The raw `rollout:` section of a `torl train` config: a YAML file, or a run directory (its config.yaml).

    Returns (section, where, lines) for `build_rollout_config`. Nothing else in the file is read, so the run's
    data files need not exist; a missing section is the defaults."""
    path = Path(path)
    if path.is_dir():
        if not (path / RUN_CONFIG_FILE).is_file():
            raise UserInputError(f"{path}: a directory without {RUN_CONFIG_FILE} is not a `torl train` run directory")
        path = path / RUN_CONFIG_FILE
    raw, lines = read_yaml(path)
    section = raw.get("rollout")
    if section is not None and not isinstance(section, dict):
        raise UserInputError(f"{path}:{lines.get('rollout', '?')}: rollout: expected a section (mapping)")
    return dict(section or {}), str(path), lines
