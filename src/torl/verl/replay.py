"""torl's replay buffer for veRL's v1 trainer (`trainer.v1.sampler.custom_sampler`): veRL's own ReplayBuffer
(sync mode) or ReplayBufferAsync (async modes), plus what torl needs from each training step:

- failures (`torl/verl/failures.py`): the records the torl_tir loop writes for failed samples are counted per
  step (`training/torl/failed_samples`, `.../failed_share`, by kind); a config error stops the run at once (the
  buffer polls TransferQueue while it waits for a step's groups), and so do failures above
  `max_failed_share` of a step's samples, with the failed samples' messages;
- tool accounting: per step, the executions of the step's samples by status (`training/torl/executions/ok`,
  `error`, `timeout`, `sandbox_error`, of which `queue_timeout`) and the wait for a sandbox slot
  (`training/torl/sandbox_queue_s/mean`, `max`), from the samples' extra_fields in TransferQueue.
veRL merges the metrics `sample()` returns into the step's logged metrics. Settings come from
`trainer.v1.sampler.sampler_kwargs` (the recipe copies `torl.max_failed_share` there).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

import numpy as np
import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

from torl.verl.failures import FAILURES_PARTITION, KINDS

log = logging.getLogger(__name__)

SHOWN_FAILURES = 5  # failed samples quoted in the error that stops a run
STATUSES = ("ok", "error", "timeout", "sandbox_error")


class FailedSamples(RuntimeError):
    """Too many samples of a step failed, or one failed for a reason every step would repeat."""


class _TorlSampling:
    """The torl part of both replay buffers (mixed in before veRL's class)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        sampler_kwargs = dict(self.sampler_kwargs or {})
        self.max_failed_share = float(sampler_kwargs.get("torl_max_failed_share", 0.0))
        self.failures: dict[str, dict] = {}  # failure records not yet counted in a step, by key ({uid}_{session})
        # prompt uids seen in each partition: a record counts in the partition of its prompt (train or val)
        self.seen_uids: dict[str, set[str]] = defaultdict(set)

    def _sync_metadata_from_transfer_queue(self):
        super()._sync_metadata_from_transfer_queue()
        self.failures.update(self.partitions.pop(FAILURES_PARTITION, {}))
        for partition_id, uids in self.prompt_global_steps.items():
            self.seen_uids[partition_id].update(uids)
        config = [r for r in self.failures.values() if r.get("kind") == "config"]
        if config:
            raise FailedSamples(_describe("a sample failed on a configuration error (the run stops at once, "
                                          "every step would fail alike)", config))

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        batch, metrics = super().sample(global_steps=global_steps, partition_id=partition_id, batch_size=batch_size)
        prefix = f"{self._metrics_prefix(partition_id)}/torl"
        seen = self.seen_uids[partition_id]
        mine = [k for k in self.failures if _uid(k) in seen]
        records = [self.failures.pop(k) for k in mine]
        if mine:
            tq.kv_clear(keys=mine, partition_id=FAILURES_PARTITION)
        seen -= {_uid(k) for k in (*batch.keys, *mine)}
        samples = sum(not tag.get("is_padding", False) for tag in batch.tags)
        failed = len(records)
        share = failed / max(1, samples + failed)
        metrics[f"{prefix}/failed_samples"] = failed
        metrics[f"{prefix}/failed_share"] = share
        kinds = Counter(r.get("kind", "error") for r in records)
        for kind in KINDS:
            metrics[f"{prefix}/failed_samples/{kind}"] = kinds.get(kind, 0)
        metrics.update(tool_metrics(batch, prefix))
        if failed and share > self.max_failed_share:
            raise FailedSamples(_describe(f"{failed} of {samples + failed} samples failed at step {global_steps} "
                                          f"({partition_id}), share {share:.3f} > torl.max_failed_share="
                                          f"{self.max_failed_share:g}", records))
        if failed:
            log.warning("%d sample(s) failed at step %d and were dropped; first: %s", failed, global_steps,
                        records[0].get("message"))
        return batch, metrics


class TorlReplayBufferSync(_TorlSampling, ReplayBuffer):
    """veRL's sync ReplayBuffer with torl's failure and tool accounting."""


class TorlReplayBufferAsync(_TorlSampling, ReplayBufferAsync):
    """veRL's ReplayBufferAsync (colocate_async / separate_async) with torl's failure and tool accounting."""


def TorlReplayBuffer(*, trainer_mode: str, **kwargs):  # noqa: N802 - veRL instantiates custom_sampler.name
    """The custom sampler veRL builds (`trainer.v1.sampler.custom_sampler.name`): the class for the mode."""
    cls = TorlReplayBufferSync if trainer_mode == "sync" else TorlReplayBufferAsync
    return cls(trainer_mode=trainer_mode, **kwargs)


def tool_metrics(batch, prefix: str) -> dict:
    """Executions by status and the sandbox queue wait of a step's samples (their extra_fields in TransferQueue)."""
    keys = [k for k, tag in zip(batch.keys, batch.tags, strict=True) if not tag.get("is_padding", False)]
    if not keys:
        return {}
    data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    counts: Counter = Counter()
    waits: list[float] = []
    for extra in list(data["extra_fields"]):
        extra = getattr(extra, "data", extra)
        for call in (extra or {}).get("tool_calls") or []:
            counts[call.get("status")] += 1
            counts["queue_timeout"] += bool(call.get("queue_timeout"))
            waits.append(float(call.get("queue_s", 0.0)))
    metrics = {f"{prefix}/executions/{s}": counts.get(s, 0) for s in (*STATUSES, "queue_timeout")}
    metrics[f"{prefix}/sandbox_queue_s/mean"] = float(np.mean(waits)) if waits else 0.0
    metrics[f"{prefix}/sandbox_queue_s/max"] = float(np.max(waits)) if waits else 0.0
    return metrics


def _uid(key: str) -> str:
    """The prompt uid of a trajectory key ({uid}_{session}_{index}) or a failure key ({uid}_{session})."""
    return key.split("_", 1)[0]


def _describe(headline: str, records: list[dict]) -> str:
    shown = "\n".join(f"  {r.get('sample')}: {r.get('message')}" for r in records[:SHOWN_FAILURES])
    more = f"\n  ... and {len(records) - SHOWN_FAILURES} more" if len(records) > SHOWN_FAILURES else ""
    return f"torl_tir: {headline}:\n{shown}{more}"
