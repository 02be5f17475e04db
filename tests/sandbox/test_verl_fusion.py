"""veRL's own Sandbox Fusion reward utility (`verl.utils.reward_score.sandbox_fusion.check_correctness`) grades code
against `torl sandbox serve` as it grades it against Sandbox Fusion (issue 14), over real HTTP on loopback."""

from __future__ import annotations

import pytest

from torl.sandbox.local import LocalSandbox
from torl.sandbox.server import ServerThread, create_app

pytestmark = pytest.mark.engines


@pytest.fixture(scope="module")
def url():
    with LocalSandbox(pool_size=2, fork_per_request=True) as sandbox, ServerThread(create_app(sandbox)) as srv:
        yield f"{srv.url}/run_code"


def grade(url: str, code: str, inputs: list[str], outputs: list[str], language: str = "python",
          timeout: int = 5) -> list:
    from verl.utils.reward_score.sandbox_fusion.utils import check_correctness

    results, _ = check_correctness(url, {"inputs": inputs, "outputs": outputs}, code, timeout=timeout,
                                   language=language)
    return results


def test_verl_grades_correct_wrong_crash_and_timeout(url):
    code = "n = int(input())\nprint(n * n)"
    assert grade(url, code, ["3", "4"], ["9", "17"]) == [True, False]
    assert grade(url, "raise ValueError('x')", [""], ["1"]) == [-2]  # runtime error
    assert grade(url, "while True: pass", [""], ["1"], timeout=1) == [-3]  # timeout


def test_verl_grades_a_124_kb_answer_correct(url):
    """Cut at 64 KiB it was graded wrong_answer; Sandbox Fusion returns up to 1 MiB per stream."""
    assert grade(url, "print('x' * 124_000)", [""], ["x" * 124_000]) == [True]


def test_verl_sees_other_languages_as_compile_errors_not_api_errors(url):
    assert grade(url, "int main() { return 0; }", [""], [""], language="cpp") == [-4]
