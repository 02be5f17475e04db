"""The `torl.*` settings reach the agent loop inside veRL's (v0) worker: per-sample seeds from the v1 trainer's
session_id, C; a prompt over the limit and an unreachable sandbox stop the step, naming the sample."""

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


def test_prompt_over_the_limit_stops_the_v0_step(tiny_model, verl_parquet):
    """veRL's v0 worker gathers its samples without catching: torl's error, naming the sample, ends the step."""
    from transformers import AutoTokenizer

    from torl.verl.failures import SampleFailed

    config = compose(small_overrides(tiny_model, verl_parquet, verl=("data.max_prompt_length=20",
                                                                     "trainer.use_v1=false")))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    batch = _gen_batch(config, tokenizer, verl_parquet)
    with pytest.raises(SampleFailed, match=r"torl_tir sample data_source='demo' index=0 uid='[-0-9a-f]+': PromptTooLong: the prompt is "
                                           r"\d+ tokens, over actor_rollout_ref.rollout.prompt_length=20") as info:
        _run(config, tiny_model, batch)
    assert info.value.kind == "config"


def test_unreachable_sandbox_is_a_config_error_naming_the_url(tiny_model, verl_parquet):
    from transformers import AutoTokenizer

    from torl.verl.failures import SampleFailed

    config = compose(small_overrides(tiny_model, verl_parquet, sandbox="http://127.0.0.1:9"))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    with pytest.raises(SampleFailed, match=r"SandboxUnavailable: torl.sandbox=http://127.0.0.1:9: the Sandbox Fusion "
                                           r"server at http://127.0.0.1:9 did not run print\(1\).*torl sandbox serve"
                       ) as info:
        _run(config, tiny_model, _gen_batch(config, tokenizer, verl_parquet))
    assert info.value.kind == "config"
