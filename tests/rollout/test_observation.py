"""Observation formatting (both styles) and code extraction: every case, as tables."""

import pytest

from torl.rollout import extract_code, format_observation, wrap_observation
from torl.rollout.observation import NO_OUTPUT_TEXT, REFERENCE_TIMEOUT_TEXT, ObservationFormat, inserted_text
from torl.sandbox import ExecResult

TRACE = "Traceback (most recent call last):\n  File \"<string>\", line 1, in <module>\n"
NAME_ERROR = TRACE + "NameError: name 'a' is not defined\n"
LONG = "".join(str(i % 10) for i in range(300))

ok = ExecResult("ok", stdout="4\n", return_code=0)
ok_silent = ExecResult("ok", stdout="", return_code=0)
ok_stderr_only = ExecResult("ok", stdout="", stderr="DeprecationWarning: x\n", return_code=0)
error = ExecResult("error", stderr=NAME_ERROR, return_code=1, reason="exit code 1")
print_then_crash = ExecResult("error", stdout="1\n2\n", stderr=TRACE + "ValueError: bad\n", return_code=1)
killed = ExecResult("error", stdout="", stderr="", return_code=-9, reason="killed by signal 9 (SIGKILL)")
killed_no_reason = ExecResult("error", stdout="", stderr="", return_code=-11)
timeout = ExecResult("timeout", stdout="", reason="wall-clock timeout after 10 s")
timeout_partial = ExecResult("timeout", stdout="step 1\n", reason="wall-clock timeout after 10 s")
timeout_bare = ExecResult("timeout")
sandbox_error = ExecResult("sandbox_error", reason="no sandbox worker is available")
stdout_says_error = ExecResult("ok", stdout="Computing...\nError rate: 0.5\n", return_code=0)
long_out = ExecResult("ok", stdout=LONG + "\n", return_code=0)
edge_255 = ExecResult("ok", stdout="x" * 255, return_code=0)
edge_256 = ExecResult("ok", stdout="x" * 256, return_code=0)
spaced = ExecResult("ok", stdout="\n  a  b\n\n", return_code=0)


@pytest.mark.parametrize(("result", "expected"), [
    (ok, "4"),
    (ok_silent, NO_OUTPUT_TEXT),
    (ok_stderr_only, NO_OUTPUT_TEXT),
    (error, "NameError: name 'a' is not defined"),
    (print_then_crash, "1\n2\nValueError: bad"),
    (killed, "Error: killed by signal 9 (SIGKILL)"),
    (killed_no_reason, "Error: killed by signal 11"),
    (timeout, "TimeoutError: wall-clock timeout after 10 s"),
    (timeout_partial, "step 1\nTimeoutError: wall-clock timeout after 10 s"),
    (timeout_bare, "TimeoutError: the code did not finish within the time limit"),
    (sandbox_error, "SandboxError: the code could not be run (no sandbox worker is available); "
                    "this says nothing about the code"),
    (stdout_says_error, "Computing...\nError rate: 0.5"),
    (long_out, LONG[:128] + "..." + LONG[-128:]),
    (edge_255, "x" * 255),
    (edge_256, "x" * 128 + "..." + "x" * 128),
    (spaced, "  a  b"),
])
def test_torl_style(result, expected):
    assert format_observation(result) == expected
    assert format_observation(result, "torl") == expected


@pytest.mark.parametrize(("result", "expected"), [
    (ok, "4"),
    (ok_silent, REFERENCE_TIMEOUT_TEXT),  # defect kept: a silent success reads as a timeout
    (ok_stderr_only, REFERENCE_TIMEOUT_TEXT),
    (error, "NameError: name 'a' is not defined"),
    (print_then_crash, "1\n2"),  # defect kept: the crash is hidden
    (killed, REFERENCE_TIMEOUT_TEXT),
    (timeout, REFERENCE_TIMEOUT_TEXT),
    (timeout_partial, "step 1"),
    (sandbox_error, "UnknownError"),
    (stdout_says_error, "Error rate: 0.5"),  # "Error" anywhere → last line only
    (long_out, LONG[:128] + "..." + LONG[-128:]),
    (edge_255, "x" * 255),
    (edge_256, "x" * 128 + "..." + "x" * 128),
    (spaced, "a  b"),  # stripped
])
def test_reference_style(result, expected):
    assert format_observation(result, "reference") == expected


