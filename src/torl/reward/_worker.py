"""A grading worker process: `python -m torl.reward._worker [MEMORY_MB]`.

Protocol (JSON lines): the worker prints {"ready": true} once sympy and math-verify are loaded; then for
each request line {"op": "equal" | "parse" | "reference", "items": [[...], ...]} it prints one line per
item, in order, as soon as that item is done: {"i": k, "r": bool, "m": method}. It exits on end of input.
The parent enforces the deadline by killing the process; this loop never needs signals or threads.
Stray output from libraries goes to /dev/null (fd 1 is redirected; the protocol uses a duplicate).
"""

from __future__ import annotations

import json
import os
import sys

_WARM_UP = (
    ("p-q", "q-p"),
    ("x^2+2x+1", "(x+1)^2"),
    ("\\sqrt{8}", "2\\sqrt{2}"),
    ("\\frac{\\pi}{3}", "1.047"),
    ("(1, \\sqrt{2}]", "(1, \\sqrt{2})"),
    ("\\begin{pmatrix} \\sqrt{2} \\\\ x \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ x \\end{pmatrix}"),
    ("y = 2x + 1", "2x - y + 1 = 0"),
    ("\\{1, \\sqrt{3}\\}", "\\{\\sqrt{3}, 1\\}"),
    ("\\cot x", "\\frac{\\cos x}{\\sin x}"),
)


def _limit_resources(memory_mb: int) -> None:
    try:
        import resource

        if memory_mb > 0:
            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        # a worker recycles itself after this much CPU time (the parent retries the item once): bounds any
        # orphan left spinning if the parent dies mid-computation
        resource.setrlimit(resource.RLIMIT_CPU, (900, 960))
    except (ImportError, ValueError, OSError):
        pass


def _handlers():
    # imported here, in the worker process only: math-verify and sympy stay out of the parent
    from torl.reward.normalize import NormalizedAnswer
    from torl.reward.reference import reference_equal
    from torl.reward.symbolic import symbolic_can_parse, symbolic_equal
    from torl.reward.values import DEFAULT_REL_TOL

    def equal(pred: list, gold: list, rel_tol: float = DEFAULT_REL_TOL) -> tuple[bool, str]:
        return symbolic_equal(
            NormalizedAnswer.from_payload(pred), NormalizedAnswer.from_payload(gold), rel_tol
        )

    def can_parse(text: str) -> tuple[bool, str]:
        return symbolic_can_parse(text), "latex2sympy"

    return {"equal": equal, "parse": can_parse, "reference": reference_equal}


def main() -> None:
    memory_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    _limit_resources(memory_mb)
    handlers = _handlers()
    for pred, gold in _WARM_UP:  # sympy's first call of each kind is slow; pay it before the first deadline
        handlers["equal"]([pred], [gold])
    handlers["reference"]("\\frac{\\pi}{3}", "1.047")
    out.write('{"ready": true}\n')
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        request = json.loads(line)
        handler = handlers[request["op"]]
        for k, item in enumerate(request["items"]):
            try:
                result, method = handler(*item)
            except MemoryError:
                out.write(json.dumps({"i": k, "r": False, "m": "error:MemoryError"}) + "\n")
                os._exit(3)  # state after a MemoryError is not trusted; the parent starts a fresh worker
            except BaseException as e:  # noqa: BLE001 - one bad item must not end the worker
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                result, method = False, f"error:{type(e).__name__}"
            out.write(json.dumps({"i": k, "r": bool(result), "m": method}) + "\n")


if __name__ == "__main__":
    main()
