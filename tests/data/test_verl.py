"""The veRL parquet schema: layout, round trip, and errors."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torl.data.schema import Problem
from torl.data.verl import (
    base_prompt,
    prompt_messages,
    read_verl_parquet,
    render_base_prompt,
    write_verl_parquet,
)
from torl.errors import UserInputError

SPEC_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.\nUser: Please "
    "integrate natural language reasoning with programs to solve the problem above, and put your final answer within "
    "\\boxed{}.\n[PROMPT]\nAssistant:\n"
)

PROBLEMS = [
    Problem("math-0", "What is $\\frac{1}{2}+\\frac{1}{3}$?", "\\frac{5}{6}", "math", {"level": 2}),
    Problem("numina-7", "Find $x$ if $2^x = 8$.\nGive an integer.", "3", "numina/cn_k12"),
]


def test_messages_rebuild_the_reference_prompt_exactly():
    problem = PROBLEMS[0].problem
    assert render_base_prompt(prompt_messages(problem)) == SPEC_TEMPLATE.replace("[PROMPT]", problem)
    assert [m["role"] for m in prompt_messages(problem)] == ["system", "user"]


def test_base_prompt_is_the_rollout_torl_template():
    from torl.rollout import build_prompt

    for p in PROBLEMS:
        assert base_prompt(p.problem) == build_prompt(p.problem, "torl")


def test_round_trip(tmp_path):
    path = tmp_path / "train.parquet"
    assert write_verl_parquet(PROBLEMS, path) == 2
    table = pq.read_table(path)
    assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    row = table.to_pylist()[1]
    assert row["data_source"] == "numina/cn_k12" and row["ability"] == "math"
    assert row["reward_model"] == {"ground_truth": "3", "style": "rule"}
    assert row["extra_info"] == {"index": 1, "id": "numina-7", "split": "train"}
    assert row["prompt"][0]["role"] == "system" and row["prompt"][1]["content"].endswith(PROBLEMS[1].problem)
    back = read_verl_parquet(path)
    assert [(p.id, p.problem, p.answer, p.source) for p in back] == [(p.id, p.problem, p.answer, p.source)
                                                                     for p in PROBLEMS]


def test_empty_set_keeps_the_schema(tmp_path):
    write_verl_parquet([], tmp_path / "empty.parquet")
    assert pq.read_schema(tmp_path / "empty.parquet").field("reward_model").type.num_fields == 2
    assert read_verl_parquet(tmp_path / "empty.parquet") == []


def test_foreign_or_broken_files_are_named(tmp_path):
    pq.write_table(pa.Table.from_pylist([{"problem": "x"}]), tmp_path / "torl.parquet")
    with pytest.raises(UserInputError, match="missing column"):
        read_verl_parquet(tmp_path / "torl.parquet")
    rows = [{"data_source": "d", "prompt": [{"role": "system", "content": "s"}], "ability": "math",
             "reward_model": {"ground_truth": "1", "style": "rule"}, "extra_info": {"index": 0, "split": "train"}}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "nouser.parquet")
    with pytest.raises(UserInputError, match=r"nouser\.parquet:row 0: field 'prompt' has no user message"):
        read_verl_parquet(tmp_path / "nouser.parquet")
