"""The recipes' prompt filter: <= 390 tokens of the Qwen2.5 tokenizer (data.length_tokenizer), and the
"exactly the reference" recipe."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torl.data.schema import Problem
from torl.errors import UserInputError
from torl.rollout.templates import build_prompt
from torl.train.config import load_config
from torl.train.data import render_prompts

from .conftest import REPO


@pytest.fixture(scope="module")
def qwen():
    from torl.models import qwen25_tokenizer

    return qwen25_tokenizer()


def qwen_len(qwen, problem: str) -> int:
    return len(qwen.encode(build_prompt(problem, "torl"), add_special_tokens=False))


def test_lengths_are_counted_with_the_length_tokenizer(tiny_tokenizer, qwen):
    problems = [Problem(f"p{k}", "Compute " + " + ".join(["12345"] * k) + ".", "0", "t") for k in (5, 40, 41)]
    limit = qwen_len(qwen, problems[1].problem)
    assert qwen_len(qwen, problems[0].problem) < limit < qwen_len(qwen, problems[2].problem)
    kept = render_prompts(problems, tiny_tokenizer, template="torl", max_prompt_tokens=limit, length_tokenizer="qwen2.5")
    assert [r["problem_id"] for r in kept.rows] == ["p5", "p40"] and kept.n_too_long == 1
    assert kept.longest_kept == limit and kept.dropped_ids == ["p41"]
    # the tiny model's own tokenizer counts differently (digits split, small vocabulary): the choice matters
    own = render_prompts(problems, tiny_tokenizer, template="torl", max_prompt_tokens=limit)
    assert [r["problem_id"] for r in own.rows] != [r["problem_id"] for r in kept.rows]
    assert kept.rows[0]["prompt"] == own.rows[0]["prompt"]  # the prompt itself is the model's rendering


def test_bad_length_tokenizer_is_named(tiny_tokenizer, tmp_path):
    with pytest.raises(UserInputError, match="data.length_tokenizer: cannot load"):
        render_prompts([Problem("p", "x", "1", "t")], tiny_tokenizer, template="torl", max_prompt_tokens=9,
                       length_tokenizer=str(tmp_path / "nope"))


def test_recipes_filter_at_390_qwen25_tokens(problems_file):
    for recipe in ("torl_1.5b.yaml", "torl_7b.yaml"):
        cfg = load_config(REPO / "configs" / recipe, [f"data.train_files=[{problems_file}]"])
        assert (cfg.data.max_prompt_tokens, cfg.data.length_tokenizer) == (390, "qwen2.5"), recipe
        assert (cfg.rollout.tool_call_budget, cfg.rollout.observation_style, cfg.reward.mode) == (
            "executions", "torl", "torl")


def test_the_reference_recipe(problems_file, tmp_path):
    test = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist([{
        "data_source": "aime24", "prompt": [{"role": "user", "content": "What is 1 + 1?"}], "ability": "other",
        "reward_model": {"ground_truth": "2", "stype": "rule"}, "extra_info": {"id": "a0", "split": "test"}}]), test)
    path = REPO / "configs" / "torl_1.5b_reference.yaml"
    cfg = load_config(path, [f"data.train_files=[{problems_file}]", f"validation.files=[{test}]"])
    assert (cfg.rollout.observation_style, cfg.rollout.tool_call_budget, cfg.rollout.max_tool_calls) == (
        "reference", "rounds", 1)
    assert (cfg.reward.mode, cfg.reward.exec_penalty) == ("reference", False)
    assert (cfg.data.max_prompt_tokens, cfg.data.length_tokenizer) == (390, "qwen2.5")
    assert cfg.validation.benchmarks == [] and cfg.validation.files == [str(test)]
    base = load_config(REPO / "configs" / "torl_1.5b.yaml", [f"data.train_files=[{problems_file}]"])
    same = ("grpo", "optim", "train", "model")
    assert all(getattr(cfg, k) == getattr(base, k) for k in same)  # only the reference switches differ
    with pytest.raises(UserInputError, match=r"validation\.files\[0\].*test\.parquet"):
        load_config(path, [f"data.train_files=[{problems_file}]"])  # the published file must be put in place


def test_budget_from_the_config_file(problems_file):
    cfg = load_config(REPO / "configs" / "torl_1.5b.yaml", [f"data.train_files=[{problems_file}]",
                                                            "rollout.tool_call_budget=rounds"])
    assert cfg.rollout.tool_call_budget == "rounds"
    with pytest.raises(UserInputError, match="rollout.*tool_call_budget must be one of"):
        load_config(REPO / "configs" / "torl_1.5b.yaml", [f"data.train_files=[{problems_file}]",
                                                          "rollout.tool_call_budget=calls"])
