"""Token exactness with the real Qwen2.5 tokenizer (built offline): the stop marker across and inside tokens,
sampled ids kept as sampled, observations tokenised on their own, and C = 0..3 under both budget meanings."""

import pytest

from torl.rollout import RolloutConfig, build_prompt, run_rollouts
from torl.rollout.backends.replay import ReplayBackend
from torl.rollout.observation import REFERENCE_TIMEOUT_TEXT, extract_code
from torl.rollout.tokens import decode, encode_plain

from .conftest import check_invariants

MARKER = [73594, 3006]  # "```" "output"
PROMPT = build_prompt("What is 3 + 4?")
CODE_ROUND = "Let me compute.\n```python\nprint(3 + 4)\n```\n```output"
ANSWER = "\nSo the answer is \\boxed{7}."


@pytest.fixture(scope="module")
def qwen():
    from torl.models import qwen25_tokenizer

    return qwen25_tokenizer()  # ~/.cache/torl/tokenizers/qwen2.5, built on first use


def roll(tok, sandbox, scripts, check=True, **config):
    backend = ReplayBackend(tok, scripts)
    results = run_rollouts([PROMPT] * len(scripts), backend=backend, sandbox=sandbox,
                           config=RolloutConfig(**config))
    for r in results:
        if check:
            check_invariants(r, tok, replay=True)
    return results, backend


def test_marker_across_two_tokens_and_the_observation_on_its_own(qwen, local_sandbox):
    (r,), backend = roll(qwen, local_sandbox, [[CODE_ROUND, ANSWER]])
    round1 = encode_plain(qwen, CODE_ROUND)
    assert round1[-4:] == [13874, 3989] + MARKER  # "``" "`\n" "```" "output": the fence merged with its newline
    assert r.completion_ids[: len(round1)] == round1
    (tc,) = r.tool_calls
    assert tc.inserted == "\n7\n```\n"
    obs_ids = r.completion_ids[len(round1): len(round1) + 5]
    assert obs_ids == [198, 22, 198, 13874, 3989] == encode_plain(qwen, tc.inserted)
    assert r.mask == [1] * len(round1) + [0] * 5 + [1] * (len(r.mask) - len(round1) - 5)
    assert r.text == CODE_ROUND + "\n7\n```\n" + ANSWER
    # the next round starts with "\n": re-tokenising the whole text would merge it into the fence ("`\n\n"), so
    # the training ids are the sampled ones, not a re-encoding (the reference's off-policy drift)
    assert encode_plain(qwen, r.text) != r.completion_ids[:-1]
    assert decode(qwen, r.completion_ids) == r.text


def test_marker_ends_inside_a_token(qwen, local_sandbox):
    text = CODE_ROUND + "s"  # "```" "outputs": the marker ends one character into the last token
    assert encode_plain(qwen, text)[-2:] == [73594, 41006]
    (r,), backend = roll(qwen, local_sandbox, [[text, ANSWER]], check=False)
    assert backend.requests[0].stop == ("```output",)
    ids = encode_plain(qwen, text)
    assert r.completion_ids[: len(ids) + 5] == ids + [198, 22, 198, 13874, 3989]  # the model's "s" stays its own
    assert r.mask[: len(ids) + 5] == [1] * len(ids) + [0] * 5
    assert [tc.observation for tc in r.tool_calls] == ["7"] and r.text == text + "\n7\n```\n" + ANSWER
    assert decode(qwen, r.completion_ids) == r.text


def test_marker_begins_inside_a_token(qwen, local_sandbox):
    text = "Run it:\n```python\nprint(3 + 4)\n```\nNow ```output"  # " ```" "output": the marker starts mid-token
    ids = encode_plain(qwen, text)
    assert ids[-2:] == [54275, 3006]
    (r,), _ = roll(qwen, local_sandbox, [[text, ANSWER]])
    assert r.completion_ids[: len(ids)] == ids and r.num_executions == 1
    assert r.text == text + "\n7\n```\n" + ANSWER


def test_sampled_ids_are_kept_even_when_not_canonical(qwen, local_sandbox):
    # a model may sample "```output" as "``" "`" "output": the engine keeps those ids (no re-tokenisation)
    head = encode_plain(qwen, CODE_ROUND[: -len("```output")])
    sampled = head + [13874, 63, 3006]
    assert decode(qwen, sampled) == CODE_ROUND and encode_plain(qwen, CODE_ROUND) != sampled
    (r,), _ = roll(qwen, local_sandbox, [[sampled, ANSWER]])
    assert r.completion_ids[: len(sampled)] == sampled and r.num_executions == 1
    assert r.text == CODE_ROUND + "\n7\n```\n" + ANSWER


def test_an_engine_that_drops_the_stop_text(qwen, local_sandbox):
    backend = ReplayBackend(qwen, [[CODE_ROUND, ANSWER]], drop_stop_text=True)
    (r,) = run_rollouts([PROMPT], backend=backend, sandbox=local_sandbox, config=RolloutConfig())
    check_invariants(r, qwen)
    round1 = encode_plain(qwen, CODE_ROUND)
    assert r.completion_ids[: len(round1)] == round1  # the marker is restored as the model's own tokens
    assert r.text == CODE_ROUND + "\n7\n```\n" + ANSWER


NO_CODE = "I think it is 7.\n```output"  # stops at the marker without a block: nothing runs
ROUNDS = [NO_CODE, "\nLet me check.\n```python\nprint(6 * 7)\n```\n```output",
          "\nAnd this.\n```python\nprint(sum(range(5)))\n```\n```output", ANSWER]
