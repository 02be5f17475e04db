"""The torl_tir agent loop inside veRL 0.9.1's v1 worker (`AgentLoopWorkerTQ`, what `trainer.use_v1=true`, veRL's
default, runs), with a real TransferQueue on a local Ray cluster (CPU), and torl's replay buffer (veRL's
ReplayBuffer with torl's accounting) sampling the step from it. Stand-in: only the inference server.

What a v1 run does beyond this and needs GPUs: veRL's TaskRunnerV1/PPOTrainer (resource pools, FSDP workers, vLLM
replicas) and `AgentLoopManagerTQ.create` (worker actors handed the real LLM client); here the worker class runs in
the test's process, fed the batch the trainer builds (`_next_train_batch` / `_submit_batch_to_rollout`)."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from tests.verl.conftest import LocalActor, TransformersServer, compose, small_overrides

pytestmark = pytest.mark.engines

N = 2
PROMPTS = 2
STEP = 3


@pytest.fixture(scope="module")
def tq_cluster():
    """A local Ray instance (2 CPUs) with TransferQueue's controller and one storage unit."""
    import ray
    import transfer_queue as tq
    from omegaconf import OmegaConf

    from torl.verl import sandbox

    sandbox.reset()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield tq
    sandbox.reset()
    tq.close()
    ray.shutdown()


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model))


def _submit(config, tokenizer, path, tq, partition="train"):
    """What veRL's v1 trainer hands the workers: a collated RLHFDataset batch with uids and the step, its prompts
    registered in TransferQueue as pending groups."""
    import verl.utils.tensordict_utils as tu
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    dataset = RLHFDataset(str(path), tokenizer, config.data)
    batch_dict = collate_fn([dataset[i] for i in range(PROMPTS)])
    batch_dict["uid"] = np.array([str(uuid.uuid4()) for _ in range(PROMPTS)], dtype=object)
    batch = tu.get_tensordict(batch_dict)
    tu.assign_non_tensor_data(batch, "global_steps", STEP)
    uids = list(batch["uid"])
    tq.kv_batch_put(keys=uids, partition_id=partition,
                    tags=[{"is_prompt": True, "status": "pending", "global_steps": STEP} for _ in uids])
    return batch, uids


