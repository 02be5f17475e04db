"""A veRL launch recipe (YAML) → the full `python -m verl.trainer.main_ppo ...` command.

A recipe has three sections:
    verl:          veRL config keys, dotted, exactly as veRL spells them (`trainer.test_freq: 4`)
    torl:          the torl_tir agent loop's settings (`torl/verl/config.py`), passed as `+torl.<key>=...`
    reward_kwargs: torl's reward options (`torl/verl/reward.py`), passed as
                   `+reward.custom_reward_function.reward_kwargs.<key>=...`
The wiring that makes it a TORL run is added here, not left to the recipe: vLLM async rollout, the torl_tir agent
loop (registry YAML inside the installed package, `agent_loop_config_path`), torl's reward function and, for veRL's
v1 trainer, torl's replay buffer (`torl/verl/replay.py`: failed-sample and tool metrics, the failure bound
`torl.max_failed_share`). Overrides `KEY=VALUE` go to the
section their prefix names (`torl.max_tool_calls=2`, `reward_kwargs.exec_penalty=true`), anything else to veRL
(`trainer.total_training_steps=10`, `+some.new_key=1`).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from torl.config import parse_value
from torl.errors import UserInputError
from torl.verl import AGENT_LOOP_NAME, AGENT_LOOP_YAML
from torl.verl.config import LoopSettings
from torl.verl.reward import reward_config

_PLAIN = re.compile(r"[A-Za-z0-9_./+@%~:-]+")  # strings hydra reads unquoted
SECTIONS = ("verl", "torl", "reward_kwargs")
REWARD_KWARGS_KEY = "reward.custom_reward_function.reward_kwargs"

SAMPLER_KWARGS_KEY = "trainer.v1.sampler.sampler_kwargs"


def agent_loop_config_path(yaml_path: Path = AGENT_LOOP_YAML, verl_dir: Path | None = None) -> str:
    """The agent-loop YAML as veRL's workers resolve it on every node (verl 0.9.1's `resolve_config_path`,
    which knows no pkg:// paths: an absolute path as it is, a relative one against the working directory or the
    directory that holds the verl package). torl installed beside verl (one site-packages): the path relative to
    it, found on any node with both installed; otherwise (an editable install) the absolute path, which needs
    the same checkout path on every node."""
    if verl_dir is None:
        import importlib.util

        spec = importlib.util.find_spec("verl")
        if spec is None or not spec.origin:
            return str(yaml_path)
        verl_dir = Path(spec.origin).parent
    root = verl_dir.resolve().parent
    try:
        return str(yaml_path.resolve().relative_to(root))
    except ValueError:
        return str(yaml_path)


# what makes a veRL run a torl run; a recipe that sets one of these differently is refused
WIRING: dict[str, object] = {
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.mode": "async",
    "actor_rollout_ref.rollout.agent.default_agent_loop": AGENT_LOOP_NAME,
    "actor_rollout_ref.rollout.agent.agent_loop_config_path": agent_loop_config_path(),
    "reward.custom_reward_function.path": "pkg://torl.verl.reward",
    "reward.custom_reward_function.name": "compute_score",
    "trainer.v1.sampler.custom_sampler.path": "pkg://torl.verl.replay",
    "trainer.v1.sampler.custom_sampler.name": "TorlReplayBuffer",
}


@dataclass
class Recipe:
    """A parsed recipe (see the module docstring); `source` names its file in errors."""

    verl: dict[str, object] = field(default_factory=dict)
    torl: dict[str, object] = field(default_factory=dict)
    reward_kwargs: dict[str, object] = field(default_factory=dict)
    source: str = "<recipe>"

    def overrides(self) -> list[str]:
        """veRL's hydra overrides, in order: the recipe's keys, the wiring, the torl and reward sections."""
        out = [f"{k}={hydra_value(v)}" for k, v in self.verl.items() if k not in WIRING]
        out += [f"{k}={hydra_value(v)}" for k, v in WIRING.items()]
        out += [f"+torl.{k}={hydra_value(v)}" for k, v in self.torl.items()]
        out += [f"+{REWARD_KWARGS_KEY}.{k}={hydra_value(v)}" for k, v in self.reward_kwargs.items()]
        share = LoopSettings.from_mapping(self.torl).max_failed_share
        out.append(f"+{SAMPLER_KWARGS_KEY}.torl_max_failed_share={hydra_value(share)}")
        return out

    def command(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", "verl.trainer.main_ppo", *self.overrides()]

    def validate(self) -> None:
        where = self.source
        for key, value in self.verl.items():
            if key in WIRING and str(value) != str(WIRING[key]):
                raise UserInputError(f"{where}: verl.{key} is set by torl to {WIRING[key]!r}; remove it")
        try:
            LoopSettings.from_mapping(self.torl)
        except (TypeError, ValueError) as e:
            raise UserInputError(f"{where}: section 'torl': {e}") from None
        try:
            reward_config(self.reward_kwargs)
        except (TypeError, ValueError) as e:
            raise UserInputError(f"{where}: section 'reward_kwargs': {e}") from None


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe file and apply `KEY=VALUE` overrides (values parsed as YAML scalars)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such recipe file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserInputError(f"{path}: cannot parse YAML ({e})") from None
    if not isinstance(raw, Mapping):
        raise UserInputError(f"{path}: a recipe is a mapping with sections {list(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise UserInputError(f"{path}: unknown section(s) {unknown}; a recipe has {list(SECTIONS)}")
    sections = {}
    for name in SECTIONS:
        body = raw.get(name) or {}
        if not isinstance(body, Mapping):
            raise UserInputError(f"{path}: section {name!r} must be a mapping of key: value")
        sections[name] = {str(k): v for k, v in body.items()}
    recipe = Recipe(**sections, source=str(path))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserInputError(f"override {item!r}: expected KEY=VALUE")
        section, _, rest = key.partition(".")
        parsed = parse_value(value)
        if section in ("torl", "reward_kwargs") and rest:
            getattr(recipe, section)[rest] = parsed
        else:
            recipe.verl[key] = parsed
    recipe.validate()
    return recipe


def hydra_value(value: object) -> str:
    """A Python value as a hydra override value (lists and nested mappings in hydra's own syntax)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if _PLAIN.fullmatch(text) and isinstance(yaml.safe_load(text), str):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def format_command(command: Sequence[str]) -> str:
    """The command as one shell line per override, ready to paste."""
    head = " ".join(shlex.quote(c) for c in command[:3])
    return " \\\n    ".join([head, *(shlex.quote(c) for c in command[3:])])
