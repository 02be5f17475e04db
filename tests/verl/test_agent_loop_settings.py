"""The `torl.*` settings reach the agent loop inside veRL's worker: per-sample seeds from the v1 trainer's
session_id, C, and the per-process sandbox."""

from __future__ import annotations

import numpy as np
import pytest

from tests.verl.conftest import compose, small_overrides
from tests.verl.test_agent_loop import PROMPTS, N, _gen_batch, _run

pytestmark = pytest.mark.engines


def test_seeds_from_session_id_and_no_tool(tiny_model, verl_parquet):
    from transformers import AutoTokenizer

    from torl.rollout.seeds import derive_seed

    config = compose(small_overrides(tiny_model, verl_parquet, seed=5, max_tool_calls=0))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    batch = _gen_batch(config, tokenizer, verl_parquet)
    # what veRL's v1 worker passes run(): the sample's number within its group, and the step
    batch.non_tensor_batch["session_id"] = np.array([k % N for k in range(PROMPTS * N)], dtype=object)
    batch.non_tensor_batch["global_steps"] = np.array([3] * (PROMPTS * N), dtype=object)
    out, server = _run(config, tiny_model, batch)
    index = batch.non_tensor_batch["index"]
    expected = {derive_seed(derive_seed(5, 3, int(index[k]), k % N), 0) for k in range(PROMPTS * N)}
    assert len(server.calls) == PROMPTS * N  # C = 0: one round per sample, no stop marker, nothing runs
    assert {c["params"].seed for c in server.calls} == expected
    assert all(not c["params"].stop for c in server.calls)
    assert all(len(calls) == 0 for calls in out.non_tensor_batch["tool_calls"])


def test_prompt_over_the_limit_is_a_clear_error(tiny_model, verl_parquet):
    from transformers import AutoTokenizer

    config = compose(small_overrides(tiny_model, verl_parquet, verl=("data.max_prompt_length=20",)))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    batch = _gen_batch(config, tokenizer, verl_parquet)
    with pytest.raises(ValueError, match=r"index 0: the prompt is \d+ tokens, over actor_rollout_ref.rollout."
                                         r"prompt_length=20"):
        _run(config, tiny_model, batch)


def test_one_sandbox_per_process():
    from torl.sandbox import SandboxFusionClient
    from torl.verl.agent_loop import close_process_sandboxes, process_sandbox

    a = process_sandbox("http://127.0.0.1:9/")
    assert isinstance(a, SandboxFusionClient) and process_sandbox("http://127.0.0.1:9/") is a
    close_process_sandboxes()
    assert process_sandbox("http://127.0.0.1:9/") is not a
    close_process_sandboxes()
