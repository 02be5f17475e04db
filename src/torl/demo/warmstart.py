"""The supervised warm-start: teach a fresh model the torl prompt format and both ways of answering.

The corpus mixes natural-language solutions and tool solutions (`problems.solution_text`) of generated
problems, the tool one in a `tool_fraction` of them, so the resulting "base model" knows the format but uses
the tool only sometimes, as Qwen2.5-Math does. The prompt is the torl template (`torl.rollout.build_prompt`);
a text is tokenised piece by piece exactly as the rollout loop builds a response (prompt, model text, the
tool's inserted output, model text), and the loss covers the model's pieces only, as in the RL phase.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from torl.demo.problems import LEVELS, Exercise, generate, solution_parts
from torl.rollout.templates import build_prompt
from torl.rollout.tokens import encode_plain, encode_prompt


@dataclass
class WarmStartConfig:
    """examples: corpus size; tool_fraction: share of tool solutions; levels: problem sizes in the corpus.
    steps, batch_size, lr (AdamW, linear warm-up then cosine decay), weight_decay: the supervised phase."""

    examples: int = 8000
    tool_fraction: float = 0.3
    levels: list[int] = field(default_factory=lambda: list(LEVELS))
    steps: int = 1200
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.tool_fraction <= 1.0:
            raise ValueError(f"tool_fraction must be in [0, 1], got {self.tool_fraction}")
        if self.examples < 1 or self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("examples, batch_size and lr must be positive and steps >= 0")
        if not self.levels or not set(self.levels) <= set(LEVELS):
            raise ValueError(f"levels must be a non-empty subset of {list(LEVELS)}, got {self.levels}")


@dataclass
class Example:
    """prompt, then the response as (text, written_by_model) pieces; style "nl" or "tool"."""

    prompt: str
    parts: list[tuple[str, bool]]
    style: str

    @property
    def response(self) -> str:
        return "".join(text for text, _ in self.parts)


def build_corpus(cfg: WarmStartConfig, *, exclude: set[str] | frozenset[str] = frozenset()) -> list[Example]:
    """The warm-start texts: prompt (torl template) + a solution, tool style with probability tool_fraction."""
    rng = random.Random(cfg.seed + 1)
    exercises = generate(cfg.examples, seed=cfg.seed, levels=cfg.levels, exclude=exclude)
    out = []
    for ex in exercises:
        style = "tool" if rng.random() < cfg.tool_fraction else "nl"
        out.append(Example(build_prompt(ex.problem, "torl"), solution_parts(ex, style), style))
    return out


def corpus_texts(examples: Sequence[Example]) -> list[str]:
    """Whole texts (prompt + response) for training a tokenizer."""
    return [e.prompt + e.response for e in examples]


def encode_example(tokenizer, ex: Example) -> tuple[list[int], list[int]]:
    """(input ids, labels): the prompt ids as the rollout loop builds them, then each response piece tokenised
    on its own, then EOS. Only the model's pieces and EOS are labelled; the rest is -100 (no loss)."""
    ids = encode_prompt(tokenizer, ex.prompt)
    labels = [-100] * len(ids)
    for text, by_model in ex.parts:
        piece = encode_plain(tokenizer, text)
        ids += piece
        labels += piece if by_model else [-100] * len(piece)
    ids.append(tokenizer.eos_token_id)
    labels.append(tokenizer.eos_token_id)
    return ids, labels


def _batch(rows: list[tuple[list[int], list[int]]], pad_id: int):
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        attention[i, : len(x)] = 1
    return ids, labels, attention


@dataclass
class WarmStartResult:
    steps: int
    final_loss: float
    seconds: float
    losses: list[float]


def warm_start(model, tokenizer, examples: Sequence[Example], cfg: WarmStartConfig, *,
               progress: bool = True) -> WarmStartResult:
    """Train `model` in place on `examples` for `cfg.steps` steps (next-token loss on response tokens)."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed + 2)
    encoded = [encode_example(tokenizer, e) for e in examples]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress_ = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses: list[float] = []
    order: list[int] = []
    start = time.monotonic()
    bar = tqdm(range(cfg.steps), desc="warm-start", unit="step", disable=not progress, dynamic_ncols=True)
    for _ in bar:
        if len(order) < cfg.batch_size:
            order += rng.sample(range(len(encoded)), len(encoded))
        rows = [encoded[i] for i in order[: cfg.batch_size]]
        del order[: cfg.batch_size]
        ids, labels, attention = _batch(rows, tokenizer.pad_token_id)
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", refresh=False)
    bar.close()
    model.eval()
    tail = losses[-20:] or [float("nan")]
    return WarmStartResult(cfg.steps, sum(tail) / len(tail), time.monotonic() - start, losses)


def exercises_texts(exercises: Sequence[Exercise]) -> set[str]:
    return {e.problem for e in exercises}
