"""Every benchmark gold verifies against itself and against its boxed form inside a response."""

import pytest

from torl.reward import extract_answer, normalize_answer

from .helpers import BENCHMARK_NAMES, raw_golds

# Golds that no grader can turn into a comparable value: free text, code, undefined symbols. They still
# match themselves as strings (checked below), but `can_parse` says False.
MALFORMED = {
    ("olympiadbench", "$f(x)=a x+b$, where $b$ is an arbitrary integer, and $a$ is an arbitrary positive integer "
     "with $\\mho(a)=0$"),
    ("olympiadbench", "$t(0,4]$"),
    ("minerva_math", "np.arcsin(10/13)"),
    ("minerva_math", "\\frac{dM}{dt}=\\frac{10^{5} L_{\\odot}}{0.007 c^{2} M_{\\odot}^{6}} M^{6}"),
    ("minerva_math", "MR=SRMC"),
    ("minerva_math", "SRAC=LRAC"),
    ("minerva_math", "SRMC=LRMC"),
    ("minerva_math", "\\hbar \\omega(v+1 / 2)-\\frac{E_{0}^{2} e^{2}}{2 m \\omega^{2}}"),
    ("minerva_math", "\\frac{1}{3} E_{1}+\\frac{2}{3} E_{2}"),
    ("minerva_math", "E_{1},E_{2}"),
}  # fmt: skip

RESPONSE = (
    "Let me compute.\n```python\nprint(1)\n```\n```output\n1\n```\nSo the final answer is $\\boxed{{{}}}$."
)


@pytest.mark.parametrize("name", BENCHMARK_NAMES)
def test_golds_match_themselves_and_their_boxed_form(grader, name):
    golds = raw_golds(name)
    assert golds
    boxed = [extract_answer(RESPONSE.format(g)) for g in golds]
    assert boxed == [g.strip() for g in golds]
    verdicts = grader.verdicts(golds + boxed, golds + golds)
    failed = [(g, v) for g, v in zip(golds + boxed, verdicts, strict=True) if not v.equal]
    assert not failed


@pytest.mark.parametrize("name", BENCHMARK_NAMES)
def test_golds_can_be_parsed_except_the_listed_malformed_ones(grader, name):
    golds = raw_golds(name)
    parsed = grader.can_parse_many(golds)
    unparsed = {(name, g) for g, ok in zip(golds, parsed, strict=True) if not ok}
    listed = {m for m in MALFORMED if m[0] == name}
    assert unparsed == listed


@pytest.mark.parametrize("name", ["aime24", "aime25", "amc23", "math500", "olympiadbench", "gsm8k"])
def test_different_golds_are_not_equal(grader, name):
    """Each gold against the next one: any match must be the same answer up to formatting (string path)."""
    golds = raw_golds(name)
    nexts = golds[1:] + golds[:1]
    verdicts = grader.verdicts(golds, nexts)
    loose = [
        (a, b, v.method)
        for a, b, v in zip(golds, nexts, verdicts, strict=True)
        if v.equal and normalize_answer(a).key != normalize_answer(b).key
    ]
    assert not loose


def test_golds_from_the_packaged_loader(grader):
    benchmarks = pytest.importorskip("torl.data.eval_sets")
    for name in BENCHMARK_NAMES:
        raw = raw_golds(name)
        problems = benchmarks.load_benchmark(name)
        golds = [p.answer for p in problems]
        # the loader's form of each gold ("025" -> "25", "27.0" -> "27", "$69$,$84$" -> "69, 84") is equal to the raw one
        verdicts = grader.verdicts(golds, raw)
        assert [(g, r) for g, r, v in zip(golds, raw, verdicts, strict=True) if not v.equal] == []
