"""torl: tool-integrated reinforcement learning (TORL) for language models.

Parts, one job each, bottom to top (a part imports only the parts below it; `lint-imports` checks it):
  torl.errors   UserInputError, the one error type for bad input
  torl.config   typed YAML configs: dataclasses from YAML and dotted overrides, errors with file:line and key
  torl.sandbox  run untrusted model code (local fork-server pool, Sandbox Fusion client and server)
  torl.reward   answer extraction, math equivalence, the TORL reward
  torl.models   tokenizers built locally (the exact Qwen2.5 tokenizer)
  torl.data     problems: schema, readers, filters, dedup, decontamination, LIMR, the shipped eval sets
  torl.rollout  the tool-integrated generation loop over generation backends (transformers, vLLM, OpenAI)
  torl.eval     benchmarks with the same loop as training: metrics, runner, results
  torl.verl     the multi-node path: torl's loop as a veRL agent loop, its reward as veRL's reward function
  torl.train    GRPO on TRL's GRPOTrainer with the tool-integrated rollout; the tiny TIR model
  torl.demo     the whole pipeline on a laptop CPU in minutes
  torl.cli      the `torl` command
"""

__version__ = "0.1.0"
