"""The warm-start: its corpus, its tokenisation (identical to what the rollout engine builds, so the supervised
phase and the RL phase see the same token sequences), its loss mask, and that training lowers the loss."""

from __future__ import annotations

import pytest

from torl.demo.model import DemoModelConfig, build_model, load_demo_tokenizer
from torl.demo.warmstart import WarmStartConfig, build_corpus, corpus_texts, encode_example, warm_start
from torl.rollout import RolloutConfig, build_prompt, make_backend, run_rollouts

SMALL = DemoModelConfig(vocab_size=1600, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                        intermediate_size=64)


@pytest.fixture(scope="module")
def corpus():
    return build_corpus(WarmStartConfig(examples=300, tool_fraction=0.5, seed=0))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, corpus):
    return build_model(tmp_path_factory.mktemp("demo-model"), SMALL, corpus_texts(corpus))


def test_corpus_mixes_both_styles_in_the_torl_prompt(corpus):
    tool = [e for e in corpus if e.style == "tool"]
    assert 0.35 < len(tool) / len(corpus) < 0.65
    assert all(e.prompt.startswith(build_prompt("X").split("X")[0]) for e in corpus)
    assert all("```python" in e.response for e in tool)
    assert not any("```" in e.response for e in corpus if e.style == "nl")
    assert all(sum(e.style == "tool" for e in build_corpus(WarmStartConfig(examples=50, tool_fraction=f)))
               == (50 if f == 1.0 else 0) for f in (0.0, 1.0))


def test_tokens_are_exactly_what_the_rollout_engine_builds(model_dir, corpus, local_sandbox):
    """Replay each tool solution's model text through torl.rollout with the real sandbox: the engine's
    prompt + completion ids equal the warm-start ids, and its loss mask equals the warm-start labels."""
    tok = load_demo_tokenizer(model_dir)
    examples = [e for e in corpus if e.style == "tool"][:6] + [e for e in corpus if e.style == "nl"][:2]
    scripts = [[text for text, by_model in e.parts if by_model] for e in examples]
    backend = make_backend("replay", tok, scripts=scripts)
    results = run_rollouts([e.prompt for e in examples], backend=backend, sandbox=local_sandbox,
                           config=RolloutConfig(max_tool_calls=1, max_response_tokens=200))
    for e, r in zip(examples, results, strict=True):
        ids, labels = encode_example(tok, e)
        assert r.prompt_ids + r.completion_ids == ids
        n = len(r.prompt_ids)
        assert labels[:n] == [-100] * n
        assert [int(lab != -100) for lab in labels[n:]] == r.mask
        assert r.text == e.response
        if e.style == "tool":
            assert r.num_executions == 1 and r.tool_calls[0].result.status == "ok"


def test_loss_covers_model_text_and_eos_only(model_dir, corpus):
    tok = load_demo_tokenizer(model_dir)
    e = next(e for e in corpus if e.style == "tool")
    ids, labels = encode_example(tok, e)
    trained = tok.decode([t for t, lab in zip(ids, labels, strict=True) if lab != -100])
    answer = e.parts[1][0].strip().split("\n")[0]
    assert trained.startswith(e.parts[0][0])
    assert trained.endswith(e.parts[2][0] + tok.eos_token)
    assert f"\n{answer}\n```\n" not in trained  # the tool's output is context, not a target


def test_warm_start_lowers_the_loss(model_dir, corpus):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    tok = load_demo_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    result = warm_start(model, tok, corpus, WarmStartConfig(steps=60, batch_size=8, lr=1e-2, warmup_steps=3),
                        progress=False)
    assert result.steps == 60 and len(result.losses) == 60
    assert sum(result.losses[-5:]) / 5 < 0.6 * sum(result.losses[:3]) / 3
    assert not model.training


def test_saved_tokenizer_reloads_identically(model_dir, corpus):
    """Every later stage loads the tokenizer with AutoTokenizer (which, for some architectures, rebuilds the
    pre-tokenizer): the demo tokenizer must tokenise exactly as trained, numbers in 1-3 digit chunks."""
    from transformers import AutoTokenizer

    from torl.demo.model import train_tokenizer

    fresh = train_tokenizer(corpus_texts(corpus), SMALL.vocab_size)
    loaded = AutoTokenizer.from_pretrained(model_dir)
    for text in corpus_texts(corpus)[:50]:
        assert fresh.encode(text) == loaded.encode(text)
    assert loaded.tokenize("print(287663 * 45)")[:4] == ["print", "(", "287", "663"]
