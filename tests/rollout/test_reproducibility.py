"""Per-request seeds: a seeded sample's tokens depend on its prompt and seed only, not on the batch it shares,
the batch size, its pad width or timing (transformers backend); the OpenAI backend sends the seed; `torl rollout
--seed` gives the same samples token for token, and others with another seed."""

from __future__ import annotations

import json

import pytest
import torch

from torl.cli import main
from torl.data import write_problems
from torl.rollout import GenerationRequest, RolloutConfig, build_prompt, make_backend, run_rollouts
from torl.rollout.backends.transformers_backend import SeededSampler
from torl.rollout.seeds import derive_seed
from torl.train.tiny_model import arithmetic_problems

from .test_openai_backend import SCRIPTS, STOP, _backend, fake_vllm  # noqa: F401 - fake_vllm is a fixture


@pytest.fixture(scope="module")
def random_lm(tiny_dir):
    """The untrained tiny model: near-uniform next-token distributions, long responses (many draws to compare)."""
    return make_backend("transformers", tiny_dir, device="cpu", batch_wait_s=0.0)


@pytest.mark.parametrize(("temperature", "top_p", "expected"), [
    (1.0, 1.0, [0.5, 0.3, 0.15, 0.05]),
    (1.0, 0.7, [0.625, 0.375, 0.0, 0.0]),  # HF's top-p: the smallest set with mass >= 0.7, renormalised
    (2.0, 1.0, [p**0.5 / sum(q**0.5 for q in (0.5, 0.3, 0.15, 0.05)) for p in (0.5, 0.3, 0.15, 0.05)]),
])
def test_seeded_sampler_draws_from_the_warped_distribution(temperature, top_p, expected):
    n = 4000
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().repeat(n, 1)
    sampler = SeededSampler(list(range(n)), [1] * n, prompt_len=5, temperature=temperature, top_p=top_p)
    out = sampler(torch.zeros((n, 5), dtype=torch.long), logits)
    assert ((out == 0).sum(1) == 1).all() and (out.isinf().sum(1) == 3).all()  # one token left per row
    freq = torch.bincount(out.argmax(1), minlength=4).double() / n
    assert torch.allclose(freq, torch.tensor(expected, dtype=torch.float64), atol=0.03), freq
    # the draw is the seed's: the same seeds in another order give the same tokens per seed
    again = sampler.__class__(list(range(n))[::-1], [1] * n, 5, temperature, top_p)
    assert (again(torch.zeros((n, 5), dtype=torch.long), logits).argmax(1).flip(0) == out.argmax(1)).all()


def test_a_seeded_row_does_not_depend_on_its_batch(random_lm):
    tok = random_lm.tokenizer
    short = tok.encode(build_prompt("What is 2 + 3?"))
    others = [tok.encode(build_prompt(f"What is {i} * {i + 7}?" + " Think." * i)) for i in range(1, 8)]
    assert min(len(o) for o in others) > len(short)  # in the batch, the row is left-padded

    def req(ids, seed, top_p=0.9):
        return GenerationRequest(ids, 48, (), temperature=1.0, top_p=top_p, seed=seed)

    alone = random_lm.generate_batch([req(short, 7)])[0]
    batch = random_lm.generate_batch([req(o, 100 + i) for i, o in enumerate(others[:4])] + [req(short, 7)]
                                     + [req(o, 200 + i) for i, o in enumerate(others[4:])])
    assert len(batch) == 8 and len(alone.token_ids) >= 20
    assert batch[4].token_ids == alone.token_ids and batch[4].finish_reason == alone.finish_reason
    # the other rows too: each equals its own run alone
    assert batch[0].token_ids == random_lm.generate_batch([req(others[0], 100)])[0].token_ids
    # logprobs are as without seeds: log softmax(logits / T) of the sampled token (top-p does not renormalise)
    seq = torch.tensor([short + alone.token_ids])
    with torch.no_grad():
        logits = random_lm.model(seq).logits[0, len(short) - 1 : -1].float()
    expected = torch.log_softmax(logits, -1).gather(1, torch.tensor(alone.token_ids)[:, None])[:, 0]
    assert torch.allclose(torch.tensor(alone.logprobs), expected, atol=1e-4)
    assert torch.allclose(torch.tensor(batch[4].logprobs), expected, atol=1e-4)
    # and the seed matters
    assert random_lm.generate_batch([req(short, 8)])[0].token_ids != alone.token_ids
    assert random_lm.generate_batch([req(short, 7, top_p=1.0)])[0].token_ids != alone.token_ids


