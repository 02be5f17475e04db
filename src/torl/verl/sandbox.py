"""One sandbox per node for the torl_tir agent loop, shared by every agent-loop worker of the node.

veRL runs several agent-loop worker processes per node (`rollout.agent.num_workers` over the nodes), each running
hundreds of samples at once. They share one `NodeSandbox` per node: in a Ray cluster (every veRL run) a named Ray
actor per node (`torl_sandbox_<node id>`, namespace "torl", created by the first worker that needs it, on that
node, at no CPU cost to Ray's scheduler); outside Ray (tests, one process) one per process.

A `NodeSandbox` holds the executor (a LocalSandbox, or a client of the node's Sandbox Fusion server) and:
- a node-wide bound on executions in flight (`torl.max_concurrent_tool_calls`; default: the executor's
  concurrency: the LocalSandbox's pool, sized to the cores veRL leaves free, see `free_cores`);
- queueing apart from execution: a call first waits for a slot, at most `torl.sandbox_queue_timeout` seconds
  (then it ends as a sandbox_error with `extra["queue_timeout"]`, never as a timeout of the snippet), and only
  then does the snippet's own `exec_timeout` start. Every result carries its wait in `extra["queue_s"]`;
- a health check when it starts (`print(1)` must run): a sandbox that cannot run code is a `SandboxUnavailable`
  error naming the URL and how to start a server, not a run of "SandboxError" observations.
Starting it never blocks a worker's event loop: the actor is created from a thread and awaited.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import threading
import time
from typing import Any

from torl.sandbox import make_sandbox
from torl.sandbox.base import ExecResult, Sandbox, Session, SessionError, lost_result
from torl.verl.failures import SandboxUnavailable

NAMESPACE = "torl"
HEALTH_TIMEOUT_S = 30.0
MAX_POOL = 64
START_HINT = ("start `torl sandbox serve --port 8080` on every node before `torl verl train` (or set "
              "torl.sandbox=local)")


def free_cores(node_cpus: int, *, gpus_per_node: int, workers_on_node: int, reward_workers_on_node: int) -> int:
    """Sandbox workers a node can run beside veRL: its cores minus two per GPU (the trainer worker and the
    inference engine behind it), one per agent-loop worker and one per reward worker; at least 1, at most 64."""
    reserved = 2 * gpus_per_node + workers_on_node + reward_workers_on_node
    return max(1, min(MAX_POOL, node_cpus - reserved))


def pool_size_for(config: Any, node_cpus: int | None = None) -> int:
    """`free_cores` of this node for a veRL config (veRL spreads its workers evenly over trainer.nnodes)."""
    nnodes = max(1, int(config.trainer.nnodes))
    per_node = lambda n: math.ceil(int(n or 0) / nnodes)  # noqa: E731
    reward_workers = (config.get("reward") or {}).get("num_workers", 0)
    return free_cores(node_cpus if node_cpus is not None else (os.cpu_count() or 1),
                      gpus_per_node=int(config.trainer.n_gpus_per_node),
                      workers_on_node=per_node(config.actor_rollout_ref.rollout.agent.num_workers),
                      reward_workers_on_node=per_node(reward_workers))


class NodeSandbox:
    """The executor of one node with its slot gate and queue bound (see the module docstring).
    spec: "local" or a Sandbox Fusion URL; pool_size: LocalSandbox workers; max_concurrent: slots (None: the
    executor's concurrency); queue_timeout_s: the longest wait for a slot."""

    def __init__(self, spec: str, *, pool_size: int | None = None, max_concurrent: int | None = None,
                 queue_timeout_s: float = 60.0, health_check: bool = True) -> None:
        self.spec = spec
        local = spec == "local"
        kwargs = {} if local or not max_concurrent else {"max_concurrency": max_concurrent}  # the HTTP pool
        try:
            self.sandbox: Sandbox = make_sandbox(spec, workers=pool_size if local else None, **kwargs)
        except Exception as e:  # noqa: BLE001 - named and re-raised as the config error it is
            raise SandboxUnavailable(f"torl.sandbox={spec}: the sandbox did not start ({type(e).__name__}: {e})"
                                     ) from e
        limit = self.sandbox.max_concurrency  # more slots than the executor runs at once would queue inside it
        self.slots = min(max_concurrent, limit) if max_concurrent else limit
        self.queue_timeout_s = float(queue_timeout_s)
        self._gate: asyncio.Semaphore | None = None
        self._gate_loop: asyncio.AbstractEventLoop | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.sessions: dict[str, Session] = {}
        if health_check:
            self.check()

    def check(self) -> dict:
        """Run `print(1)`; raise SandboxUnavailable (naming the sandbox and how to start one) unless it prints 1."""
        result = self.sandbox.run("print(1)", timeout=HEALTH_TIMEOUT_S)
        if result.status != "ok" or result.stdout.strip() != "1":
            where = (f"the Sandbox Fusion server at {self.spec}" if self.spec != "local"
                     else "the LocalSandbox (torl.sandbox=local)")
            hint = START_HINT if self.spec != "local" else "run `torl sandbox doctor` on this node"
            raise SandboxUnavailable(f"torl.sandbox={self.spec}: {where} did not run print(1) ({result.status}: "
                                     f"{result.reason or result.stderr.strip()[:200]}); {hint}")
        return {"spec": self.spec, "slots": self.slots}

    async def run(self, code: str, timeout: float, memory_mb: int | None = None) -> dict:
        """Wait for a slot (at most queue_timeout_s), then run the snippet; the result as a dict (it crosses Ray)."""
        return await self._gated(lambda: self.sandbox.arun(code, timeout=timeout, memory_mb=memory_mb))

    # Interpreter sessions (torl.interpreter=session): held here by id, since ids cross Ray and sessions do not.
    async def open_session(self, memory_mb: int | None = None) -> str:
        session = await self.sandbox.asession(memory_mb=memory_mb)
        sid = secrets.token_hex(16)
        self.sessions[sid] = session
        return sid

    async def run_in_session(self, sid: str, code: str, timeout: float, memory_mb: int | None = None) -> dict:
        session = self.sessions.get(sid)
        if session is None:
            return lost_result("the node's sandbox no longer holds this session").to_dict()
        return await self._gated(lambda: session.arun(code, timeout=timeout, memory_mb=memory_mb))

    async def close_session(self, sid: str) -> None:
        session = self.sessions.pop(sid, None)
        if session is not None:
            await session.aclose()

    async def _gated(self, call) -> dict:
        loop = asyncio.get_running_loop()
        if self._gate is None or (self._gate_loop is not loop and self.in_flight == 0):  # one per event loop
            self._gate, self._gate_loop = asyncio.Semaphore(self.slots), loop
        start = time.monotonic()
        try:
            await asyncio.wait_for(self._gate.acquire(), self.queue_timeout_s)
        except TimeoutError:
            waited = time.monotonic() - start
            return ExecResult("sandbox_error", reason=f"waited {waited:.1f} s for one of the node's {self.slots} "
                              f"sandbox slots (torl.sandbox_queue_timeout={self.queue_timeout_s:g})",
                              extra={"queue_s": waited, "queue_timeout": True}).to_dict()
        queued = time.monotonic() - start
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            result = await call()
        except Exception as e:  # noqa: BLE001 - an executor failure is the infrastructure's, not the code's
            result = ExecResult("sandbox_error", reason=f"{type(e).__name__}: {e}")
        finally:
            self.in_flight -= 1
            self._gate.release()
        result.extra = {k: v for k, v in result.extra.items() if k != "files"}
        result.extra["queue_s"] = queued
        return result.to_dict()

    def stats(self) -> dict:
        return {"slots": self.slots, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}

    def close(self) -> None:
        self.sandbox.close()


class NodeSandboxClient(Sandbox):
    """What a sample's rollout sees: a `Sandbox` whose `arun` goes to the node's NodeSandbox (a Ray actor handle
    or a NodeSandbox in this process). `run` (sync) is not offered: the agent loop is async."""

    def __init__(self, target, slots: int) -> None:
        self.target = target
        self.max_concurrency = slots
        self._remote = not isinstance(target, NodeSandbox)

    def run(self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None, stdin: str | None = None
            ) -> ExecResult:
        raise NotImplementedError("NodeSandboxClient is async: use arun")

    async def arun(self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None,
                   stdin: str | None = None) -> ExecResult:
        if stdin is not None:
            raise ValueError("NodeSandboxClient: stdin is not supported")
        call = self.target.run.remote if self._remote else self.target.run
        return ExecResult.from_dict(await call(code, timeout, memory_mb))

    async def asession(self, *, memory_mb: int | None = None) -> Session:
        call = self.target.open_session.remote if self._remote else self.target.open_session
        return _NodeSession(self, await call(memory_mb))


class _NodeSession(Session):
    """A sample's interpreter session, held by the node's NodeSandbox (async only, no fork: the agent loop's)."""

    def __init__(self, client: NodeSandboxClient, sid: str) -> None:
        self.client, self.sid = client, sid

    def _method(self, name: str):
        method = getattr(self.client.target, name)
        return method.remote if self.client._remote else method

    def run(self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None,
            stdin: str | None = None) -> ExecResult:
        raise NotImplementedError("a node sandbox session is async: use arun")

    async def arun(self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None,
                   stdin: str | None = None) -> ExecResult:
        if stdin is not None:
            raise ValueError("NodeSandboxClient: stdin is not supported")
        return ExecResult.from_dict(await self._method("run_in_session")(self.sid, code, timeout, memory_mb))

    def fork(self) -> Session:
        raise SessionError("sessions of the node's sandbox are not forked (the agent loop does not need it)")

    def close(self) -> None:
        raise NotImplementedError("a node sandbox session is async: use aclose")

    async def aclose(self) -> None:
        await self._method("close_session")(self.sid)


_local: dict[tuple, NodeSandbox] = {}
_clients: dict[tuple, NodeSandboxClient] = {}
_lock = threading.Lock()
_starting: dict[tuple, asyncio.Future] = {}


def _actor_name(node_id: str) -> str:
    return f"torl_sandbox_{node_id[:16]}"


def _start(key: tuple) -> NodeSandboxClient:
    """Create (or find) this node's NodeSandbox and wait until it is healthy. Blocking: run it in a thread."""
    spec, pool_size, max_concurrent, queue_timeout_s = key
    kwargs = {"pool_size": pool_size, "max_concurrent": max_concurrent, "queue_timeout_s": queue_timeout_s}
    import ray

    if not ray.is_initialized():
        with _lock:
            box = _local.get(key)
            if box is None:
                box = _local[key] = NodeSandbox(spec, **kwargs)
        return NodeSandboxClient(box, box.slots)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    actor = ray.remote(NodeSandbox).options(
        name=_actor_name(node_id), namespace=NAMESPACE, get_if_exists=True, num_cpus=0, max_concurrency=10_000,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(spec, **kwargs)
    try:
        slots = ray.get(actor.stats.remote())["slots"]
    except ray.exceptions.RayActorError as e:  # its __init__ raised (SandboxUnavailable): pass its message on
        lines = [ln for ln in str(e).splitlines() if "SandboxUnavailable" in ln]
        raise SandboxUnavailable(lines[-1].split("SandboxUnavailable:", 1)[-1].strip() if lines else str(e)) from e
    return NodeSandboxClient(actor, slots)


async def node_sandbox(spec: str, *, pool_size: int | None, max_concurrent: int | None,
                       queue_timeout_s: float) -> NodeSandboxClient:
    """This node's sandbox for these settings, started once per process without blocking the event loop."""
    key = (spec, pool_size, max_concurrent, float(queue_timeout_s))
    client = _clients.get(key)
    if client is not None:
        return client
    pending = _starting.get(key)
    if pending is None:
        pending = _starting[key] = asyncio.ensure_future(asyncio.to_thread(_start, key))
    try:
        client = await asyncio.shield(pending)
    finally:
        if pending.done():
            _starting.pop(key, None)
    _clients[key] = client
    return client


def reset() -> None:
    """Forget this process's sandboxes and close those it started outside Ray (Ray actors die with the job)."""
    with _lock:
        boxes = list(_local.values())
        _local.clear()
        _clients.clear()
        _starting.clear()
    for box in boxes:
        box.close()
