"""The demo's model: a small byte-level BPE tokenizer and a small Llama-architecture causal LM, built locally.

The tokenizer is trained on the demo's own texts (the prompt template and generated solutions) with Llama 3's
pre-tokenisation: numbers are split into chunks of up to three digits ("287663" -> "287", "663"), words and
punctuation runs as in GPT-4/Qwen2, then bytes. Short, distinctive number tokens are what lets a model this
small learn to copy numbers (from the problem into code, from the tool's output into the answer) within a
minute of training; with single-digit tokens it takes several times longer. The saved tokenizer is reloaded
with `AutoTokenizer` and checked to tokenise exactly as trained (`build_model`), since the rollout loop, the
trainer and `torl eval` all load it that way. Saved as a normal transformers model directory.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from torl.train.tiny_model import train_byte_level_bpe

EOS = "<|endoftext|>"
NUMBERS_PROBE = "print(287663 * 45 - 1000056 % 7)\n```output\n-3\n```\n\\boxed{12}"


@dataclass(frozen=True)
class DemoModelConfig:
    """Tokenizer and architecture (Llama) of the demo model. `seed` sets the random initialisation."""

    vocab_size: int = 1600
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 512
    seed: int = 0

    def key(self, corpus_key: str = "") -> str:
        """A short hash naming a cache entry for this config (and the corpus its tokenizer is trained on)."""
        blob = json.dumps({**asdict(self), "corpus": corpus_key}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# every 1-3 digit chunk ("7", "07", "007", ..., "999"), twice: each becomes one token when vocab_size allows
NUMBER_CHUNKS = [f"{i:0{w}d}" for w in (1, 2, 3) for i in range(10**w)] * 2
# Llama 3's pre-tokenisation pattern: numbers in chunks of 1-3 digits
PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `texts` (Llama 3 pre-tokenisation)."""
    from transformers import PreTrainedTokenizerFast

    tok = train_byte_level_bpe(itertools.chain(texts, NUMBER_CHUNKS), pattern=PRETOKENIZE_PATTERN,
                               vocab_size=vocab_size, special_tokens=[EOS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   model_max_length=None, clean_up_tokenization_spaces=False)


def init_model(cfg: DemoModelConfig, tokenizer):
    """A randomly initialised LlamaForCausalLM sized by `cfg` for `tokenizer`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def build_model(out_dir: str | Path, cfg: DemoModelConfig, texts: Sequence[str]) -> Path:
    """Train the tokenizer on `texts`, initialise the model, save both to `out_dir` and return it.

    Raises RuntimeError if the tokenizer as loaded back by `AutoTokenizer` tokenises differently."""
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    model = init_model(cfg, tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    loaded = load_demo_tokenizer(out_dir)
    for text in list(texts[:200]) + [NUMBERS_PROBE]:
        if loaded.encode(text) != tokenizer.encode(text):
            import transformers

            raise RuntimeError(f"transformers {transformers.__version__} loads the demo tokenizer in {out_dir} as "
                               f"{type(loaded).__name__}, which tokenises differently from the trained one "
                               f"(e.g. {text[-60:]!r})")
    return out_dir


def load_demo_tokenizer(path: str | Path):
    """The demo tokenizer as saved, for warm-starting and the rollout (the trainer loads the same files with
    left padding: `torl.train.trainer.load_policy_tokenizer`)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
