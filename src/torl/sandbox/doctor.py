"""`torl sandbox doctor`: which isolation layers are active, each verified by a probe snippet."""

from __future__ import annotations

import os
import socket

from torl.sandbox.local import LocalSandbox

SECRET_VAR = "TORL_DOCTOR_SECRET"

# (name, snippet, what "protected" looks like in its stdout)
PROBES: tuple[tuple[str, str, str], ...] = (
    ("no network (TCP to the host's loopback)",
     "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('OPEN')\n"
     "except OSError as e:\n    print('blocked', type(e).__name__)", "blocked"),
    ("writes confined to the job directory",
     "import os\nfor p in ('/tmp', '/dev/shm', {home!r}, '/'):\n"
     "    try:\n        open(os.path.join(p, 'torl-doctor-probe'), 'w').close(); print('WROTE', p)\n"
     "    except OSError:\n        pass\nopen('inside.txt', 'w').write('x'); print('ok')", "ok"),
    ("caller's environment not inherited",
     "import os\nprint('LEAK' if '" + SECRET_VAR + "' in os.environ else 'clean')", "clean"),
    ("other processes invisible or unreadable",
     "import os\nleak = []\nfor p in filter(str.isdigit, os.listdir('/proc')):\n"
     "    try:\n        leak.append(b'" + SECRET_VAR + "' in open(f'/proc/{p}/environ', 'rb').read())\n"
     "    except OSError:\n        pass\nprint('LEAK' if any(leak) else 'hidden')", "hidden"),
    ("signals cannot reach other processes",
     "import os\ntry:\n    os.kill(-1, 0); print('SIGNAL-ALL')\nexcept OSError:\n    print('blocked')", "blocked"),
    ("rlimits applied",
     "import resource\nprint('limited' if resource.getrlimit(resource.RLIMIT_AS)[0] > 0 and "
     "resource.getrlimit(resource.RLIMIT_CPU)[0] > 0 else 'UNLIMITED')", "limited"),
)


def diagnose() -> dict:
    """Start a one-worker LocalSandbox, run the probes, and report layers and probe outcomes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    os.environ[SECRET_VAR] = "s3cret"
    try:
        with LocalSandbox(pool_size=1) as sandbox:
            probes = []
            for name, code, expect in PROBES:
                code = code.replace("{port}", str(port)).replace("{home!r}", repr(os.path.expanduser("~")))
                result = sandbox.run(code, timeout=10)
                passed = result.status == "ok" and expect in result.stdout and "WROTE" not in result.stdout
                probes.append({"probe": name, "passed": passed, "status": result.status,
                               "output": (result.stdout + result.stderr).strip()[-300:]})
            layers, missing = sandbox.layers, sandbox.plan.missing
    finally:
        os.environ.pop(SECRET_VAR, None)
        listener.close()
    return {"layers": layers, "missing": missing, "probes": probes,
            "all_probes_passed": all(p["passed"] for p in probes)}


def format_report(report: dict) -> str:
    lines = ["isolation layers:"]
    for layer, value in report["layers"].items():
        shown = value if not isinstance(value, bool) else ("on" if value else "off")
        lines.append(f"  {layer:<32} {shown}")
    for layer, why in report["missing"].items():
        lines.append(f"  ! {layer}: {why}")
    lines.append("probes:")
    for p in report["probes"]:
        lines.append(f"  [{'pass' if p['passed'] else 'FAIL'}] {p['probe']}"
                     + ("" if p["passed"] else f"  -> {p['status']}: {p['output']}"))
    lines.append("all probes passed" if report["all_probes_passed"] else "SOME PROBES FAILED")
    return "\n".join(lines)
