"""The Qwen2.5 tokenizer, built once per session into a temporary directory (the build itself is under test)."""

import pytest


@pytest.fixture(scope="session")
def qwen25_dir(tmp_path_factory):
    from torl.models.qwen25 import build_qwen25_tokenizer_dir

    return build_qwen25_tokenizer_dir(tmp_path_factory.mktemp("tok") / "qwen2.5")


@pytest.fixture(scope="session")
def qwen25(qwen25_dir):
    """As every engine loads it: AutoTokenizer on the directory."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen25_dir)


@pytest.fixture(scope="session")
def qwen25_fast(qwen25_dir):
    """As `torl.models.qwen25_tokenizer()` returns it: a PreTrainedTokenizerFast over tokenizer.json as written
    (transformers' Qwen2Tokenizer, above, rebuilds its pipeline from the vocabulary and merges)."""
    from torl.models.qwen25 import qwen25_tokenizer

    return qwen25_tokenizer(qwen25_dir)


@pytest.fixture(params=["auto", "fast"])
def any_qwen25(request):
    return request.getfixturevalue("qwen25" if request.param == "auto" else "qwen25_fast")
