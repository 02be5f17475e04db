"""torl: tool-integrated reinforcement learning (TORL) for language models.

Subpackages, one job each:
  torl.sandbox  run untrusted model code (local fork-server pool, Sandbox Fusion client and server)
  torl.reward   answer extraction, math equivalence, the TORL reward
  torl.rollout  the tool-integrated generation loop over pluggable backends
  torl.train    GRPO on TRL with the TIR rollout
  torl.eval     benchmarks with the same loop as training
  torl.data     training-set construction and LIMR selection
"""

__version__ = "0.1.0"
