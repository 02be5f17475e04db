"""The sandbox interface: one result type and one abstract executor."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Literal

Status = Literal["ok", "error", "timeout", "sandbox_error"]
STATUSES: tuple[str, ...] = ("ok", "error", "timeout", "sandbox_error")


@dataclass
class ExecResult:
    """Outcome of running one snippet.

    status: "ok" (exit 0), "error" (non-zero exit, signal, out of memory), "timeout" (wall-clock or CPU limit),
    "sandbox_error" (the infrastructure failed; says nothing about the code).
    return_code: the exit code, minus the signal number when killed by a signal, None on timeout/sandbox_error.
    truncated: True when stdout or stderr was cut to the capture cap (head and tail kept).
    reason: a short human-readable explanation of a non-ok status ("" when ok).
    """

    status: Status
    stdout: str = ""
    stderr: str = ""
    return_code: int | None = None
    duration_s: float = 0.0
    truncated: bool = False
    reason: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"ExecResult.status must be one of {STATUSES}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ExecResult:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


class SessionError(RuntimeError):
    """A session cannot be opened, forked or used: this sandbox holds none, the cap is reached, or it is closed."""


class Session(abc.ABC):
    """A stateful interpreter: each `run` executes in the globals (variables, imports, functions) left by the
    earlier ones, with the limits and isolation of a stateless call. A call that times out or kills the
    interpreter ends the session: every later call returns status "error" with `extra["session_lost"]` and a
    reason starting "session lost". `fork()` copies the interpreter (copy-on-write); `close()` ends it."""

    @abc.abstractmethod
    def run(self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None,
            stdin: str | None = None) -> ExecResult:
        """Run one snippet in this session. Raises SessionError only when the session was closed."""

    async def arun(self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None,
                   stdin: str | None = None) -> ExecResult:
        """Async form of `run` (default: `run` in a worker thread)."""
        return await asyncio.to_thread(self.run, code, timeout=timeout, memory_mb=memory_mb, stdin=stdin)

    @abc.abstractmethod
    def fork(self) -> Session:
        """An independent copy of this session's interpreter state. Raises SessionError if it is lost."""

    @abc.abstractmethod
    def close(self) -> None:
        """End the session (kills its interpreter, removes its files). Idempotent."""

    async def aclose(self) -> None:
        """Async form of `close` (default: `close` in a worker thread)."""
        await asyncio.to_thread(self.close)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_call(code, timeout, memory_mb) -> None:
    """The arguments every run call checks before anything runs: a string of code, a positive timeout and,
    when given, a positive memory limit."""
    if not isinstance(code, str):
        raise TypeError(f"code must be str, got {type(code).__name__}")
    if not timeout or timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if memory_mb is not None and memory_mb <= 0:
        raise ValueError(f"memory_mb must be > 0, got {memory_mb}")


def lost_result(why: str) -> ExecResult:
    """What a call to a session that was lost earlier returns."""
    return ExecResult("error", stderr=f"SessionLost: the interpreter session was lost earlier ({why}); its "
                      "variables are gone\n", reason=f"session lost: {why}", extra={"session_lost": True})


class Sandbox(abc.ABC):
    """Runs Python snippets in isolation. Implementations: LocalSandbox, SandboxFusionClient.

    `run` is thread-safe. `run_many`/`arun_many` run snippets concurrently and keep the input order.
    """

    default_timeout: float = 10.0
    max_concurrency: int = 8
    # True when `run`/`arun` also take files=, fetch_files= and output_cap= (LocalSandbox; see its `run`)
    runs_jobs: bool = False

    @abc.abstractmethod
    def run(
        self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None, stdin: str | None = None
    ) -> ExecResult:
        """Run one snippet and return its result. Never raises for failures of the code itself."""

    async def arun(
        self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None, stdin: str | None = None
    ) -> ExecResult:
        """Async form of `run` (default: `run` in a worker thread)."""
        return await asyncio.to_thread(self.run, code, timeout=timeout, memory_mb=memory_mb, stdin=stdin)

    def run_many(
        self,
        codes: Sequence[str],
        *,
        timeout: float = 10.0,
        memory_mb: int | None = None,
        stdins: Sequence[str | None] | None = None,
    ) -> list[ExecResult]:
        """Run many snippets concurrently (up to `max_concurrency` at once); results in input order."""
        if stdins is not None and len(stdins) != len(codes):
            raise ValueError(f"stdins has {len(stdins)} items but codes has {len(codes)}")
        if not codes:
            return []
        stdins = stdins if stdins is not None else [None] * len(codes)
        workers = max(1, min(self.max_concurrency, len(codes)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="torl-sandbox") as pool:
            futures = [
                pool.submit(self.run, c, timeout=timeout, memory_mb=memory_mb, stdin=s)
                for c, s in zip(codes, stdins, strict=True)
            ]
            return [f.result() for f in futures]

    async def arun_many(
        self,
        codes: Sequence[str],
        *,
        timeout: float = 10.0,
        memory_mb: int | None = None,
        stdins: Sequence[str | None] | None = None,
    ) -> list[ExecResult]:
        """Async form of `run_many`: at most `max_concurrency` snippets in flight."""
        if stdins is not None and len(stdins) != len(codes):
            raise ValueError(f"stdins has {len(stdins)} items but codes has {len(codes)}")
        stdins = stdins if stdins is not None else [None] * len(codes)
        gate = asyncio.Semaphore(max(1, self.max_concurrency))

        async def one(code: str, stdin: str | None) -> ExecResult:
            async with gate:
                return await self.arun(code, timeout=timeout, memory_mb=memory_mb, stdin=stdin)

        return list(await asyncio.gather(*(one(c, s) for c, s in zip(codes, stdins, strict=True))))

    def session(self, *, memory_mb: int | None = None) -> Session:
        """A stateful interpreter session (see `Session`); sandboxes that cannot hold one raise SessionError."""
        raise SessionError(f"{type(self).__name__} cannot hold interpreter sessions (LocalSandbox and "
                           "`torl sandbox serve` can); use rollout.interpreter: stateless")

    async def asession(self, *, memory_mb: int | None = None) -> Session:
        """Async form of `session` (default: `session` in a worker thread)."""
        return await asyncio.to_thread(self.session, memory_mb=memory_mb)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (processes, connections). Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
