"""A tiny tokenizer + causal LM built locally (no downloads), for tests and demos.

`build_tiny_model(out_dir)` trains a byte-level BPE tokenizer (Qwen2-style pre-tokenisation: digits split) on a
generated corpus of tool-integrated arithmetic transcripts in the torl prompt format, and saves it with a
randomly initialised Qwen2 causal LM as an ordinary model directory (AutoTokenizer/AutoModelForCausalLM load it).
With `train_steps > 0` the model is also fitted for a few seconds to that corpus, so it writes the TIR format
(reasoning, a ```python block, ```output) and the rollout loop has real code to run. Deterministic given `seed`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from torl.data.schema import Problem
from torl.rollout.templates import build_prompt

EOS = "<|endoftext|>"
SPECIAL_TOKENS = [EOS, "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen2's pre-tokenisation pattern: single digits, letters with one leading non-letter, punctuation runs
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_OPENERS = ["Let me compute it with Python.", "I will use code to calculate this.", "We can evaluate the expression.",
            "Let's write a short program."]
_CLOSERS = ["The answer is \\boxed{{{x}}}.", "So the result is \\boxed{{{x}}}.", "Therefore the answer is \\boxed{{{x}}}."]


@dataclass
class ArithmeticExample:
    problem: Problem
    response: str  # a tool-integrated solution, as the model should write it (observation included)


def arithmetic_problems(n: int = 8, *, seed: int = 0) -> list[Problem]:
    """`n` arithmetic problems ("What is 37 + 5?") with their answers."""
    return [ex.problem for ex in arithmetic_examples(n, seed=seed)]


def arithmetic_examples(n: int, *, seed: int = 0) -> list[ArithmeticExample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b, op = rng.randint(1, 99), rng.randint(1, 99), rng.choice(sorted(_OPS))
        x = _OPS[op](a, b)
        problem = Problem(id=f"demo-{seed}-{i}", problem=f"What is {a} {op} {b}?", answer=str(x), source="demo")
        response = (f"{rng.choice(_OPENERS)}\n```python\nprint({a} {op} {b})\n```\n```output\n{x}\n```\n"
                    + rng.choice(_CLOSERS).format(x=x))
        out.append(ArithmeticExample(problem, response))
    return out


def _corpus(seed: int) -> list[str]:
    examples = arithmetic_examples(600, seed=seed + 1)
    texts = [build_prompt(ex.problem.problem) + ex.response + EOS for ex in examples]
    texts += [build_prompt(ex.problem.problem, "cot") + f"{ex.problem.problem[8:-1]} = {ex.problem.answer}."
              for ex in examples[:100]]
    texts += ["```python\nimport sympy\nx = sympy.symbols('x')\nprint(sympy.solve(x**2 - 4, x))\n```\n```output\n"
              "[-2, 2]\n```\n", "(a + b) / 2 = c, x^2 - y^2 = (x - y)(x + y), 3.14159 < 22/7 != 7 % 3 ** 2",
              "Traceback (most recent call last):\nNameError: name 'a' is not defined\nTimeoutError: (no output)"]
    return texts


def train_byte_level_bpe(texts: Iterable[str], *, pattern: str, vocab_size: int, special_tokens: list[str],
                         min_frequency: int = 0):
    """A `tokenizers` byte-level BPE trained on `texts`, pre-split by the regex `pattern` (NFC-normalised)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, min_frequency=min_frequency,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def build_tiny_tokenizer(*, seed: int = 0, vocab_size: int = 512):
    """A byte-level BPE `PreTrainedTokenizerFast` with eos = pad = "<|endoftext|>" and a ChatML chat template."""
    from transformers import PreTrainedTokenizerFast

    tok = train_byte_level_bpe(_corpus(seed), pattern=QWEN2_PATTERN, vocab_size=vocab_size,
                               special_tokens=SPECIAL_TOKENS, min_frequency=2)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   additional_special_tokens=SPECIAL_TOKENS[1:], clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, *, seed: int = 0, vocab_size: int = 512, hidden_size: int = 64,
                     num_layers: int = 2, num_heads: int = 4, max_position_embeddings: int = 2048,
                     train_steps: int = 0, batch_size: int = 16, lr: float = 3e-3) -> Path:
    """Build and save a tiny tokenizer + Qwen2 causal LM in `out_dir`; returns the directory.

    About 0.1–1 M parameters. `train_steps > 0` fits it briefly to the arithmetic TIR corpus (loss on responses).
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(seed=seed, vocab_size=vocab_size)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=max_position_embeddings, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=eos_id, pad_token_id=eos_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    if train_steps > 0:
        _fit(model, tokenizer, seed=seed, steps=train_steps, batch_size=batch_size, lr=lr)
    model.generation_config = GenerationConfig(eos_token_id=[eos_id, im_end], pad_token_id=eos_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _fit(model, tokenizer, *, seed: int, steps: int, batch_size: int, lr: float) -> None:
    """A few hundred AdamW steps on prompt → TIR response (loss on response tokens only)."""
    pairs = [(build_prompt(ex.problem.problem), ex.response) for ex in arithmetic_examples(512, seed=seed + 2)]
    fit_responses(model, tokenizer, pairs, seed=seed, steps=steps, batch_size=batch_size, lr=lr)


def fit_responses(model, tokenizer, pairs: list[tuple[str, str]], *, seed: int = 0, steps: int = 300,
                  batch_size: int = 16, lr: float = 3e-3) -> None:
    """Fit `model` with AdamW to (prompt, response) pairs, loss on the response (+ EOS) tokens only; eval mode after.

    One thread: a model this small only loses from threads (and badly on a busy machine)."""
    import torch

    rows = []
    for prompt, response in pairs:
        p = tokenizer.encode(prompt, add_special_tokens=False)
        r = tokenizer.encode(response + tokenizer.eos_token, add_special_tokens=False)
        rows.append((p + r, [-100] * len(p) + r))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            pick = torch.randint(len(rows), (batch_size,), generator=gen).tolist()
            width = max(len(rows[i][0]) for i in pick)
            ids = torch.full((batch_size, width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((batch_size, width), -100, dtype=torch.long)
            attn = torch.zeros((batch_size, width), dtype=torch.long)
            for b, i in enumerate(pick):
                n = len(rows[i][0])
                ids[b, :n], labels[b, :n], attn[b, :n] = torch.tensor(rows[i][0]), torch.tensor(rows[i][1]), 1
            loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
