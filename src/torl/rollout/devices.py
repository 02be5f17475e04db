"""Binding a thread to the rank's CUDA device: the one place torl resolves and sets a device.

CUDA's current device is per thread, so every thread that runs engine work (the rollout's worker threads,
validation's, the vLLM engine thread) must make the rank's device current. A trainer that is not launched as
distributed (`python -m torl...`, `torl train`, `accelerate launch` with one process) reports
`torch.device("cuda")`, with no index, which `torch.cuda.set_device` refuses; it means "the current device" of
the thread that asked. `resolve_device` turns it into that index in the calling thread (a new thread's current
device is always 0, so resolving there would be wrong), and `bind_device` sets the resolved index.

The `cuda_available`, `current_cuda_index` and `set_cuda_device` hooks are the only calls into torch.cuda, so a
CPU test can stand in for a GPU by replacing them.
"""

from __future__ import annotations

import torch


def cuda_available() -> bool:
    return torch.cuda.is_available()


def current_cuda_index() -> int:
    return torch.cuda.current_device()


def set_cuda_device(index: int) -> None:
    torch.cuda.set_device(index)


def resolve_device(device) -> int | None:
    """The CUDA device index `device` means here, or None when it is not a CUDA device (None, "cpu", ...) or no
    CUDA device exists. An int is an index; "cuda" / torch.device("cuda") without an index is the calling
    thread's current device."""
    if device is None or not cuda_available():
        return None
    if isinstance(device, int):
        return device
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else current_cuda_index()


def bind_device(device) -> None:
    """Make `device` (resolved as by `resolve_device`, in this thread) the calling thread's current CUDA device;
    nothing when it is not a CUDA device."""
    index = resolve_device(device)
    if index is not None:
        set_cuda_device(index)
