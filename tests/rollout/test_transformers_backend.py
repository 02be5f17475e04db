"""TransformersBackend on tiny local models: batching, per-row stops, budgets, logprobs, model objects."""

import asyncio

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from torl.rollout import GenerationRequest, build_prompt, make_backend
from torl.rollout.backends.transformers_backend import RowStops, TransformersBackend
from torl.rollout.tokens import decode, encode_plain


@pytest.fixture(scope="module")
def trained(trained_dir):
    return make_backend("transformers", trained_dir, device="cpu", seed=0, batch_wait_s=0.0)


def _prompt_ids(backend, problem):
    return backend.tokenizer.encode(build_prompt(problem))


def test_row_stops_end_each_row_at_its_own_reason(tokenizer):
    enc = lambda s: encode_plain(tokenizer, s)  # noqa: E731
    ctx = enc("prefix ```out")  # a stop string spanning the context must not count
    rows = [enc("put then ```python\nx\n```\n```output\nmore"),
            enc("a b c") + [tokenizer.eos_token_id] + enc("d e"),
            enc("one two three four five six seven"),
            enc("put")]
    stops = RowStops(tokenizer, len(ctx), budgets=[100, 100, 4, 100], stops=[("```output",), (), (), ("```output",)],
                     eos_ids=[tokenizer.eos_token_id])
    width, filler = max(len(r) for r in rows), enc("z")
    for t in range(1, width + 1):
        batch = torch.tensor([ctx + (r + filler * width)[:t] for r in rows])
        done = stops(batch, None)
    assert done.tolist() == [True, True, True, False]
    first = decode(tokenizer, rows[0][: stops.end[0]])
    assert stops.reason[0] == "stop" and stops.stop_text[0] == "```output" and first.endswith("```output")
    assert not decode(tokenizer, rows[0][: stops.end[0] - 1]).endswith("```output")
    assert (stops.reason[1], stops.end[1]) == ("eos", len(enc("a b c")) + 1)
    assert (stops.reason[2], stops.end[2]) == ("length", 4)
    assert stops.end[3] is None  # "```out" + "put" spans the context: not a stop


def test_generation_follows_the_request(trained, local_sandbox):
    ids = _prompt_ids(trained, "What is 12 + 30?")
    gens = trained.generate_batch([
        GenerationRequest(ids, 64, ("```output",), temperature=0.0),
        GenerationRequest(ids, 64, (), temperature=0.0),
        GenerationRequest(ids, 3, ("```output",), temperature=0.0),
    ])
    stop, free, short = gens
    text = decode(trained.tokenizer, stop.token_ids)
    assert stop.finish_reason == "stop" and stop.stop_text == "```output" and text.endswith("```output")
    assert "```python" in text
    assert free.finish_reason == "eos" and free.token_ids[-1] in trained.eos_ids
    assert free.token_ids[: len(stop.token_ids)] == stop.token_ids  # greedy: the same path, past the marker
    assert "```output" in decode(trained.tokenizer, free.token_ids)
    assert short.finish_reason == "length" and len(short.token_ids) == 3
    assert short.token_ids == stop.token_ids[:3]


def test_batched_equals_one_at_a_time_and_logprobs_are_the_models(trained):
    problems = ["What is 5 * 6?", "What is 81 - 17?", "What is 4 + 93?"]
    reqs = [GenerationRequest(_prompt_ids(trained, p) + ([] if k else [trained.tokenizer.encode("Let")[0]]), 40,
                              ("```output",), temperature=0.0) for k, p in enumerate(problems)]
    together = trained.generate_batch(reqs)
    alone = [trained.generate_batch([r])[0] for r in reqs]
    for a, b in zip(together, alone, strict=True):
        assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
        assert torch.allclose(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-4)
    # the recorded logprobs are log softmax of the model's logits at the sampled tokens
    for req, gen in zip(reqs, together, strict=True):
        _check_logprobs(trained.model, req.prompt_ids, gen, temperature=1.0)


def test_sampled_logprobs_use_the_temperature(trained):
    torch.manual_seed(1)
    req = GenerationRequest(_prompt_ids(trained, "What is 7 + 8?"), 30, (), temperature=0.7)
    gen = trained.generate_batch([req])[0]
    assert len(gen.token_ids) > 5
    _check_logprobs(trained.model, req.prompt_ids, gen, temperature=0.7)


def _check_logprobs(model, prompt_ids, gen, *, temperature):
    seq = torch.tensor([prompt_ids + gen.token_ids])
    with torch.no_grad():
        logits = model(seq).logits[0, len(prompt_ids) - 1:-1].float()
    expected = torch.log_softmax(logits / temperature, -1).gather(1, torch.tensor(gen.token_ids)[:, None])[:, 0]
    assert torch.allclose(torch.tensor(gen.logprobs), expected, atol=1e-4)


def test_concurrent_requests_share_batches(trained):
    ids = _prompt_ids(trained, "What is 2 + 2?")
    backend = TransformersBackend(trained.model, trained.tokenizer, batch_wait_s=0.01)

    async def main():
        return await asyncio.gather(*(backend.agenerate(GenerationRequest(ids, 8, (), temperature=0.0))
                                      for _ in range(6)))

    gens = asyncio.run(main())
    assert backend.stats.batches == 1 and backend.stats.requests == 6
    assert all(g.token_ids == gens[0].token_ids for g in gens)


def test_a_loaded_model_object_and_its_state_are_respected(trained_dir):
    tok = AutoTokenizer.from_pretrained(trained_dir)
    model = AutoModelForCausalLM.from_pretrained(trained_dir)
    model.train()
    # the model's own generation settings must not leak into sampling: forbidding EOS here would
    # make every response run to the budget if they did
    model.generation_config.suppress_tokens = [tok.eos_token_id]
    model.generation_config.top_k = 1
    backend = make_backend("transformers", model, tokenizer=tok, batch_wait_s=0.0)
    gen = backend.generate_batch([GenerationRequest(tok.encode(build_prompt("What is 1 + 1?")), 96, (),
                                                    temperature=0.0)])[0]
    assert gen.finish_reason == "eos"
    assert model.training and model.generation_config.suppress_tokens == [tok.eos_token_id]
    with pytest.raises(ValueError, match="tokenizer"):
        TransformersBackend(model)


def test_the_context_limit_ends_a_round(tiny_dir):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    model.config.max_position_embeddings = 70
    backend = TransformersBackend(model, tok, batch_wait_s=0.0)
    ids = tok.encode(build_prompt("What is 1 + 1?"))
    full, some = backend.generate_batch([GenerationRequest(ids + [5] * (70 - len(ids)), 10),
                                         GenerationRequest(ids, 50)])
    assert full.token_ids == [] and full.finish_reason == "length"
    assert len(some.token_ids) <= 70 - len(ids)
    assert some.finish_reason in ("length", "eos")
