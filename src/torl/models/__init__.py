"""Models and tokenizers built locally, with no download: the tiny TIR model used by tests, the demo and
`tiny://` training runs."""

from torl.models.tiny import build_tiny_model, build_tokenizer, demo_problems

__all__ = ["build_tiny_model", "build_tokenizer", "demo_problems"]
