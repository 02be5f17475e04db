"""Run untrusted model-written Python.

- `ExecResult`, `Sandbox`: the result type and the interface every executor implements.
- `LocalSandbox`: the embedded default, a pool of pre-warmed, isolated fork-server workers.
- `SandboxFusionClient`: a client of the Sandbox Fusion `/run_code` API (ours or the original service).
- `make_sandbox("local" | URL, workers=N)`: build one from a CLI/config string (`register_sandbox` adds kinds).
"""

from __future__ import annotations

from collections.abc import Callable

from torl.errors import UserInputError
from torl.sandbox.base import STATUSES, ExecResult, Sandbox
from torl.sandbox.fusion import SandboxFusionClient
from torl.sandbox.local import LocalSandbox

__all__ = ["STATUSES", "ExecResult", "Sandbox", "LocalSandbox", "SandboxFusionClient", "make_sandbox", "register_sandbox"]


def _local(spec: str, *, workers: int | None = None, **kwargs) -> Sandbox:
    return LocalSandbox(pool_size=workers, **kwargs)


def _fusion(spec: str, *, workers: int | None = None, **kwargs) -> Sandbox:
    return SandboxFusionClient(spec, **kwargs)  # the server sizes its own pool: `workers` is for local pools


# spec -> factory(spec, *, workers, **kwargs); URLs are looked up by their scheme
SANDBOXES: dict[str, Callable[..., Sandbox]] = {"local": _local, "http": _fusion, "https": _fusion}


def register_sandbox(name: str, factory: Callable[..., Sandbox]) -> None:
    """Make `make_sandbox(name)` (or a `name://` URL) build `factory(spec, workers=..., **kwargs)`."""
    SANDBOXES[name] = factory


def make_sandbox(spec: str = "local", *, workers: int | None = None, **kwargs) -> Sandbox:
    """A sandbox from a CLI/config string: `"local"` → LocalSandbox with `workers` processes (None: its default);
    an http(s) URL → SandboxFusionClient(url, **kwargs) (`workers` does not apply to a remote server)."""
    key = spec.split("://", 1)[0] if "://" in spec else spec
    factory = SANDBOXES.get(key)
    if factory is None:
        raise UserInputError(f"sandbox must be 'local' or an http(s):// URL of a Sandbox Fusion server, got {spec!r}")
    return factory(spec, workers=workers, **kwargs)
