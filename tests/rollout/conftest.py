"""Fixtures for the rollout tests: tiny models built locally (once per session) and the invariant checks."""

from __future__ import annotations

import math

import pytest

from tests.threads import one_torch_thread
from torl.rollout import RolloutResult, wrap_observation
from torl.rollout.backends.replay import replay_logprob
from torl.rollout.tokens import decode, encode_prompt


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tokenizer + randomly initialised Qwen2 LM (~0.1 M parameters)."""
    from torl.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-random"), seed=0)


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory):
    """The same, fitted for a few seconds to TIR arithmetic transcripts: it writes ```python blocks."""
    from torl.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-trained"), seed=0, train_steps=250)


@pytest.fixture(scope="session")
def tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


def check_invariants(result: RolloutResult, tokenizer, *, replay: bool = False) -> None:
    """What must hold for every sample: text = decode(ids); the masked-out spans are exactly the inserted
    observations, in order; logprobs are aligned (replay: a known function of each token)."""
    ids, mask, lps = result.completion_ids, result.mask, result.logprobs
    assert len(ids) == len(mask) == len(lps)
    assert set(mask) <= {0, 1}
    assert decode(tokenizer, ids) == result.text
    if isinstance(result.prompt, str):
        assert result.prompt_ids == encode_prompt(tokenizer, result.prompt)
    spans, start = [], 0
    for value, length in result.mask_runs():
        if value == 0:
            spans.append(decode(tokenizer, ids[start:start + length]))
            assert all(lp == 0.0 for lp in lps[start:start + length])
        start += length
    inserted = [tc.inserted for tc in result.tool_calls if tc.inserted]
    assert spans == inserted
    for tc in result.tool_calls[: len(result.tool_calls) - int(result.truncated)]:
        # every complete observation reads as the reference block in the text
        assert wrap_observation(tc.observation) in result.text
    assert result.num_executions == len(result.tool_calls)
    assert result.all_executions_ok == all(tc.result.ok for tc in result.tool_calls)
    assert result.truncated == (result.finish_reason == "length")
    if replay:
        for t, m, lp in zip(ids, mask, lps, strict=True):
            if m == 1 and not math.isnan(lp):
                assert lp == replay_logprob(t)
