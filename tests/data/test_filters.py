"""Each content filter on cases that must be dropped and cases that must be kept."""

import pytest

from torl.data import filters
from torl.data.answers import answer_type, boxed_contents, other_boxed
from torl.data.readers import clean_answer


@pytest.mark.parametrize(
    ("problem", "answer"),
    [
        ("Prove that $a^2+b^2 \\geq 2ab$ for all real $a, b$.", "a^2+b^2 \\geq 2ab"),
        ("Prove that there are infinitely many primes.", "\\text{proved}"),
        ("Show that the sum of two odd numbers is even.", "2k"),
        ("Demonstrate that the triangle is isosceles.", "AB = AC"),
        ("Let $x>0$. Show that $x + 1/x \\ge 2$. Find the value of $x$ for which equality holds.", "x + 1/x \\ge 2"),
        ("In triangle $ABC$, AB = AC.", "proof"),
        ("求证: 对任意正整数 n, n^3-n 能被 6 整除.", "6"),
    ],
)
def test_proof_problems_are_dropped(problem, answer):
    assert filters.is_proof(problem, answer)


@pytest.mark.parametrize(
    ("problem", "answer"),
    [
        ("Show that $(x+1)^2-(x-1)^2-4x$ does not depend on $x$, and find its value.", "0"),
        ("Show that x = ?", "5"),
        ("Given $f(x)=x^2-2x$. (1) Prove that $f$ is increasing on $[1,\\infty)$; (2) Find its minimum on $[2,4]$.", "0"),
        ("What is the smallest prime greater than 10?", "11"),
        ("The new product proved popular: 30 were sold on Monday and 45 on Tuesday. How many were sold?", "75"),
        ("A student improved her score from 60 to 75. By how many points did it improve?", "15"),
    ],
)
def test_problems_with_a_value_to_find_are_not_proofs(problem, answer):
    assert filters.is_proof(problem, answer) is None


@pytest.mark.parametrize(
    ("problem", "answer"),
    [
        ("Which of the five numbers on the board is the largest?", "C"),
        ("Which graph is the graph of $y=f(-x)$? [asy] label(\"$A$\", (0,0)); label(\"$B$\", (1,0)); [/asy]", "\\text{B}"),
        ("Which option is correct?", "\\textbf{(E)}"),
    ],
)
def test_letter_answers_without_choices_are_dropped(problem, answer):
    assert filters.is_letter_without_choices(problem, answer)


@pytest.mark.parametrize(
    ("problem", "answer"),
    [
        ("How many primes are less than 10? (A) 1 (B) 2 (C) 3 (D) 4 (E) 5", "D"),
        ("What is $2+3$? $\\textbf{(A)}\\ 4 \\qquad \\textbf{(B)}\\ 5 \\qquad \\textbf{(C)}\\ 6$", "\\textbf{(B)}"),
        ("Which is the largest domain?\n\n(a) all reals\n\n(b) $x>0$\n\n(c) $x<0$\n\n(d) $x=1$\n\n(e) none", "E"),
        ("Which conic is $(x-y)(x+y) = -2y^2 + 1$? Enter \"C\" for circle, \"P\" for parabola, \"E\" for ellipse.", "C"),
        ("On which quarter of the track, A, B, C or D, does he stop?", "C"),
        ("Given constants $C$ and $D$, simplify $C \\sin x + D - C \\sin x$.", "D"),
        ("What is the 100th letter in the pattern ABCABCABC...?", "A"),
        ("What is $2+3$?", "5"),
    ],
)
def test_letter_answers_with_choices_or_as_symbols_are_kept(problem, answer):
    assert filters.is_letter_without_choices(problem, answer) is None


def test_drop_all_multiple_choice_catches_every_letter_answer():
    assert filters.is_multiple_choice("How many? (A) 1 (B) 2", "B")
    assert filters.is_multiple_choice("How many? (A) 1 (B) 2", "2") is None


