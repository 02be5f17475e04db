"""What the model's code is, and what the model is told about running it.

- `extract_code(round_text)`: the code to run for one round (the last ```` ```python ```` block, if closed).
- `format_observation(result, style)`: the text shown to the model for an `ExecResult`.
- `wrap_observation(obs)`: the block, "```output\\n{obs}\\n```\\n" (both styles); `inserted_text` is the part of it
  appended after the model's own "```output".

Style "torl" (default) tells the truth: the status decides the message, a silent success says so, a timeout says
it timed out, a crash after printing shows the printed text and the error's last line. Style "reference"
reproduces the reference rules bit for bit (TORL-SPEC §3), defects included.
"""

from __future__ import annotations

from dataclasses import dataclass

from torl.sandbox.base import ExecResult

STYLES: tuple[str, ...] = ("torl", "reference")
OUTPUT_MARKER = "```output"
REFERENCE_TIMEOUT_TEXT = "timeout_decorator.timeout_decorator.TimeoutError: 'Timed Out'"
NO_OUTPUT_TEXT = "(no output: the code ran without errors but printed nothing)"


def extract_code(round_text: str, *, stop: str = OUTPUT_MARKER, run_blank: bool = False) -> str | None:
    """The code of the last ```` ```python ```` block in one round's text, or None.

    Text from the last `stop` marker on is ignored. A line that starts or ends with "```python" opens a block
    (dropping any block still open); a line starting with "```" closes it. If the last block opened is never
    closed, the model did not finish its code and nothing runs (None), as in the reference. A block holding
    only whitespace is None too, unless `run_blank` (the reference runs it, TORL-SPEC §3 step 2: its empty output
    then reads as the reference's timeout text).
    """
    if stop and stop in round_text:
        round_text = round_text[: round_text.rindex(stop)]
    code: list[str] | None = None
    last: str | None = None
    for line in round_text.split("\n"):
        if line.startswith("```python") or line.endswith("```python"):
            code = []
        elif line.startswith("```"):
            if code is not None:
                last = "\n".join(code) + "\n"
            code = None
        elif code is not None:
            code.append(line)
    if code is not None or last is None or not (last.strip() or run_blank):
        return None
    return last


@dataclass(frozen=True)
class ObservationFormat:
    """Truncation of the "torl" style: text of `max_chars` or more keeps `head` + "..." + `tail` characters."""

    max_chars: int = 256
    head: int = 128
    tail: int = 128

    def __post_init__(self) -> None:
        if self.head < 0 or self.tail < 0 or self.head + self.tail > self.max_chars:
            raise ValueError(f"truncation needs 0 <= head, tail and head + tail <= max_chars, got {self}")


def head_tail(text: str, fmt: ObservationFormat = ObservationFormat()) -> str:
    if len(text) < fmt.max_chars:
        return text
    return text[: fmt.head] + "..." + (text[-fmt.tail :] if fmt.tail else "")


def last_error_line(stderr: str) -> str:
    """The last non-empty line of stderr: for a traceback, "NameError: name 'a' is not defined"."""
    lines = [ln for ln in stderr.strip().split("\n") if ln.strip()]
    return lines[-1].strip() if lines else ""


def format_observation(result: ExecResult, style: str = "torl", *, fmt: ObservationFormat | None = None) -> str:
    """The observation text for one execution (without the ```` ```output ```` fences)."""
    if style == "torl":
        return _torl(result, fmt or ObservationFormat())
    if style == "reference":
        return _reference(result)
    raise ValueError(f"observation style must be one of {STYLES}, got {style!r}")


def wrap_observation(obs: str) -> str:
    """The block inserted into the response after an execution."""
    return f"{OUTPUT_MARKER}\n{obs}\n```\n"


def inserted_text(round_text: str, obs: str, *, stop: str = OUTPUT_MARKER) -> str:
    """What the loop appends after a round that ended with `stop`: the rest of `wrap_observation(obs)` after
    the marker the model wrote, minus any characters its last token already wrote past the marker (a stop that
    ended inside a token, e.g. a token "put\\n")."""
    block = wrap_observation(obs)
    after = block[len(stop):] if block.startswith(stop) else block
    overshoot = round_text[round_text.rindex(stop) + len(stop):]
    if overshoot and after.startswith(overshoot):
        after = after[len(overshoot):]
    return after


def _torl(result: ExecResult, fmt: ObservationFormat) -> str:
    stdout = result.stdout.rstrip().lstrip("\n")
    printed = [head_tail(stdout, fmt)] if stdout else []
    if result.status == "ok":
        return printed[0] if printed else NO_OUTPUT_TEXT
    if result.status == "error":
        err = last_error_line(result.stderr) or _exit_text(result)
        return "\n".join([*printed, head_tail(err, fmt)])
    if result.status == "timeout":
        why = result.reason or "the code did not finish within the time limit"
        return "\n".join([*printed, f"TimeoutError: {why}"])
    why = result.reason or "unknown failure"
    return f"SandboxError: the code could not be run ({why}); this says nothing about the code"


def _exit_text(result: ExecResult) -> str:
    if result.reason:
        return f"Error: {result.reason}"
    code = result.return_code
    if code is not None and code < 0:
        return f"Error: killed by signal {-code}"
    return f"Error: exit code {code}"


def _reference(result: ExecResult) -> str:
    """The reference post-processing, step by step (a sandbox failure reads as "UnknownError" there)."""
    if result.status == "sandbox_error":
        obs = "UnknownError"
    elif str(result.return_code) == "0" or len(result.stdout) != 0:
        obs = result.stdout
    else:
        obs = result.stderr.strip()
    if "Error" in obs:
        obs = obs.strip().split("\n")[-1]
    if len(obs.strip()) == 0:
        obs = REFERENCE_TIMEOUT_TEXT
    obs = obs.strip()
    if len(obs) >= 256:
        obs = obs[:128] + "..." + obs[-128:]
    return obs
