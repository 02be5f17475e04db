"""Token/text helpers shared by the engine and the backends. One convention everywhere:

- model text is `decode(ids)` with special tokens skipped and no clean-up of spaces;
- inserted text (observations) is tokenised on its own, without special tokens, and a literal "<|endoftext|>"
  printed by user code stays text (special-token strings are split), so tool output can never inject control
  tokens.
"""

from __future__ import annotations

from collections.abc import Sequence


def decode(tokenizer, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)


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
