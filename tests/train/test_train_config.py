"""Config loading: recipes, overrides, and one-line errors naming file, line and key."""

from __future__ import annotations

import pytest

from torl.config import parse_override
from torl.errors import UserInputError
from torl.train.config import load_config, non_resumable_changes

from .conftest import REPO, TINY_CPU


def write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


BASE = """\
run_dir: {run}
model:
  path: {model}
data:
  train_files: [{data}]
validation:
  every: 0
  at_start: false
"""


@pytest.fixture
def base(tmp_path, problems_file):
    model = tmp_path / "model"
    model.mkdir()
    return {"run": tmp_path / "run", "model": model, "data": problems_file}


def test_reference_recipe_values(problems_file):
    cfg = load_config(REPO / "configs" / "torl_1.5b.yaml", [f"data.train_files=[{problems_file}]"])
    assert cfg.model.path == "Qwen/Qwen2.5-Math-1.5B"
    assert (cfg.optim.lr, cfg.optim.scheduler, cfg.optim.weight_decay, cfg.optim.max_grad_norm) == (
        1e-6, "constant", 0.01, 1.0)
    assert (cfg.grpo.prompts_per_step, cfg.grpo.samples_per_prompt) == (128, 16)
    assert (cfg.grpo.clip_ratio, cfg.grpo.kl_coef, cfg.grpo.entropy_coef, cfg.grpo.loss_type) == (
        0.2, 0.0, 0.0, "dapo")
    assert (cfg.rollout.temperature, cfg.rollout.top_p, cfg.rollout.max_tool_calls) == (1.0, 1.0, 1)
    assert (cfg.data.max_prompt_tokens, cfg.rollout.max_response_tokens) == (390, 3072)
    assert (cfg.validation.every, cfg.validation.temperature, cfg.train.save_every) == (4, 0.0, 20)
    assert cfg.validation.benchmarks == ["aime24", "aime25", "math500", "olympiadbench", "amc23"]
    assert cfg.reward.exec_penalty is False and cfg.train.max_steps == 1000
    cfg7 = load_config(REPO / "configs" / "torl_7b.yaml", [f"data.train_files=[{problems_file}]"])
    assert cfg7.model.path == "Qwen/Qwen2.5-Math-7B" and cfg7.train.max_steps == 500


def test_reference_recipe_maps_to_trl(problems_file):
    from torl.train.trainer import build_grpo_config

    cfg = load_config(REPO / "configs" / "torl_1.5b.yaml", [f"data.train_files=[{problems_file}]",
                                                            "train.precision=fp32"])  # bf16 needs a GPU
    args = build_grpo_config(cfg, processes=8)
    # one optimizer update per step: the generation batch is the whole step, consumed by accumulation
    assert args.gradient_accumulation_steps == 32 and args.steps_per_generation == 32
    assert args.per_device_train_batch_size * args.steps_per_generation * 8 == 128 * 16  # over 8 processes
    assert args.num_generations == 16 and args.num_iterations == 1
    assert (args.beta, args.epsilon, args.epsilon_high, args.loss_type, args.entropy_coef) == (0.0, 0.2, None, "dapo", 0)
    assert (args.learning_rate, args.lr_scheduler_type.value, args.weight_decay, args.max_grad_norm) == (
        1e-6, "constant", 0.01, 1.0)
    assert (args.temperature, args.top_p, args.save_steps) == (1.0, 1.0, 20)


def test_tiny_recipe_loads_and_resolves_paths_next_to_it():
    cfg = load_config(TINY_CPU)
    assert cfg.model.path == "tiny://"
    assert cfg.data.train_files[0].endswith("configs/data/tiny_arith_train.jsonl")
    assert cfg.validation.files[0].endswith("configs/data/tiny_arith_val.jsonl")


def test_overrides_are_typed_and_dotted(tmp_path, base):
    path = write(tmp_path, BASE.format(**base))
    cfg = load_config(path, ["optim.lr=2e-6", "grpo.clip_ratio_high=0.28", "validation.benchmarks=[aime24]",
                             "model.tiny={train_steps: 3}", "trl.logging_first_step=true"])
    assert cfg.optim.lr == 2e-6 and cfg.grpo.clip_ratio_high == 0.28
    assert cfg.validation.benchmarks == ["aime24"] and cfg.model.tiny == {"train_steps": 3}
    assert cfg.trl == {"logging_first_step": True}
    assert parse_override("x.y=null") == ("x.y", None)