def _generate(config, server, batch):
    """AgentLoopWorkerTQ.generate_sequences (fire-and-forget tasks), then wait for its tasks to finish."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopWorkerTQ

    async def go():
        worker = AgentLoopWorkerTQ.__ray_actor_class__(config, server,
                                                        reward_loop_worker_handles=[LocalActor(RewardLoopWorker(config))])
        await worker.generate_sequences(batch)
        await asyncio.gather(*list(worker.background_tasks))

    asyncio.run(go())


def _buffer(max_failed_share=0.0, mode="sync"):
    from torl.verl.replay import TorlReplayBuffer

    return TorlReplayBuffer(trainer_mode=mode, trainer_config={}, max_off_policy_threshold=None,
                            max_off_policy_strategy="drop", poll_interval=0.05, refill_fn=lambda n: n,
                            sampler_kwargs={"torl_max_failed_share": max_failed_share})


def _clear(tq):
    """Empty every partition (the tests share one TransferQueue)."""
    for partition, items in (tq.kv_list() or {}).items():
        if items:
            tq.kv_clear(keys=list(items), partition_id=partition)


class FlakyServer:
    """The stand-in server, raising for the first request (a server error in one sample)."""

    def __init__(self, inner) -> None:
        self.inner, self.failed = inner, False
        self.calls = inner.calls

    async def generate(self, request_id, **kwargs):
        if not self.failed:
            self.failed = True
            raise RuntimeError("the inference server dropped the connection")
        return await self.inner.generate(request_id, **kwargs)


def test_v1_worker_stores_sessions_in_transfer_queue(tq_cluster, tiny_model, verl_parquet, tokenizer):
    import ray

    from torl.rollout.seeds import derive_seed
    from torl.verl.sandbox import _actor_name

    tq = tq_cluster
    config = compose(small_overrides(tiny_model, verl_parquet, seed=5))
    server = TransformersServer(tiny_model, config.actor_rollout_ref.rollout.response_length)
    batch, uids = _submit(config, tokenizer, verl_parquet, tq)
    _generate(config, server, batch)

    listing = tq.kv_list("train")["train"]
    assert {listing[u]["status"] for u in uids} == {"finished"}
    keys = sorted(k for k in listing if k.count("_") == 2)
    assert keys == sorted(f"{u}_{s}_0" for u in uids for s in range(N))  # {uid}_{session_id}_{output index}
    data = tq.kv_batch_get(keys=keys, partition_id="train")
    index = dict(zip(uids, [int(i) for i in batch["index"]], strict=True))
    for i, key in enumerate(keys):
        uid, session, _ = key.split("_")
        assert data["uid"][i] == uid and int(data["session_id"][i]) == int(session)
        assert data["reward_model"][i]["ground_truth"]  # dataset columns travel with the sample
        assert data["data_source"][i] == "demo"
        extra = data["extra_fields"][i]
        assert extra["min_global_steps"] == extra["max_global_steps"] == 0  # the stand-in serves version 0
        assert listing[key]["min_global_steps"] == 0 and listing[key]["global_steps"] == STEP
        assert all(c["status"] in ("ok", "error", "timeout") and c["queue_s"] >= 0 for c in extra["tool_calls"])
        mask, lps = data["response_mask"][i], data["rollout_log_probs"][i]
        assert len(mask) == len(lps) == len(data["responses"][i])
        assert float(data["rm_scores"][i].sum()) in (1.0, -1.0)
    # per-sample seeds from (seed, step, index, session): the n samples of a group differ, and so do the groups
    expected = {derive_seed(derive_seed(5, STEP, index[u], s), 0) for u in uids for s in range(N)}
    assert len(expected) == PROMPTS * N and expected <= {c["params"].seed for c in server.calls}
    # one sandbox per node: the named actor the workers share
    assert ray.get_actor(_actor_name(ray.get_runtime_context().get_node_id()), namespace="torl")

    buffer = _buffer()
    sampled, metrics = buffer.sample(global_steps=STEP, partition_id="train", batch_size=PROMPTS)
    assert sorted(sampled.keys) == keys
    executions = sum(len(data["extra_fields"][i]["tool_calls"]) for i in range(len(keys)))
    assert executions >= 1
    assert sum(metrics[f"training/torl/executions/{s}"] for s in ("ok", "error", "timeout", "sandbox_error")) \
        == executions
    assert metrics["training/torl/failed_samples"] == 0 and metrics["training/torl/sandbox_queue_s/max"] >= 0
    _clear(tq)


def test_v1_prompt_over_the_limit_stops_the_run(tq_cluster, tiny_model, verl_parquet, tokenizer):
    from torl.verl.replay import FailedSamples

    tq = tq_cluster
    config = compose(small_overrides(tiny_model, verl_parquet, verl=("data.max_prompt_length=20",)))
    server = TransformersServer(tiny_model, config.actor_rollout_ref.rollout.response_length)
    batch, uids = _submit(config, tokenizer, verl_parquet, tq)
    _generate(config, server, batch)  # veRL catches the error: the groups are marked failed, nothing raises
    listing = tq.kv_list()
    assert {listing["train"][u]["status"] for u in uids} == {"failure"}
    records = listing["torl_failures"]
    assert len(records) == PROMPTS * N and {r["kind"] for r in records.values()} == {"config"}
    with pytest.raises(FailedSamples, match=r"(?s)configuration error.*index=\d uid='.*' session_id=\d: PromptTooLong: "
                                            r"the prompt is \d+ tokens, over actor_rollout_ref.rollout.prompt_length=20"):
        _buffer(max_failed_share=0.5).sample(global_steps=STEP, partition_id="train", batch_size=PROMPTS)
    _clear(tq)


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_v1_failed_samples_are_counted_and_bounded(tq_cluster, tiny_model, verl_parquet, tokenizer, share):
    from torl.verl.replay import FailedSamples

    tq = tq_cluster
    config = compose(small_overrides(tiny_model, verl_parquet, max_tool_calls=0))
    server = FlakyServer(TransformersServer(tiny_model, config.actor_rollout_ref.rollout.response_length))
    batch, uids = _submit(config, tokenizer, verl_parquet, tq)
    _generate(config, server, batch)
    statuses = sorted(tq.kv_list("train")["train"][u]["status"] for u in uids)
    assert statuses == ["failure", "finished"]
    buffer = _buffer(max_failed_share=share)
    if share == 0.0:
        with pytest.raises(FailedSamples, match=r"(?s)1 of 4 samples failed at step 3 \(train\), share 0.250 > "
                                                r"torl.max_failed_share=0:\n  sample data_source='demo' index="
                                                r".*RuntimeError: the inference server dropped the connection"):
            buffer.sample(global_steps=STEP, partition_id="train", batch_size=PROMPTS)
    else:  # veRL's sync buffer trains on the group without the failed sample; torl counts it
        sampled, metrics = buffer.sample(global_steps=STEP, partition_id="train", batch_size=PROMPTS)
        assert len(sampled.keys) == PROMPTS * N - 1
        assert metrics["training/torl/failed_samples"] == 1 and metrics["training/torl/failed_samples/error"] == 1
        assert metrics["training/torl/failed_share"] == pytest.approx(0.25)
        assert not tq.kv_list().get("torl_failures")  # counted once
    _clear(tq)


def test_one_sandbox_actor_per_node(tq_cluster):
    from torl.verl import sandbox

    key = ("local", 1, None, 5.0)
    a, b = sandbox._start(key), sandbox._start(key)  # two workers of one node: one actor
    assert a.target._actor_id == b.target._actor_id

    async def go():
        return await a.arun("print(6 * 7)", timeout=5)

    assert asyncio.run(go()).stdout.strip() == "42"


def test_v1_async_buffer_evicts_the_failed_group_and_counts_it(tq_cluster, tiny_model, verl_parquet, tokenizer):
    """colocate_async / separate_async: veRL evicts a failed group and refills it; torl counts the failed sample."""
    tq = tq_cluster
    config = compose(small_overrides(tiny_model, verl_parquet, max_tool_calls=0))
    server = FlakyServer(TransformersServer(tiny_model, config.actor_rollout_ref.rollout.response_length))
    batch, uids = _submit(config, tokenizer, verl_parquet, tq)
    _generate(config, server, batch)
    refills = []
    buffer = _buffer(max_failed_share=0.5, mode="colocate_async")
    buffer.refill_fn = refills.append
    sampled, metrics = buffer.sample(global_steps=STEP, partition_id="train", batch_size=1)
    assert refills == [1] and metrics["training/rollout_failure/evicted_samples"] == 1  # veRL's own
    assert len(sampled.keys) == N and metrics["training/torl/failed_samples"] == 1  # torl's
    _clear(tq)
