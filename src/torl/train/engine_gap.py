"""`train/engine_logprob_gap`: how far the sampler's log-probabilities are from the trainer's, every step.

GRPO here is on-policy: the loss's "old" log-probabilities are the trainer's own (TRL uses `per_token_logps
.detach()` when no importance-sampling correction is on), so a sampler whose weights or numerics drift from the
trainer's would silently make the run off-policy. The gap is

    mean over model tokens (env_mask 1) of |log p_engine(token) - log p_trainer(token)|

for the sampled tokens, where log p_trainer comes from the loss's own forward pass. With one optimizer update
per generation batch (num_iterations 1, accumulation = steps_per_generation), every micro-batch of a step is
scored with the weights that generated it, so this costs no extra forward pass. A missed weight sync shows up
as a gap that grows with the learning rate; engine numerics (bf16 kernels) as a small constant one.
"""

from __future__ import annotations

import math

import torch


class EngineGapMeter:
    """Accumulates |engine - trainer| log-prob sums and token counts over a step's micro-batches."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, trainer_logps: torch.Tensor, engine_logps: torch.Tensor, mask: torch.Tensor) -> None:
        """Add one micro-batch: (B, T) log-probs of the sampled tokens and the (B, T) loss mask (1 = model token).
        Tokens whose engine log-prob is unknown (NaN) are left out."""
        delta = (trainer_logps.detach().float() - engine_logps.float()).abs()
        keep = mask.bool() & ~torch.isnan(delta)
        self.total += float(delta[keep].sum())
        self.count += int(keep.sum())

    def pop(self, accelerator=None) -> float | None:
        """The step's gap over all processes (a collective when there are several), then reset. None: no token."""
        stats = torch.tensor([self.total, float(self.count)], dtype=torch.float64)
        self.total, self.count = 0.0, 0
        if accelerator is not None and accelerator.num_processes > 1:
            stats = accelerator.reduce(stats.to(accelerator.device), reduction="sum").cpu()
        total, count = stats.tolist()
        return total / count if count else None


def engine_gap_metrics(gap: float | None) -> dict[str, float]:
    return {} if gap is None or math.isnan(gap) else {"train/engine_logprob_gap": gap}


__all__ = ["EngineGapMeter", "engine_gap_metrics"]