@pytest.mark.parametrize(
    ("problem", "answer"),
    [
        ("In the arithmetic sequence, $a_1=1$, $a_3=5$.\n(1) Find the general term $a_n$;\n(2) Find the sum $S_n$.", "n^2"),
        ("(I) Find the value of $a$. (II) What is the range of $f(x)$?", "[0, 4]"),
        ("Let $f(x)=x^2$. ① Compute $f(2)$. ② Compute $f(3)$.", "9"),
        ("Solve the system.", "(1) x=2 (2) y=3"),
    ],
)
def test_multi_part_questions_are_dropped(problem, answer):
    assert filters.is_multi_part(problem, answer)


@pytest.mark.parametrize(
    ("problem", "answer"),
    [
        ("Given $f(x)=x^2-2x$.\n(1) Prove that $f$ is increasing on $[1,\\infty)$;\n(2) Find the minimum of $f$ on $[2,4]$.", "0"),
        ("Compute $f(1)+f(2)$ where $f(x)=x^2$.", "5"),
        ("Bob has two options.\n\n1. A loan at 10% with half of what he owes paid after 5 years.\n\n2. A loan at 12% "
         "simple interest.\n\nFind the positive difference between the totals.", "382"),
        ("Find all solutions, separated by commas.", "-2, 1"),
        ("Find the point.", "(1, 2)"),
    ],
)
def test_single_answer_questions_are_not_multi_part(problem, answer):
    assert filters.is_multi_part(problem, answer) is None


@pytest.mark.parametrize(
    "answer",
    ["\\text{The function is odd}", "\\text{two lines}", "\\text{Softball, Kickball, Picnic}", "the function is increasing"],
)
def test_free_text_answers_are_dropped(answer):
    assert filters.is_free_text("", answer)


@pytest.mark.parametrize(
    "answer",
    [
        "12", "\\frac{3}{4}", "\\text{even}", "65 \\text{ children tickets }", "99\\pi \\text{ square inches}",
        "\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "-(ab + ac + bc)", "\\sin^2 t + \\cos x", "x \\in [1, \\infty)",
    ],
)
def test_value_answers_are_not_free_text(answer):
    assert filters.is_free_text("", answer) is None


def test_missing_fields():
    assert filters.missing_fields(None, "3")
    assert filters.missing_fields("   ", "3")
    assert filters.missing_fields("What is 1+2?", None)
    assert filters.missing_fields("What is 1+2?", "")
    assert filters.missing_fields("What is 1+2?", "notfound")
    assert filters.missing_fields("What is 1+2?", "3") is None


def test_boxed_helpers():
    text = "So $x=\\boxed{\\frac{1}{2}}$ or $x = \\boxed{ -1 }$; finally \\boxed{\\frac{1}{2}}."
    assert boxed_contents(text) == ["\\frac{1}{2}", " -1 ", "\\frac{1}{2}"]
    assert other_boxed(text, "\\frac{1}{2}") == ("-1",)
    assert other_boxed("only \\boxed{3}", "3") == ()


def test_clean_answer_strips_dollars_and_choice_labels():
    assert clean_answer(" $12$ ") == "12"
    assert clean_answer("\\textbf{(C)}\\ 12") == "12"
    assert clean_answer("\\text{(B)} \\frac{1}{2}") == "\\frac{1}{2}"
    assert clean_answer("\\textbf{(C)}") == "C" and clean_answer("(D)") == "D"
    assert clean_answer("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert clean_answer("\\boxed{1} + \\boxed{2}") == "\\boxed{1} + \\boxed{2}"  # not one box
    assert clean_answer("\\boxed{{1}") == "\\boxed{{1}"  # unbalanced: left as is


@pytest.mark.parametrize(
    ("answer", "kind"),
    [("12", "integer"), ("-3", "integer"), ("1,000", "integer"), ("0.25", "decimal"), ("\\frac{3}{4}", "fraction"),
     ("(1, 2)", "interval/tuple"), ("[0, 1)", "interval/tuple"), ("2, -3", "list"), ("\\text{odd}", "text"),
     ("\\sqrt{2}+1", "expression"), ("D", "choice letter")],
)
def test_answer_types(answer, kind):
    assert answer_type(answer) == kind