def test_torl_truncation_is_configurable_and_keeps_the_error_line():
    fmt = ObservationFormat(max_chars=20, head=5, tail=5)
    assert format_observation(long_out, fmt=fmt) == LONG[:5] + "..." + LONG[-5:]
    crash = ExecResult("error", stdout=LONG, stderr=TRACE + "ZeroDivisionError: division by zero\n", return_code=1)
    obs = format_observation(crash)
    assert obs == LONG[:128] + "..." + LONG[-128:] + "\nZeroDivisionError: division by zero"
    with pytest.raises(ValueError):
        ObservationFormat(max_chars=10, head=8, tail=8)


def test_unknown_style():
    with pytest.raises(ValueError, match="style"):
        format_observation(ok, "verbose")


def test_styles_on_real_sandbox_results(local_sandbox):
    r = local_sandbox.run("print(1)\nraise ValueError('bad')", timeout=5)
    assert format_observation(r) == "1\nValueError: bad"
    assert format_observation(r, "reference") == "1"
    r = local_sandbox.run("x = 2 + 2", timeout=5)
    assert format_observation(r) == NO_OUTPUT_TEXT
    assert format_observation(r, "reference") == REFERENCE_TIMEOUT_TEXT
    r = local_sandbox.run("import time\nprint('started', flush=True)\ntime.sleep(5)", timeout=0.5)
    assert r.status == "timeout"
    assert format_observation(r).startswith("started\nTimeoutError: ")
    r = local_sandbox.run("print(undefined_name)", timeout=5)
    assert format_observation(r) == format_observation(r, "reference") == \
        "NameError: name 'undefined_name' is not defined"


def test_wrap_observation():
    assert wrap_observation("4") == "```output\n4\n```\n"


@pytest.mark.parametrize(("text", "code"), [
    ("Compute.\n```python\nprint(1 + 1)\n```\n```output", "print(1 + 1)\n"),
    ("```python\nx = 1\n\nprint(x)\n```\n", "x = 1\n\nprint(x)\n"),
    # several blocks: only the last one
    ("```python\nprint('A')\n```\ntext\n```python\nprint('B')\n```\n```output", "print('B')\n"),
    # the last block is not closed: nothing runs, even with an earlier complete block (reference rule)
    ("```python\nprint('A')\n```\n```python\nprint('B')\n```output", None),
    ("```python\nprint(1)\n", None),
    ("```python\nprint(1)```\n```output", None),
    # no block at all, an empty block
    ("Just words.\n```output", None),
    ("```output", None),
    ("```python\n\n   \n```\n```output", None),
    # a block opened at the end of a line
    ("Run this: ```python\nprint(3)\n```\n```output", "print(3)\n"),
    # text after the stop marker is not this round's code
    ("```python\nprint(1)\n```\n```output\n```python\nprint(2)\n```\n", "print(1)\n"),
    # other fences close a block too; ```py is not python
    ("```py\nprint(1)\n```\n```output", None),
])
def test_extract_code(text, code):
    assert extract_code(text) == code


@pytest.mark.parametrize(("round_text", "stop", "expected"), [
    ("```python\nprint(7)\n```\n```output", "```output", "\n7\n```\n"),
    ("```python\nprint(7)\n```\n```output\n", "```output", "7\n```\n"),  # the last token was "put\n"
    ("```python\nprint(7)\n```\n```outputs", "```output", "\n7\n```\n"),  # overshoot that is not the block's
    ("```python\nprint(7)\n```\n<run>", "<run>", "```output\n7\n```\n"),  # a custom marker: the whole block
])
def test_inserted_text(round_text, stop, expected):
    assert inserted_text(round_text, "7", stop=stop) == expected
