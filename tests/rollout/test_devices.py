"""Binding threads to the rank's CUDA device when the trainer reports `torch.device("cuda")` without an index (a
run not launched as distributed). The GPU is the boundary: torl's own CUDA hooks (`torl.rollout.devices`) stand
in for it, with CUDA's rules: the current device is per thread (a new thread starts on 0), and set_device
refuses a device without an index, as torch.cuda.set_device does."""

from __future__ import annotations

import threading

import pytest
import torch

from torl.rollout import RolloutConfig
from torl.rollout import devices as dev
from torl.rollout.backends.batching import BatchingBackend
from torl.rollout.backends.replay import ReplayBackend
from torl.train.rollout_func import run_rollouts_on_device


class FakeCuda:
    """Per-thread current device; the thread that builds it is on `index`."""

    def __init__(self, index: int) -> None:
        self.local = threading.local()
        self.local.index = index
        self.calls: list[tuple[str, int]] = []

    def current(self) -> int:
        return getattr(self.local, "index", 0)

    def set_device(self, device) -> None:
        if isinstance(device, torch.device) and device.index is None:
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
        index = device.index if isinstance(device, torch.device) else int(device)
        self.calls.append((threading.current_thread().name, index))
        self.local.index = index


@pytest.fixture
def fake_cuda(monkeypatch):
    cuda = FakeCuda(2)
    monkeypatch.setattr(dev, "cuda_available", lambda: True)
    monkeypatch.setattr(dev, "current_cuda_index", cuda.current)
    monkeypatch.setattr(dev, "set_cuda_device", cuda.set_device)
    return cuda


@pytest.mark.parametrize(("device", "index"), [(torch.device("cuda"), 2), ("cuda", 2), (torch.device("cuda:1"), 1),
                                               (3, 3), (torch.device("cpu"), None), (None, None)])
def test_resolve_device(fake_cuda, device, index):
    assert dev.resolve_device(device) == index


class ThreadedReplay(BatchingBackend):
    """Replay generation run as the transformers backend runs: in the loop's worker threads; records the
    current device each batch ran on."""

    def __init__(self, tokenizer, scripts, cuda: FakeCuda) -> None:
        super().__init__(max_batch_size=8, batch_wait_s=0.001)
        self.replay = ReplayBackend(tokenizer, scripts)
        self.tokenizer = tokenizer
        self.cuda = cuda
        self.devices: list[int] = []

    def generate_batch(self, requests):
        self.devices.append(self.cuda.current())
        return [self.replay.generate(r) for r in requests]


def test_index_less_cuda_binds_every_worker_thread_to_the_current_device(fake_cuda, tokenizer):
    """What the rollout function and validation do with `trainer.accelerator.device == torch.device("cuda")`:
    every worker thread runs on the device current where the rollout was called (2), never on 0."""
    backend = ThreadedReplay(tokenizer, [["The answer is \\boxed{2}."]] * 4, fake_cuda)
    results = run_rollouts_on_device(["What is 1 + 1?"] * 4, backend=backend, sandbox=None,
                                     config=RolloutConfig(max_tool_calls=0), device=torch.device("cuda"))
    assert len(results) == 4 and backend.devices and set(backend.devices) == {2}
    workers = [name for name, _ in fake_cuda.calls if name.startswith("torl-gen")]
    assert workers and all(index == 2 for _, index in fake_cuda.calls)
