"""The tiny demo model builder, and the backend factory / vLLM output conversion (vLLM itself is not installed)."""

import importlib.util
import math
from types import SimpleNamespace

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from torl.rollout import GenerationRequest, build_prompt, make_backend
from torl.train.tiny_model import arithmetic_problems, build_tiny_model


def test_tiny_model_is_a_normal_model_directory(tiny_dir):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    n = sum(p.numel() for p in model.parameters())
    assert 50_000 < n < 2_000_000
    assert tok.eos_token == tok.pad_token == "<|endoftext|>" and tok.chat_template
    text = build_prompt("What is 12 * 7?") + "```python\nprint(12 * 7)\n```\n```output\n84\n```\n\\boxed{84} é √ 数"
    assert tok.decode(tok.encode(text)) == text  # byte-level: everything round-trips
    assert len(tok.encode(build_prompt("What is 12 * 7?"))) < 80  # the template is in the vocabulary


def test_tiny_model_is_deterministic_given_a_seed(tmp_path, tiny_dir):
    import torch

    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert (again / "tokenizer.json").read_bytes() == (tiny_dir / "tokenizer.json").read_bytes()
    a, b, c = (AutoModelForCausalLM.from_pretrained(d).state_dict() for d in (tiny_dir, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_demo_problems():
    problems = arithmetic_problems(5, seed=2)
    assert len(problems) == 5 and problems == arithmetic_problems(5, seed=2)
    for p in problems:
        a, op, b = p.problem.removeprefix("What is ").removesuffix("?").split()
        assert str(eval(f"{a} {op} {b}")) == p.answer  # noqa: S307 - our own generated arithmetic


def test_make_backend_kinds(tokenizer):
    with pytest.raises(ValueError, match="backend must be one of"):
        make_backend("tgi", "m")
    assert make_backend("replay", tokenizer, scripts=[["x"]]).name == "replay"
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ImportError, match=r"torl\[vllm\]"):
            make_backend("vllm", "some/model")


def test_vllm_output_conversion():
    from torl.rollout.backends.vllm_backend import completion_to_generation

    req = GenerationRequest([1, 2], 10, ("```output",))
    lp = lambda x: SimpleNamespace(logprob=x)  # noqa: E731
    stop = completion_to_generation(SimpleNamespace(token_ids=(5, 6), logprobs=[{5: lp(-0.5)}, {6: lp(-0.25), 9: lp(-3)}],
                                         finish_reason="stop", stop_reason="```output"), req)
    assert (stop.token_ids, stop.logprobs, stop.finish_reason, stop.stop_text) == ([5, 6], [-0.5, -0.25], "stop",
                                                                                   "```output")
    eos = completion_to_generation(SimpleNamespace(token_ids=[7, 0], logprobs=None, finish_reason="stop", stop_reason=None), req)
    assert eos.finish_reason == "eos" and all(math.isnan(x) for x in eos.logprobs)
    length = completion_to_generation(SimpleNamespace(token_ids=[3], logprobs=[{3: lp(-1.0)}], finish_reason="length",
                                           stop_reason=None), req)
    assert (length.finish_reason, length.logprobs) == ("length", [-1.0])
