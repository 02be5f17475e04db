"""Token/text helpers shared by the rollout loop and the backends. One convention everywhere:

- model text is `decode(ids)` with special tokens skipped and no clean-up of spaces;
- inserted text (observations) is tokenised on its own, without special tokens, and a literal "<|endoftext|>"
  printed by user code stays text (special-token strings are split), so tool output can never inject control
  tokens.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

_FAST_BASES = ("TokenizersBackend", "PreTrainedTokenizerFast")  # transformers 5 / 4


def decode(tokenizer, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
    """The text of `ids`. A transformers fast tokenizer whose decoding is not overridden is decoded by its Rust
    tokenizer directly: the same text (transformers' decode is that call, plus a clean-up we never ask for) without
    transformers' per-token Python type checks, about half of each decode's time."""
    rust = _rust_tokenizer(tokenizer)
    if rust is not None:
        try:
            return rust.decode(ids if isinstance(ids, list) else list(ids), skip_special_tokens=skip_special_tokens)
        except TypeError:  # ids the Rust binding does not take: transformers converts them
            pass
    return tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)


def joined_text(tokenizer, pieces: Sequence[str], ids: Sequence[int]) -> str:
    """`decode(tokenizer, ids)`, given `pieces`, the decoded texts of consecutive spans that make up `ids`: their
    concatenation where that is exactly the same text, so the loop need not decode a whole response again. It is
    for a byte-level decoder (Qwen2.5's: each token is bytes, decoded as UTF-8) when no span ends inside a UTF-8
    character (a piece with U+FFFD might; it then decodes in full), not for decoders that treat the start of a
    text specially (SentencePiece's leading space)."""
    if _byte_level(tokenizer) and not any("\ufffd" in p for p in pieces):
        return "".join(pieces)
    return decode(tokenizer, ids)


@functools.cache
def _plain_fast_class(cls: type) -> bool:
    """Whether `cls` decodes exactly as transformers' fast-tokenizer base class does (nothing overridden)."""
    for base in cls.__mro__:
        if base.__name__ in _FAST_BASES and base.__module__.startswith("transformers."):
            return cls.decode is base.decode and cls._decode is base._decode
    return False


def _rust_tokenizer(tokenizer):
    rust = getattr(tokenizer, "_tokenizer", None)
    if rust is None or not _plain_fast_class(type(tokenizer)) or not hasattr(rust, "decode"):
        return None
    return rust


def _byte_level(tokenizer) -> bool:
    rust = _rust_tokenizer(tokenizer)
    return rust is not None and type(getattr(rust, "decoder", None)).__name__ == "ByteLevel"


def encode_plain(tokenizer, text: str) -> list[int]:
    """Token ids of `text` as plain text: no BOS/EOS added, special-token strings not matched."""
    try:
        return list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))
    except TypeError:  # tokenizers without split_special_tokens
        return list(tokenizer.encode(text, add_special_tokens=False))


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Prompt ids: the tokenizer's special tokens (BOS) are added unless the prompt already starts with BOS
    (a rendered chat template does)."""
    bos = getattr(tokenizer, "bos_token", None)
    add = not (bos and prompt.startswith(bos))
    return list(tokenizer.encode(prompt, add_special_tokens=add))


def eos_token_ids(tokenizer, extra: int | Sequence[int] | None = None) -> list[int]:
    """The EOS ids: the tokenizer's, plus `extra` (e.g. a model's generation_config.eos_token_id)."""
    ids: list[int] = []
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.append(int(tokenizer.eos_token_id))
    if extra is not None:
        for i in [extra] if isinstance(extra, int) else extra:
            if int(i) not in ids:
                ids.append(int(i))
    return ids


def first_stop(tokenizer, ids: Sequence[int], stops: Sequence[str]) -> tuple[int, str] | None:
    """The shortest prefix length k such that `decode(ids[:k])` contains a stop string, and that string.

    Binary search: containment only grows with k. Returns None when no stop string occurs.
    """
    stops = [s for s in stops if s]
    if not stops or not ids:
        return None

    def hit(k: int) -> str | None:
        text = decode(tokenizer, ids[:k], skip_special_tokens=False)
        found = [(text.find(s), s) for s in stops if s in text]
        return min(found)[1] if found else None

    if hit(len(ids)) is None:
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if hit(mid) is None:
            lo = mid + 1
        else:
            hi = mid
    return lo, hit(lo)  # type: ignore[return-value]
