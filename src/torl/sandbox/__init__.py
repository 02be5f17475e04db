"""Run untrusted model-written Python.

- `ExecResult`, `Sandbox`: the result type and the interface every executor implements.
- `LocalSandbox`: the embedded default, a pool of pre-warmed, isolated fork-server workers.
- `SandboxFusionClient`: a client of the Sandbox Fusion `/run_code` API (ours or the original service).
- `make_sandbox("local" | URL)`: pick one from a CLI/config string.
"""

from __future__ import annotations

from torl.sandbox.base import STATUSES, ExecResult, Sandbox

__all__ = ["STATUSES", "ExecResult", "Sandbox", "LocalSandbox", "SandboxFusionClient", "make_sandbox"]


def __getattr__(name: str):  # lazy: importing torl.sandbox must not start or import heavy things
    if name == "LocalSandbox":
        from torl.sandbox.local import LocalSandbox

        return LocalSandbox
    if name == "SandboxFusionClient":
        from torl.sandbox.fusion import SandboxFusionClient

        return SandboxFusionClient
    raise AttributeError(f"module 'torl.sandbox' has no attribute {name!r}")


def make_sandbox(spec: str = "local", **kwargs) -> Sandbox:
    """`"local"` → LocalSandbox(**kwargs); an http(s) URL → SandboxFusionClient(url, **kwargs)."""
    if spec == "local":
        from torl.sandbox.local import LocalSandbox

        return LocalSandbox(**kwargs)
    if spec.startswith(("http://", "https://")):
        from torl.sandbox.fusion import SandboxFusionClient

        return SandboxFusionClient(spec, **kwargs)
    from torl.errors import UserInputError

    raise UserInputError(f"sandbox must be 'local' or an http(s):// URL of a Sandbox Fusion server, got {spec!r}")
