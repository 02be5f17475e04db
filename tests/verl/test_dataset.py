"""veRL 0.9.1's RLHFDataset reads torl's parquet as it is, and the reference's own layout too; the agent loop
recovers the bare problem from either."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.engines


def _dataset(path, tokenizer, **data):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 400, "filter_overlong_prompts": False,
                               "truncation": "error", "return_raw_chat": True, **data})
    return RLHFDataset(str(path), tokenizer, config)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model))


def test_torl_parquet(verl_parquet, tokenizer):
    from torl.data.verl import read_verl_parquet
    from torl.verl.agent_loop import user_content

    problems = read_verl_parquet(verl_parquet)
    ds = _dataset(verl_parquet, tokenizer)
    assert len(ds) == len(problems) == 4
    for i, p in enumerate(problems):
        row = ds[i]
        assert row["data_source"] == p.source
        assert row["reward_model"]["ground_truth"] == p.answer
        assert row["index"] == i
        assert user_content(row["raw_prompt"]) == p.problem


def test_veRLs_length_filter_runs_on_it(verl_parquet, tokenizer):
    ds = _dataset(verl_parquet, tokenizer, filter_overlong_prompts=True, filter_overlong_prompts_workers=1,
                  max_prompt_length=10)
    assert len(ds) == 0  # every templated prompt is longer than 10 tokens: the filter measured them


def test_reference_layout(tmp_path, tokenizer):
    """The published test.parquet's layout: system "Please reason step by step...", bare user content, `stype`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from torl.verl.agent_loop import user_content

    rows = [{"data_source": "aime24",
             "prompt": [{"role": "system", "content": "Please reason step by step, and put your final answer "
                         "within \\boxed{}."}, {"role": "user", "content": "What is 2 + 3?"}],
             "ability": "other", "reward_model": {"ground_truth": "5", "stype": "rule"},
             "extra_info": {"id": "a-0", "split": "test"}}]
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    row = _dataset(path, tokenizer)[0]
    assert user_content(row["raw_prompt"]) == "What is 2 + 3?"
    assert row["reward_model"]["ground_truth"] == "5" and row["index"] == 0
