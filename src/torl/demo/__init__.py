"""Demo assets built locally: a tiny tokenizer + causal LM and arithmetic problems (no downloads)."""

from torl.demo.tiny_model import build_tiny_model, build_tokenizer, demo_problems

__all__ = ["build_tiny_model", "build_tokenizer", "demo_problems"]
