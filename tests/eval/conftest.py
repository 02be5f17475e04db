"""Fixtures of the eval tests: a locally built tokenizer, a tiny trained model, and a scripted replay backend."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tokenizer():
    from torl.train.tiny_model import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2 model fitted for a few seconds to the demo TIR corpus: it writes ```python blocks."""
    from torl.train.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), train_steps=80)


class ScriptedModel:
    """A replay 'model' that answers by problem text: `scripts[problem][round]` (a list of round texts, or a
    function (sample_index) -> list of round texts). Records every problem it was asked about (round 0)."""

    def __init__(self, tokenizer, scripts: dict, *, fail_on: str | None = None):
        self.tokenizer = tokenizer
        self.scripts = scripts
        self.fail_on = fail_on
        self.asked: list[str] = []

    def __call__(self, request):
        context = self.tokenizer.decode(request.prompt_ids)
        problem = next(p for p in self.scripts if f"\n{p}\nAssistant:" in context)
        if request.round_index == 0:
            if problem == self.fail_on:
                raise RuntimeError(f"simulated crash on {problem!r}")
            self.asked.append(problem)
        rounds = self.scripts[problem]
        if callable(rounds):
            rounds = rounds(request.sample_index)
        return rounds[request.round_index]

    def backend(self):
        from torl.rollout import make_backend

        return make_backend("replay", self.tokenizer, scripts=self)


@pytest.fixture
def scripted(tokenizer):
    def make(scripts, **kw):
        return ScriptedModel(tokenizer, scripts, **kw)

    return make
