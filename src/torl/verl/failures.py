"""Failed samples of the torl_tir agent loop: what kind of failure, and how veRL gets to know of it.

An agent loop that raises is treated differently by veRL's two trainers (verl 0.9.1):
- v0 (`trainer.use_v1=false`): `AgentLoopWorker.generate_sequences` gathers the samples without catching, so any
  failure ends the step and the run, with torl's message (it names the sample);
- v1 (the default): `AgentLoopWorkerTQ` catches the error, marks the prompt's group "failure" and goes on; the
  sync trainer trains on the group without the failed sample, the async ones evict and refill the group.
So on v1 torl writes each failure into TransferQueue (partition `FAILURES_PARTITION`, one key per sample, the
record in the tag) before raising, and torl's replay buffer (`torl/verl/replay.py`) counts the records: a metric
per step, and a stop when a step's failures exceed `torl.max_failed_share` or a record is a config error.

Kinds: "config" (a prompt over `prompt_length`, an unreachable sandbox: every step would fail alike, so the
run stops at once), "aborted" (a round veRL kept aborting, `SampleAborted`), "error" (anything else, e.g. a
model token without a logprob or a server error).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from torl.verl.backend import SampleAborted

log = logging.getLogger(__name__)

FAILURES_PARTITION = "torl_failures"
KINDS = ("config", "aborted", "error")


class ConfigError(ValueError):
    """A failure that every step would repeat (the data or the setup is wrong): the run stops at once."""


class PromptTooLong(ConfigError):
    """A prompt longer than veRL's rollout.prompt_length."""


class SandboxUnavailable(ConfigError, RuntimeError):
    """The node's sandbox did not answer its health check."""


class SampleFailed(RuntimeError):
    """A sample of the torl_tir loop failed; the message names the sample, `kind` says what kind of failure."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def failure_kind(error: BaseException) -> str:
    """The kind of a failure ("config", "aborted" or "error")."""
    if isinstance(error, SampleFailed):
        return error.kind
    if isinstance(error, ConfigError):
        return "config"
    if isinstance(error, SampleAborted):
        return "aborted"
    return "error"


def sample_name(kwargs: Mapping[str, Any]) -> str:
    """How an error names a sample: its data source, dataset index, veRL uid and session (what is known)."""
    parts = []
    for key in ("data_source", "index", "uid", "session_id"):
        value = kwargs.get(key)
        if value is not None:
            value = value.item() if hasattr(value, "item") else value
            parts.append(f"{key}={value!r}")
    return "sample " + (" ".join(parts) if parts else "(unnamed)")


def failure_record(error: BaseException, kwargs: Mapping[str, Any]) -> dict:
    """The record of one failed sample (a TransferQueue tag: plain values only)."""
    steps = kwargs.get("global_steps")
    return {
        "kind": failure_kind(error),
        "sample": sample_name(kwargs),
        "message": f"{type(error).__name__}: {error}"[:2000],
        "global_steps": int(steps.item() if hasattr(steps, "item") else steps) if steps is not None else None,
    }


def failure_key(kwargs: Mapping[str, Any]) -> str | None:
    """The TransferQueue key of a v1 sample's failure record (None: not a v1 sample)."""
    uid, session = kwargs.get("uid"), kwargs.get("session_id")
    if uid is None or session is None:
        return None
    return f"{uid}_{session.item() if hasattr(session, 'item') else session}"


async def report_failure(error: BaseException, kwargs: Mapping[str, Any], *, use_v1: bool) -> None:
    """Record a failed v1 sample in TransferQueue for torl's replay buffer (nothing to do on v0, where the
    error itself stops the run). Never raises: the sample's own error is what matters."""
    key = failure_key(kwargs)
    if not use_v1 or key is None:
        return
    record = failure_record(error, kwargs)
    try:
        import transfer_queue as tq

        await tq.async_kv_put(key=key, partition_id=FAILURES_PARTITION, tag=record)
    except Exception as e:  # noqa: BLE001 - the failure is still raised to veRL, which logs it
        log.error("could not record the failure of %s in TransferQueue: %s", record["sample"], e)
