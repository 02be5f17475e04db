"""Answer extraction: the content of the last `\\boxed{…}` a model wrote.

Boxes inside ```` ```output ```` blocks (tool output inserted into the response, not written by the
model) are ignored; an output block left open runs to the end of the text. `\\boxed{…}` and `\\fbox{…}`
take a braced argument with nested braces; `\\boxed 5` takes one token. The last box wins; if it is
empty or its braces never close, there is no answer (None). With `fallback=True` (off for training), a
response without any box falls back to the last "final answer is …" / "the answer is …" / "answer: …".
"""

from __future__ import annotations

import re

from torl.reward.normalize import matching_brace

_OUTPUT_OPEN = "```output"
_FENCE = "```"
_BOX = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_FALLBACK = re.compile(
    r"(?:final answer is|the answer is|answer is|final answer:|answer:)\s*:?\s*(.+?)\s*(?:\n|$)",
    re.IGNORECASE,
)


def _without_output_blocks(text: str) -> str:
    if _OUTPUT_OPEN not in text:
        return text
    parts = []
    pos = 0
    while True:
        start = text.find(_OUTPUT_OPEN, pos)
        if start < 0:
            parts.append(text[pos:])
            break
        parts.append(text[pos:start])
        end = text.find(_FENCE, start + len(_OUTPUT_OPEN))
        if end < 0:
            break
        parts.append(" ")
        pos = end + len(_FENCE)
    return "".join(parts)


def _braced(text: str, open_at: int) -> str | None:
    """Content of the `{…}` starting at `open_at`, or None if it never closes. `\\{` and `\\}` are literal."""
    close = matching_brace(text, open_at)
    return None if close < 0 else text[open_at + 1 : close]


def _box_content(text: str, after: int) -> str | None:
    i = after
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        content = _braced(text, i)
    else:
        m = re.match(r"[^\s$]+", text[i:])  # \boxed 5 / \boxed 5$
        content = m.group() if (m and i > after) else None
    if content is None:
        return None
    content = content.strip()
    return content or None


def _fallback_answer(text: str) -> str | None:
    matches = list(_FALLBACK.finditer(text))
    if not matches:
        return None
    answer = matches[-1].group(1)
    for _ in range(2):
        answer = answer.strip().rstrip(".").strip().strip("$")
    answer = answer.strip()
    return answer or None


def extract_answer(text: str, *, fallback: bool = False) -> str | None:
    """The content of the last `\\boxed{…}` outside tool-output blocks, or None (absent, empty, unbalanced)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    visible = _without_output_blocks(text)
    last = None
    for m in _BOX.finditer(visible):
        last = m
    if last is None:
        return _fallback_answer(visible) if fallback else None
    return _box_content(visible, last.end())
