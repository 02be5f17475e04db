"""The node's sandbox of the torl_tir loop: a node-wide bound on executions, queueing bounded apart from the
snippet's exec_timeout, a health check naming the URL, a pool sized to the cores veRL leaves free."""

from __future__ import annotations

import asyncio

import pytest

from tests.verl.conftest import RECIPE_1_5B, compose
from torl.sandbox.base import ExecResult
from torl.verl.failures import SandboxUnavailable
from torl.verl.sandbox import NodeSandbox, NodeSandboxClient, free_cores, pool_size_for

pytestmark = pytest.mark.engines

SLOW = "import time; time.sleep(0.8); print('done')"


def _burst(box: NodeSandbox, n: int, timeout: float) -> list[ExecResult]:
    async def go():
        return await asyncio.gather(*(box.run(SLOW, timeout) for _ in range(n)))

    return [ExecResult.from_dict(r) for r in asyncio.run(go())]


def test_queue_wait_does_not_count_against_exec_timeout():
    box = NodeSandbox("local", pool_size=2, max_concurrent=1, queue_timeout_s=30)
    try:
        results = _burst(box, 3, timeout=1.5)  # the last one waits ~1.6 s for the node's one slot
    finally:
        box.close()
    assert [r.status for r in results] == ["ok"] * 3
    assert max(r.extra["queue_s"] for r in results) > 1.5
    assert box.slots == 1 and box.max_in_flight == 1  # max_concurrent_tool_calls bounds the node


def test_queue_bound_has_its_own_status():
    box = NodeSandbox("local", pool_size=1, queue_timeout_s=0.3)
    try:
        results = _burst(box, 3, timeout=5)
    finally:
        box.close()
    assert sorted(r.status for r in results) == ["ok", "sandbox_error", "sandbox_error"]
    for r in results:
        if r.status == "sandbox_error":  # not the snippet's timeout: the infrastructure's, never penalised
            assert r.extra["queue_timeout"] is True and "torl.sandbox_queue_timeout=0.3" in r.reason


def test_sessions_through_the_node_sandbox():
    """torl.interpreter=session on veRL: a sample's session lives in the node's sandbox (ids cross Ray), its calls
    take the node's slots like stateless ones, and closing it ends it there."""
    box = NodeSandbox("local", pool_size=1, health_check=False)
    client = NodeSandboxClient(box, box.slots)

    async def go():
        a, b = await client.asession(), await client.asession()
        results = [await a.arun("x = 1", timeout=5), await a.arun("print(x)", timeout=5),
                   await b.arun("print(x)", timeout=5)]
        await a.aclose()
        results.append(await a.arun("print(x)", timeout=5))
        await b.aclose()
        return results

    try:
        first, second, other, after = asyncio.run(go())
    finally:
        box.close()
    assert first.ok and second.stdout == "1\n" and "queue_s" in second.extra
    assert other.status == "error" and "NameError" in other.stderr
    assert after.extra["session_lost"] and not box.sessions


def test_health_check_names_the_url_and_how_to_start_it():
    with pytest.raises(SandboxUnavailable, match=r"torl.sandbox=http://127.0.0.1:9: the Sandbox Fusion server at "
                                                  r"http://127.0.0.1:9 did not run print\(1\).*torl sandbox serve"):
        NodeSandbox("http://127.0.0.1:9")


def test_pool_is_sized_to_the_cores_verl_leaves_free(tiny_model):
    from torl.verl.recipe import load_recipe

    config = compose(load_recipe(RECIPE_1_5B, [f"actor_rollout_ref.model.path={tiny_model}"]).overrides())
    gpus, workers = config.trainer.n_gpus_per_node, config.actor_rollout_ref.rollout.agent.num_workers
    reward_workers = config.reward.num_workers
    assert (gpus, workers, reward_workers) == (8, 8, 8)
    assert pool_size_for(config, node_cpus=96) == 96 - 2 * 8 - 8 - 8
    assert free_cores(8, gpus_per_node=8, workers_on_node=8, reward_workers_on_node=8) == 1
    assert free_cores(1000, gpus_per_node=0, workers_on_node=0, reward_workers_on_node=0) == 64
    two_nodes = compose(load_recipe(RECIPE_1_5B, [f"actor_rollout_ref.model.path={tiny_model}", "trainer.nnodes=2"]
                                    ).overrides())
    assert pool_size_for(two_nodes, node_cpus=64) == 64 - 16 - 4 - 4  # veRL spreads its workers over the nodes
