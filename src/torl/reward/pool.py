"""Pre-started grading worker processes with a hard per-item deadline, usable from any thread.

Each worker is a plain subprocess (`python -m torl.reward._worker`) that answers JSON-line requests, so
nothing depends on signals, the main thread, or how the parent's `__main__` is written. A request holds one
idle worker; every item of it must finish within `timeout` seconds of the previous one, otherwise the
worker is killed and replaced and the item is reported as "timeout". A worker that dies on its own is
replaced and its item retried once.
"""

from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

START_TIMEOUT = 120.0  # seconds a fresh worker may take to import sympy and math-verify


class _Timeout(Exception):
    pass


class _Died(Exception):
    pass


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])  # the directory that contains the `torl` package


class _Worker:
    """One worker subprocess and its line-buffered reader."""

    def __init__(self, memory_mb: int):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH", "")) if p)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "torl.reward._worker", str(memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            close_fds=True,
        )
        self._fd = self.proc.stdout.fileno()
        self._buffer = b""
        self.ready = False

    def _read_line(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout
            readable, _, _ = select.select([self._fd], [], [], remaining)
            if not readable:
                raise _Timeout
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise _Died
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def wait_ready(self) -> None:
        if self.ready:
            return
        try:
            message = self._read_line(START_TIMEOUT)
        except (_Timeout, _Died):
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self._stderr.seek(0)
            detail = self._stderr.read()[-2000:].decode(errors="replace").strip()
            self.kill()
            raise RuntimeError(
                f"a grading worker ({sys.executable} -m torl.reward._worker) failed to start "
                f"(exit status {self.proc.returncode}): {detail or 'no output'}"
            ) from None
        if not message.get("ready"):
            raise RuntimeError(f"a grading worker sent {message!r} instead of its ready line")
        self.ready = True

    def send(self, op: str, items: list) -> None:
        try:
            self.proc.stdin.write((json.dumps({"op": op, "items": items}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _Died from None

    def receive(self, timeout: float) -> dict:
        return self._read_line(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._stderr.close()


class WorkerPool:
    """`processes` grading workers. Thread-safe; `run` blocks until a worker is free.

    `restarts` counts workers replaced after a timeout or a crash.
    """

    def __init__(self, processes: int, *, memory_mb: int = 2048):
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self.size = processes
        self.memory_mb = memory_mb
        self.owner_pid = os.getpid()  # a forked child must neither use nor kill its parent's workers
        self.restarts = 0
        self._lock = threading.Lock()
        self._closed = False
        self._live: set[_Worker] = set()
        self._idle: queue.Queue[_Worker] = queue.Queue()
        for _ in range(processes):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        worker = _Worker(self.memory_mb)
        with self._lock:
            self._live.add(worker)
        return worker

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        with self._lock:
            self._live.discard(worker)
            self.restarts += 1
        return self._spawn()

    def run(self, op: str, items: list, timeout: float) -> list[tuple[bool, str]]:
        """Run `op` on every item; returns (result, method) per item, method "timeout" when one overran."""
        if self._closed:
            raise RuntimeError("the grading worker pool is closed")
        results: list[tuple[bool, str] | None] = [None] * len(items)
        pending = list(range(len(items)))
        retried: set[int] = set()
        worker = self._idle.get()
        try:
            while pending:
                if self._closed:
                    raise RuntimeError("the grading worker pool was closed while in use")
                try:
                    worker.wait_ready()
                    worker.send(op, [items[i] for i in pending])
                except _Died:
                    worker = self._replace(worker)
                    continue
                except RuntimeError:  # it could not start: leave a fresh one for the next caller, report
                    worker = self._replace(worker)
                    raise
                batch, pending = pending, []
                for k, index in enumerate(batch):
                    try:
                        message = worker.receive(timeout)
                    except (_Timeout, _Died) as e:
                        timed_out = isinstance(e, _Timeout)
                        worker = self._replace(worker)
                        if timed_out or index in retried:
                            results[index] = (False, "timeout" if timed_out else "error:worker died")
                            pending = batch[k + 1 :]
                        else:
                            retried.add(index)
                            pending = batch[k:]
                        break
                    results[index] = (bool(message["r"]), str(message["m"]))
        finally:
            self._idle.put(worker)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Kill every worker. Idempotent; does nothing in a forked child (the workers are the parent's)."""
        self._closed = True
        if os.getpid() != self.owner_pid:
            return
        with self._lock:
            live, self._live = list(self._live), set()
        for worker in live:
            worker.kill()
