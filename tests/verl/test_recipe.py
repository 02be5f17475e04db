"""The recipes compose under veRL 0.9.1's own hydra config (every key exists), pass veRL's validation, and map
every hyperparameter of TORL-SPEC §5; `torl verl train` prints the command it runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.verl.conftest import RECIPE_1_5B, RECIPE_7B, compose

pytestmark = pytest.mark.engines

# TORL-SPEC §5 → veRL key → value, for both sizes
SPEC = {
    "algorithm.adv_estimator": "grpo",
    "algorithm.norm_adv_by_std_in_grpo": True,
    "algorithm.use_kl_in_reward": False,
    "data.train_batch_size": 128,
    "actor_rollout_ref.rollout.n": 16,
    "actor_rollout_ref.actor.optim.lr": 1e-6,
    "actor_rollout_ref.actor.optim.lr_scheduler_type": "constant",
    "actor_rollout_ref.actor.optim.weight_decay": 0.01,
    "actor_rollout_ref.actor.optim.clip_grad": 1.0,
    "actor_rollout_ref.actor.use_kl_loss": False,
    "actor_rollout_ref.actor.entropy_coeff": 0,
    "actor_rollout_ref.actor.clip_ratio": 0.2,
    "actor_rollout_ref.actor.loss_agg_mode": "token-mean",
    "actor_rollout_ref.actor.ppo_mini_batch_size": 128,
    "actor_rollout_ref.actor.ppo_epochs": 1,
    "actor_rollout_ref.rollout.temperature": 1.0,
    "actor_rollout_ref.rollout.top_p": 1.0,
    "actor_rollout_ref.rollout.val_kwargs.temperature": 0,
    "actor_rollout_ref.rollout.val_kwargs.top_k": -1,
    "actor_rollout_ref.rollout.val_kwargs.n": 1,
    "trainer.use_v1": True,
    "trainer.v1.trainer_mode": "sync",
    "trainer.v1.sampler.custom_sampler.path": "pkg://torl.verl.replay",
    "trainer.v1.sampler.custom_sampler.name": "TorlReplayBuffer",
    "trainer.v1.sampler.sampler_kwargs.torl_max_failed_share": 0.01,
    "data.max_prompt_length": 400,
    "data.max_response_length": 3072,
    "actor_rollout_ref.rollout.prompt_length": 400,
    "actor_rollout_ref.rollout.response_length": 3072,
    "trainer.test_freq": 4,
    "trainer.val_before_train": True,
    "trainer.save_freq": 20,
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.mode": "async",
    "actor_rollout_ref.rollout.agent.default_agent_loop": "torl_tir",
    "reward.custom_reward_function.path": "pkg://torl.verl.reward",
    "reward.custom_reward_function.name": "compute_score",
    "torl.max_tool_calls": 1,
    "reward.custom_reward_function.reward_kwargs.exec_penalty": False,
}


@pytest.mark.parametrize("path", [RECIPE_1_5B, RECIPE_7B], ids=["1.5b", "7b"])
def test_recipe_composes_and_maps_the_spec(path):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.import_utils import load_extern_object, resolve_config_path

    from torl.verl import AGENT_LOOP_YAML
    from torl.verl.recipe import load_recipe
    from torl.verl.replay import TorlReplayBuffer

    recipe = load_recipe(path)
    config = compose(recipe.overrides())  # hydra refuses a key veRL does not have (no "+")
    for key, value in recipe.verl.items():
        assert OmegaConf.select(config, key) == value, key
    for key, value in SPEC.items():
        assert OmegaConf.select(config, key, throw_on_missing=True) == value, key
    # what veRL's workers and trainer do with the wiring's paths
    assert resolve_config_path(config.actor_rollout_ref.rollout.agent.agent_loop_config_path) == str(AGENT_LOOP_YAML)
    sampler = config.trainer.v1.sampler.custom_sampler
    assert load_extern_object(sampler.path, sampler.name) is TorlReplayBuffer
    assert not need_reference_policy(config) and not need_critic(config)
    validate_config(config, use_reference_policy=False, use_critic=False)


# keys verl 0.9.1 composes but never reads on torl's path, and why (found by reading its source)
UNREAD = {
    "actor_rollout_ref.actor.grad_clip": "the FSDP engine clips with actor.optim.clip_grad",
    "data.truncation": "RLHFDataset stores it and nothing uses it: the agent loop tokenizes the prompt itself",
    "actor_rollout_ref.rollout.val_kwargs.do_sample": "agent-loop workers read val_kwargs temperature, top_p, top_k "
                                                       "and n; only the v0 trainer's non-agent path reads do_sample",
}
# new ("+") keys are allowed only where torl's own code reads them
TORL_SECTIONS = ("torl.", "reward.custom_reward_function.reward_kwargs.", "trainer.v1.sampler.sampler_kwargs.torl_")


@pytest.mark.parametrize("path", [RECIPE_1_5B, RECIPE_7B], ids=["1.5b", "7b"])
def test_every_key_of_the_command_is_read(path):
    """Each veRL key of `torl verl train --dry-run` exists in veRL's hydra config (composing the command), is not
    one of the keys verl 0.9.1 ignores, and is read somewhere in verl's code outside its config definitions."""
    import verl
    from torl.verl.recipe import load_recipe

    command = load_recipe(path).command("python")
    compose(command[3:])
    root = Path(verl.__file__).parent
    sources = [p.read_text(errors="ignore") for p in root.rglob("*.py")
               if not p.relative_to(root).as_posix().startswith(("trainer/config/", "workers/config/"))]
    for override in command[3:]:
        key = override.split("=", 1)[0]
        if key.startswith("+"):
            assert key[1:].startswith(TORL_SECTIONS), key
            continue
        assert key not in UNREAD, f"{key}: {UNREAD.get(key)}"
        leaf = key.rsplit(".", 1)[-1]
        read = re.compile(rf"(\.{leaf}\b|[\"']{leaf}[\"'])")
        assert any(read.search(text) for text in sources), f"{key}: no read of {leaf!r} in verl's code"


