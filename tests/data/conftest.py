"""Fixtures of the data tests: the shipped data files, the NuminaMath-format fixtures, a tiny local tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's shared data (TORL_SHARED_DATA, default ../shared/data next to the repository)."""
    path = Path(os.environ.get("TORL_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "raw" / "math_test5000.jsonl").is_file():
        pytest.skip(f"shared data not found at {path} (set TORL_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def numina_fixture() -> Path:
    return FIXTURES / "numina_sample.jsonl"


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory) -> Path:
    """A local word-level tokenizer (one token per word, number or symbol), saved as a transformers directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    out = tmp_path_factory.mktemp("word_tokenizer")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(out)
    return out
