"""Fixtures of the training tests: a tiny random model built locally, configs, and a scripted TIR backend.

The scripted ("replay") backend stands in for the GPU engine only: every sample writes a ```python block that
the real sandbox runs, gets the real observation inserted, then boxes an answer that the real grader scores.
Within each group of 4 samples of one prompt, samples 0 and 2 box the right answer, 1 and 3 a wrong one, and
sample 3's code fails, so rewards, advantages and code-pass ratios are known in advance.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from torl.data.schema import Problem, write_problems

REPO = Path(__file__).resolve().parents[2]
TINY_CPU = REPO / "configs" / "tiny_cpu.yaml"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A randomly initialised tiny Qwen2 model + tokenizer (built once per session, a few seconds)."""
    from torl.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from torl.train.trainer import load_policy_tokenizer

    return load_policy_tokenizer(str(tiny_model))


def arithmetic_problems(n: int, start: int = 0) -> list[Problem]:
    return [Problem(id=f"p{start + i}", problem=f"What is {10 + start + i} + {3 * (start + i) + 1}?",
                    answer=str(10 + start + i + 3 * (start + i) + 1), source="test") for i in range(n)]


@pytest.fixture
def problems_file(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    write_problems(arithmetic_problems(4), path)
    return path


def make_config(run_dir: Path, model: Path, train_file: Path, *overrides: str):
    """tiny_cpu.yaml with the test's model, data and run directory, small and fast."""
    from torl.train.config import load_config

    return load_config(TINY_CPU, [
        f"run_dir={run_dir}", f"model.path={model}", f"data.train_files=[{train_file}]",
        "validation.every=0", "validation.at_start=false", "logging.progress=false",
        "logging.tensorboard=false", "grpo.prompts_per_step=2", "grpo.samples_per_prompt=4",
        "grpo.micro_batch_size=4", "rollout.max_response_tokens=64", "engine.sandbox_workers=1",
        "train.save_final_model=false", *overrides,
    ])


_QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")


def scripted_response(request, tokenizer):
    """Round 0: code (failing for sample 3 of each group); round 1: a right (samples 0, 2) or wrong answer."""
    from torl.rollout.tokens import decode

    prompt = decode(tokenizer, request.prompt_ids)
    a, b = map(int, _QUESTION.findall(prompt)[-1])
    k = request.sample_index % 4
    if request.round_index == 0:
        code = f"print({a} + {b})" if k != 3 else "print(undefined_name)"
        return f"I will compute it.\n```python\n{code}\n```\n```output"
    answer = a + b if k in (0, 2) else a + b + 1
    return f"So the answer is \\boxed{{{answer}}}."


def replay_factory(tokenizer):
    """A backend factory for TIRRolloutFunction: the scripted backend above, whatever the trainer."""
    from torl.rollout import make_backend

    @contextlib.contextmanager
    def factory(trainer):
        yield make_backend("replay", tokenizer, scripts=lambda r: scripted_response(r, tokenizer))

    return factory