def test_seeded_rollouts_do_not_depend_on_batching_or_timing(tiny_dir):
    prompts = [build_prompt(f"What is {i} + {2 * i}?") for i in range(6)]
    seeds = [derive_seed(3, i) for i in range(6)]
    config = RolloutConfig(max_tool_calls=0, max_response_tokens=40)
    runs = []
    for max_batch_size, wait in ((64, 0.02), (1, 0.0), (4, 0.0)):
        backend = make_backend("transformers", tiny_dir, device="cpu", max_batch_size=max_batch_size,
                               batch_wait_s=wait)
        runs.append([r.completion_ids for r in run_rollouts(prompts, backend=backend, sandbox=None, config=config,
                                                             seeds=seeds)])
        if max_batch_size == 64:
            assert backend.stats.mean_batch_size > 1
    assert runs[0] == runs[1] == runs[2]
    assert len(set(map(tuple, runs[0]))) == 6  # six different samples


def test_openai_backend_sends_each_rounds_seed(fake_vllm, tokenizer, local_sandbox):  # noqa: F811
    url, state = fake_vllm
    prompts = [build_prompt(p) for p in SCRIPTS]
    seeds = [derive_seed(11, i) for i in range(len(prompts))]
    run_rollouts(prompts, backend=_backend(url, tokenizer), sandbox=local_sandbox, config=RolloutConfig(),
                 seeds=seeds)
    bodies = state["bodies"]
    assert len(bodies) == 2 * len(prompts)
    for body in bodies:
        context = tokenizer.decode(body["prompt"])
        i = next(k for k, p in enumerate(SCRIPTS) if f"\n{p}\nAssistant:" in context)
        assert body["seed"] == derive_seed(seeds[i], context.count(STOP))
    state["bodies"].clear()
    run_rollouts(prompts[:1], backend=_backend(url, tokenizer), sandbox=local_sandbox, config=RolloutConfig())
    assert state["bodies"] and all("seed" not in b for b in state["bodies"])


def _rollout(model, problems, out, *extra) -> list[dict]:
    argv = ["rollout", "--model", str(model), "--input", str(problems), "--out", str(out), "-n", "2",
            "--max-response-tokens", "64", "--temperature", "1.0", "--sandbox-workers", "1", "--ids", *extra]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return sorted(rows, key=lambda r: (r["problem_id"], r["sample"]))  # written as they finish


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


def test_torl_rollout_seed_gives_the_same_samples(trained_dir, tmp_path):
    problems = tmp_path / "problems.jsonl"
    write_problems(arithmetic_problems(3, seed=5), problems)
    a = _rollout(trained_dir, problems, tmp_path / "a.jsonl", "--seed", "1")
    b = _rollout(trained_dir, problems, tmp_path / "b.jsonl", "--seed", "1", "--batch-size", "2")
    c = _rollout(trained_dir, problems, tmp_path / "c.jsonl", "--seed", "2")
    # token ids, texts, tool calls and observations; logprobs up to float rounding (batch-size-dependent matmuls)
    assert len(a) == 6 and [_without(r, "logprobs") for r in a] == [_without(r, "logprobs") for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert all(x == y or abs(x - y) < 1e-4 for x, y in zip(ra["logprobs"], rb["logprobs"], strict=True))
    assert sum(r["num_executions"] for r in a) >= 1  # the sandbox took part
    assert all(r["seed"] == 1 for r in a)
    assert len({r["sample_seed"] for r in a}) == 6
    assert [r["completion_ids"] for r in c] != [r["completion_ids"] for r in a]
