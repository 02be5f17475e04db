"""Training and validation problems: torl Problem files -> prompt rows for GRPOTrainer.

A training row is {"prompt": the rendered prompt text, "problem_id", "answer", "source"}; GRPOTrainer passes
"prompt" to the rollout function and the other columns to the reward function. Prompts longer than
`max_prompt_tokens` are dropped and counted (TORL-SPEC §3: the reference dropped prompts over 390 Qwen2.5 tokens);
`data.length_tokenizer` chooses the tokenizer that counts them (the recipes: "qwen2.5"). Training files may be
torl Problem files or veRL / reference parquet files (TORL-SPEC §2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from torl.data.eval_sets import is_verl_parquet, load_benchmark, load_verl_benchmarks
from torl.data.readers import read_problems
from torl.data.schema import Problem
from torl.errors import UserInputError
from torl.models.qwen25 import resolve_tokenizer_path
from torl.rollout.templates import build_prompt
from torl.rollout.tokens import encode_prompt

log = logging.getLogger(__name__)


@dataclass
class PromptSet:
    """Rendered prompts and what was dropped on the way."""

    rows: list[dict]
    n_read: int
    n_too_long: int
    n_duplicate_ids: int
    longest_kept: int
    dropped_ids: list[str] = field(default_factory=list)

    def report(self) -> dict:
        return {"read": self.n_read, "kept": len(self.rows), "dropped_too_long": self.n_too_long,
                "dropped_duplicate_ids": self.n_duplicate_ids, "longest_prompt_tokens": self.longest_kept,
                "dropped_ids_sample": self.dropped_ids[:20]}


def read_train_problems(files: Sequence[str]) -> list[Problem]:
    problems: list[Problem] = []
    for f in files:
        problems += read_problems(f)
    if not problems:
        raise UserInputError(f"data.train_files: no problems in {', '.join(files)}")
    return problems


def render_prompts(problems: Sequence[Problem], tokenizer, *, template: str, max_prompt_tokens: int,
                   length_tokenizer=None) -> PromptSet:
    """Render every problem with the template; drop (and count) prompts over the limit and repeated ids.
    Lengths are counted with `length_tokenizer` (a tokenizer, a directory or "qwen2.5"; None: `tokenizer`)."""
    if isinstance(length_tokenizer, str):
        length_tokenizer = load_length_tokenizer(length_tokenizer)
    counter = length_tokenizer if length_tokenizer is not None else tokenizer
    rows, seen, dropped = [], set(), []
    too_long = dup = longest = 0
    for p in problems:
        if p.id in seen:
            dup += 1
            continue
        seen.add(p.id)
        text = build_prompt(p.problem, template, tokenizer)
        n = len(encode_prompt(counter, text))
        if n > max_prompt_tokens:
            too_long += 1
            dropped.append(p.id)
            continue
        longest = max(longest, n)
        rows.append({"prompt": text, "problem_id": p.id, "answer": p.answer, "source": p.source})
    if dup:
        log.warning("dropped %d problems whose id repeats an earlier one", dup)
    if too_long:
        log.warning("dropped %d of %d prompts longer than %d tokens", too_long, len(problems), max_prompt_tokens)
    return PromptSet(rows, len(problems), too_long, dup, longest, dropped)


def load_length_tokenizer(name_or_path: str):
    """The tokenizer that measures prompt lengths (`data.length_tokenizer`): "qwen2.5" (built offline, the
    reference's tokenizer) or a local tokenizer directory."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_tokenizer_path(name_or_path), local_files_only=True)
    except Exception as e:  # transformers raises OSError/ValueError/... for a bad directory
        raise UserInputError(f"data.length_tokenizer: cannot load {name_or_path!r} ({type(e).__name__}: {e})") from None


def load_validation_problems(benchmarks: Sequence[str], files: Sequence[str],
                             max_items: int | None) -> dict[str, list[Problem]]:
    """{name: problems}: shipped benchmarks by name, files by their stem; each capped at max_items."""
    out: dict[str, list[Problem]] = {}
    if benchmarks:
        for name in benchmarks:
            out[name] = load_benchmark(name)
    for f in files:
        from pathlib import Path

        # a veRL / reference file (e.g. the reference's test.parquet) is one set per data_source, as it reports them
        found = load_verl_benchmarks(f) if is_verl_parquet(str(f)) else {Path(f).stem: read_problems(f)}
        for name, problems in found.items():
            if name in out:
                raise UserInputError(f"validation.files: {f} has the same name as another validation set ({name})")
            out[name] = problems
    if max_items is not None:
        out = {k: v[:max_items] for k, v in out.items()}
    return out