def test_agent_loop_yaml_path_resolves_beside_verl(tmp_path):
    """Installed beside verl (one site-packages) the YAML is named relative to it, so veRL's resolver finds it on
    any node; an editable install keeps the absolute path."""
    from torl.verl.recipe import agent_loop_config_path

    site = tmp_path / "site-packages"
    (site / "verl").mkdir(parents=True)
    yaml_path = site / "torl" / "verl" / "agent_loop.yaml"
    yaml_path.parent.mkdir(parents=True)
    yaml_path.write_text("[]")
    assert agent_loop_config_path(yaml_path, site / "verl") == "torl/verl/agent_loop.yaml"
    elsewhere = tmp_path / "checkout" / "agent_loop.yaml"
    assert agent_loop_config_path(elsewhere, site / "verl") == str(elsewhere)


def test_unknown_verl_key_is_refused_by_verl():
    from hydra.errors import ConfigCompositionException

    from torl.verl.recipe import load_recipe

    recipe = load_recipe(RECIPE_1_5B, ["actor_rollout_ref.actor.optim.lrr=1e-6"])
    with pytest.raises(ConfigCompositionException):
        compose(recipe.overrides())


def test_agent_loop_yaml_registers_torl_tir():
    import hydra
    from omegaconf import OmegaConf

    from torl.verl import AGENT_LOOP_YAML
    from torl.verl.agent_loop import TorlTIRAgentLoop

    [entry] = OmegaConf.load(AGENT_LOOP_YAML)
    assert entry.name == "torl_tir"
    assert hydra.utils.get_class(entry._target_) is TorlTIRAgentLoop


def test_overrides_reach_their_sections_and_values_survive_hydra():
    from torl.errors import UserInputError
    from torl.verl.recipe import load_recipe

    recipe = load_recipe(RECIPE_1_5B, [
        "torl.max_tool_calls=2", "torl.stop=```output", "torl.tool_call_budget=rounds", "reward_kwargs.mode=reference", "trainer.nnodes=2",
        "trainer.experiment_name=a b,c"])
    config = compose(recipe.overrides())
    assert config.torl.max_tool_calls == 2 and config.torl.stop == "```output"
    assert config.torl.tool_call_budget == "rounds"
    assert config.reward.custom_reward_function.reward_kwargs.mode == "reference"
    assert config.trainer.nnodes == 2 and config.trainer.experiment_name == "a b,c"
    with pytest.raises(UserInputError, match="torl.max_tool_call"):
        load_recipe(RECIPE_1_5B, ["torl.max_tool_call=2"])
    with pytest.raises(UserInputError, match="torl.temperature is veRL's actor_rollout_ref.rollout.temperature"):
        load_recipe(RECIPE_1_5B, ["torl.temperature=0.5"])
    with pytest.raises(UserInputError, match="tool_call_budget"):
        load_recipe(RECIPE_1_5B, ["torl.tool_call_budget=calls"])
    with pytest.raises(UserInputError, match="reward_kwargs"):
        load_recipe(RECIPE_1_5B, ["reward_kwargs.penalty=true"])
    with pytest.raises(UserInputError, match="set by torl"):
        load_recipe(RECIPE_1_5B, ["actor_rollout_ref.rollout.name=sglang"])


def test_cli_prints_the_command(capsys):
    from torl.cli import main

    assert main(["verl", "train", str(RECIPE_1_5B), "--dry-run", "trainer.total_training_steps=3"]) == 0
    out = capsys.readouterr().out
    assert out.split()[1:3] == ["-m", "verl.trainer.main_ppo"]
    assert "trainer.total_training_steps=3" in out and "+torl.max_tool_calls=1" in out
    assert "actor_rollout_ref.rollout.agent.default_agent_loop=torl_tir" in out


def test_train_checks_the_head_sandbox_before_launching(capsys, tmp_path):
    from torl.cli import main

    marker = tmp_path / "launched"
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\ntouch {marker}\n")
    python.chmod(0o755)
    code = main(["verl", "train", "--python", str(python), str(RECIPE_1_5B), "torl.sandbox=http://127.0.0.1:9"])
    assert code == 2 and not marker.exists()
    assert "http://127.0.0.1:9 did not run print(1)" in capsys.readouterr().err