ERRORS = [
    # (yaml addition or override, expected fragments of the message)
    ("grpo:\n  clip_ration: 0.3\n", ["cfg.yaml:7", "grpo.clip_ration", "unknown key", "did you mean grpo.clip_ratio"]),
    ("grpo:\n  clip_ratio: high\n", ["cfg.yaml:7", "grpo.clip_ratio", "expected a number", "'high'"]),
    ("grpo:\n  samples_per_prompt: 1.5\n", ["grpo.samples_per_prompt", "expected an integer"]),
    ("train:\n  precision: bf32\n", ["train.precision", "must be one of", "'bf16'"]),
    ("rollout:\n  top_p: 2\n", ["rollout", "top_p must be in (0, 1]"]),
    ("trl:\n  learning_rate: 0.1\n", ["trl.learning_rate", "set from torl's own config"]),
    ("trl:\n  loging_steps: 3\n", ["trl.loging_steps", "not a trl.GRPOConfig argument", "logging_steps"]),
    ("validation:\n  benchmarks: [aime99]\n", ["validation.benchmarks[0]", "unknown benchmark 'aime99'"]),
    ("engine:\n  vllm: auto\n  vllm_tensor_parallel_size: 2\n",
     ["cfg.yaml:8", "engine.vllm_tensor_parallel_size", "must be 1 in colocate mode", "vllm_mode=server"]),
]


@pytest.mark.parametrize(("extra", "fragments"), ERRORS)
def test_bad_values_give_one_line_errors(tmp_path, base, extra, fragments):
    text = BASE.format(**base).replace("validation:\n  every: 0\n  at_start: false\n", "") + extra
    with pytest.raises(UserInputError) as err:
        load_config(write(tmp_path, text))
    msg = str(err.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg


def test_missing_and_nonexistent_model_path(tmp_path, base):
    text = BASE.format(**base).replace(f"  path: {base['model']}\n", "")
    with pytest.raises(UserInputError, match=r"cfg.yaml:2: model.path: missing"):
        load_config(write(tmp_path, text))
    with pytest.raises(UserInputError, match=r"model.path: no such model directory: /nonexistent/model"):
        load_config(write(tmp_path, BASE.format(**base)), ["model.path=/nonexistent/model"])


def test_override_errors_name_the_override(tmp_path, base):
    path = write(tmp_path, BASE.format(**base))
    with pytest.raises(UserInputError, match=r"command-line override optim.lrr: unknown key"):
        load_config(path, ["optim.lrr=1"])
    with pytest.raises(UserInputError, match=r"command-line override optim.lr: expected a number"):
        load_config(path, ["optim.lr=fast"])
    with pytest.raises(UserInputError, match=r"expected KEY=VALUE"):
        load_config(path, ["optim.lr"])
    with pytest.raises(UserInputError, match=r"data.train_files\[0\]: no such file"):
        load_config(path, ["data.train_files=[/nope.jsonl]"])


def test_checks_after_parsing_blame_the_override_not_the_file():
    """validate / check_environment name a command-line value as the override, not a line of the file."""
    with pytest.raises(UserInputError, match=r"^command-line override model.path: no such model directory: "
                                             r"/nope/model$"):
        load_config(TINY_CPU, ["model.path=/nope/model"])
    with pytest.raises(UserInputError, match=r"^command-line override model.path: missing"):
        load_config(TINY_CPU, ["model.path="])
    with pytest.raises(UserInputError, match=r"^command-line override data.train_files\[0\]: no such file"):
        load_config(TINY_CPU, ["data.train_files=[/nope.jsonl]"])


def test_cli_prints_one_line_and_exits_2(tmp_path, base, capsys):
    from torl.train.__main__ import main

    path = write(tmp_path, BASE.format(**base) + "grpo:\n  clip_ratio: [1]\n")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("torl train: error: ") and "grpo.clip_ratio" in err


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(UserInputError, match=r"cfg.yaml:3: invalid YAML"):
        load_config(write(tmp_path, "run_dir: x\nmodel:\n\tpath: y\n"))


def test_batch_arithmetic_errors(tmp_path, base):
    from torl.train.trainer import gradient_accumulation_steps

    cfg = load_config(write(tmp_path, BASE.format(**base)), ["grpo.prompts_per_step=4", "grpo.samples_per_prompt=4",
                                                            "grpo.micro_batch_size=3"])
    with pytest.raises(UserInputError, match="grpo.micro_batch_size"):
        gradient_accumulation_steps(cfg, 1)
    with pytest.raises(UserInputError, match="grpo.prompts_per_step"):
        gradient_accumulation_steps(cfg, 3)
    cfg.grpo.micro_batch_size = 2
    assert gradient_accumulation_steps(cfg, 2) == 4


def test_resume_may_change_schedule_but_not_the_math(tmp_path, base):
    cfg = load_config(write(tmp_path, BASE.format(**base)))
    old = cfg.to_dict()
    cfg.train.max_steps = 5000
    cfg.validation.every = 8
    assert non_resumable_changes(old, cfg.to_dict()) == []
    cfg.optim.lr = 3e-6
    cfg.grpo.samples_per_prompt = 8
    assert non_resumable_changes(old, cfg.to_dict()) == ["grpo.samples_per_prompt", "optim.lr"]
