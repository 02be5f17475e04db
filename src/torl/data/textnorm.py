"""Text normalisation shared by deduplication and decontamination.

`normalize_text` removes what does not change a problem (case, spacing, `$` delimiters, `\\left`/`\\right`,
`\\dfrac`/`\\dbinom` vs `\\frac`/`\\binom`, thin spaces); `word_tokens` and `symbol_tokens` split the result for n-gram matching.
"""

from __future__ import annotations

import re

_LATEX_NOISE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])|\\[,;:! ]|~|\$")
_FRAC_BINOM = re.compile(r"\\[dt](frac|binom)(?![a-zA-Z])")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[a-z]+|\d+")
_SYMBOL = re.compile(r"[a-z]+|\d+|[^\sa-z\d.,;:!?]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def normalize_text(text: str) -> str:
    """Lower-cased text with LaTeX spacing/sizing noise removed and whitespace collapsed."""
    text = _FRAC_BINOM.sub(r"\\\1", text)
    text = _LATEX_NOISE.sub(" ", text)
    return _SPACES.sub(" ", text.lower()).strip()


def compact_key(text: str) -> str:
    """The exact-duplicate key: normalised text without any whitespace."""
    return normalize_text(text).replace(" ", "")


def word_tokens(text: str) -> list[str]:
    """Words and numbers of the normalised text (punctuation and symbols dropped): the decontamination unit."""
    return _WORD.findall(normalize_text(text))


def symbol_tokens(text: str) -> list[str]:
    """Words, numbers and single symbols (sentence punctuation dropped) of the normalised text: the
    near-duplicate unit."""
    return _SYMBOL.findall(normalize_text(text))


def numbers(text: str) -> list[str]:
    """The numbers in the text, sorted: two problems with different numbers are different problems."""
    return sorted(_NUMBER.findall(normalize_text(text)))
