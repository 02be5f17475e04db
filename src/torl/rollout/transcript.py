"""Readable transcripts of rollouts: model text plain, observations (mask 0) highlighted."""

from __future__ import annotations

from torl.rollout.result import RolloutResult
from torl.rollout.tokens import decode


def segments(result: RolloutResult, tokenizer) -> list[tuple[str, bool]]:
    """The response as (text, is_model) pieces, one per run of the mask."""
    out, start = [], 0
    for value, length in result.mask_runs():
        out.append((decode(tokenizer, result.completion_ids[start:start + length]), bool(value)))
        start += length
    return out


def render(result: RolloutResult, tokenizer, *, title: str = ""):
    """A rich renderable: a panel with the response, observations in reverse video."""
    from rich.panel import Panel
    from rich.text import Text

    body = Text()
    for text, is_model in segments(result, tokenizer):
        body.append(text, style=None if is_model else "bold black on bright_green")
    status = (f"{result.finish_reason}{', truncated' if result.truncated else ''} · {result.num_executions} "
              f"execution(s) · {result.num_model_tokens} model + {result.num_observation_tokens} tool tokens")
    return Panel(body, title=title or None, subtitle=status, expand=True)
