"""extract_answer: the last \\boxed{} the model wrote, tool output ignored."""

import pytest

from torl.reward import extract_answer

CASES = [
    ("The answer is $\\boxed{5}$.", "5"),
    ("\\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\left\\{1, \\{2\\}\\right\\}}", "\\left\\{1, \\{2\\}\\right\\}"),
    ("nested \\boxed{a_{b_{c}} + {d}}", "a_{b_{c}} + {d}"),
    ("so \\boxed 5$ done", "5"),
    ("\\boxed 42", "42"),
    ("\\fbox{7}", "7"),
    ("\\boxed{ 3 }", "3"),
    ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
    ("\\boxed{x=5} and $\\boxed{\\dfrac{3}{4}}$", "\\dfrac{3}{4}"),
    ("no box here", None),
    ("", None),
    ("\\boxed{}", None),
    ("\\boxed{12", None),  # truncated response: braces never close
    ("\\boxed{1} and later \\boxed{2", None),  # the last box is the answer, and it is unbalanced
    ("\\boxedfoo{3}", None),  # not the \\boxed command
    # a box inside tool output is not the model's answer
    ("```python\nprint('\\\\boxed{9}')\n```\n```output\n\\boxed{9}\n```\nSo \\boxed{8}.", "8"),
    ("I think \\boxed{3}.\n```python\nprint(1)\n```\n```output\n\\boxed{4}\n```\n", "3"),
    ("```output\n\\boxed{4}\n```", None),
    ("\\boxed{6}\n```output\nstill running \\boxed{7}", "6"),  # an unclosed output block runs to the end
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_fallback_only_when_asked_and_only_without_a_box():
    text = "Working...\nThe answer is $17$.\nDone"
    assert extract_answer(text) is None
    assert extract_answer(text, fallback=True) == "17"
    assert extract_answer("final answer: 3/4.", fallback=True) == "3/4"
    assert extract_answer("The answer is 2, but \\boxed{5}", fallback=True) == "5"


def test_long_text_is_linear_and_finds_the_last_box():
    text = ("x{" * 50_000) + "\\boxed{11}" + ("}" * 10)
    assert extract_answer(text) == "11"
    assert extract_answer("\\boxed{" + "{" * 100_000) is None


def test_rejects_non_strings():
    with pytest.raises(TypeError):
        extract_answer(None)