S = ("```output",)
# (budget, C) -> (the stop strings of each request, executions)
BUDGETS = {
    ("executions", 0): ([()], 0),
    ("executions", 1): ([S, S, ()], 1),
    ("executions", 2): ([S, S, S, ()], 2),
    ("executions", 3): ([S, S, S, S], 2),
    ("rounds", 0): ([()], 0),
    ("rounds", 1): ([S, ()], 0),
    ("rounds", 2): ([S, S, ()], 1),
    ("rounds", 3): ([S, S, S, ()], 2),
}


@pytest.mark.parametrize(("budget", "c"), list(BUDGETS), ids=[f"{b}-C{c}" for b, c in BUDGETS])
def test_tool_call_budget(qwen, local_sandbox, budget, c):
    stops, executions = BUDGETS[budget, c]
    (r,), backend = roll(qwen, local_sandbox if c else None, [ROUNDS], max_tool_calls=c, tool_call_budget=budget)
    assert [q.stop for q in backend.requests] == stops
    assert r.num_executions == executions and r.num_rounds == len(stops) and r.finish_reason == "eos"
    assert [tc.observation for tc in r.tool_calls] == ["42", "10"][:executions]
    assert [v for v, _ in r.mask_runs()] == [1, 0] * executions + [1]
    # every model token is the scripted one, in order; only observations are inserted
    model = [t for t, m in zip(r.completion_ids, r.mask, strict=True) if m == 1]
    scripted = [t for k in range(len(stops)) for t in encode_plain(qwen, ROUNDS[k])]
    assert model == scripted + [qwen.eos_token_id]


def test_budget_must_be_known():
    with pytest.raises(ValueError, match="tool_call_budget must be one of"):
        RolloutConfig(tool_call_budget="calls")


BLANK = "Let me try.\n```python\n   \n```\n```output"


def test_whitespace_only_block_runs_in_the_reference_style(qwen, local_sandbox):
    assert extract_code(BLANK) is None and extract_code(BLANK, run_blank=True) == "   \n"
    assert extract_code("```python\n```\n```output", run_blank=True) == "\n"
    assert extract_code("```python\nx\n```\n```python\n  \n```output", run_blank=True) is None  # unclosed: never
    (ref,), _ = roll(qwen, local_sandbox, [[BLANK, ANSWER]], observation_style="reference")
    (tc,) = ref.tool_calls
    assert tc.code == "   \n" and tc.result.status == "ok" and tc.observation == REFERENCE_TIMEOUT_TEXT
    assert ref.text == BLANK + f"\n{REFERENCE_TIMEOUT_TEXT}\n```\n" + ANSWER
    (ours,), _ = roll(qwen, local_sandbox, [[BLANK, ANSWER]])
    assert ours.num_executions == 0 and ours.text == BLANK + ANSWER


def _samples(qwen, rng, n: int = 200) -> list[list[int]]:
    """Id sequences: random vocabulary (byte tokens that cut UTF-8 characters included), special and added tokens,
    and real text with multi-byte characters."""
    specials = [151643, 151644, 151645, 151657, 151658]  # <|endoftext|> <|im_start|> <|im_end|> <tool_call> </tool_call>
    text = encode_plain(qwen, "数学 ∑ x² 😀 naïve\n```python\nprint('é')\n```\n```output\né\n```")
    out = [text]
    for _ in range(n):
        ids = [rng.randrange(151643) for _ in range(rng.randint(0, 40))]
        ids += rng.sample(specials, rng.randint(0, 2)) + text[: rng.randint(0, len(text))]
        rng.shuffle(ids)
        out.append(ids)
    return out


def test_fast_decode_is_transformers_decode(qwen):
    """torl's decode calls the Rust tokenizer directly: exactly transformers' decode (no clean-up)."""
    import random

    for ids in _samples(qwen, random.Random(0)):
        for skip in (True, False):
            assert decode(qwen, ids, skip_special_tokens=skip) == qwen.decode(
                ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False)


def test_joined_pieces_are_the_full_decode(qwen):
    """A response's text from its decoded spans (rounds, observations) is the full decode, also when a span ends
    inside a UTF-8 character."""
    import random

    from torl.rollout.tokens import joined_text

    rng = random.Random(1)
    for ids in _samples(qwen, rng):
        cuts = sorted(rng.sample(range(len(ids) + 1), min(3, len(ids) + 1)))
        spans = [ids[a:b] for a, b in zip([0, *cuts], [*cuts, len(ids)], strict=True)]
        pieces = [decode(qwen, s) for s in spans]
        assert joined_text(qwen, pieces, ids) == qwen.decode(ids, skip_special_tokens=True,
                                                             clean_up_tokenization_spaces=False)


def test_joined_text_decodes_in_full_for_other_decoders():
    """A SentencePiece-style decoder drops the leading space of a text: pieces do not concatenate."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    from torl.rollout.tokens import joined_text

    rust = Tokenizer(models.WordLevel({"▁a": 0, "▁b": 1, "<unk>": 2}, unk_token="<unk>"))
    rust.decoder = decoders.Metaspace()
    tok = PreTrainedTokenizerFast(tokenizer_object=rust)
    pieces = [decode(tok, [0]), decode(tok, [1])]
    assert "".join(pieces) == "ab" and joined_text(tok, pieces, [0, 1]) == "a b" == tok.decode([0, 1])
