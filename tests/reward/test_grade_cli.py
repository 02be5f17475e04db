"""`torl grade` on one pair and on a JSONL file."""

import json

import pytest

from torl.cli import main


def test_grade_one_pair(capsys):
    assert main(["grade", "--pred", "\\dfrac{1}{2}", "--gold", "0.5"]) == 0
    assert capsys.readouterr().out.strip() == "correct"
    assert main(["grade", "--pred", "The answer is \\boxed{3}.", "--gold", "4", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record == {"pred": "3", "gold": "4", "correct": False, "method": "exact"}


def test_grade_one_pair_needs_gold(capsys):
    assert main(["grade", "--pred", "1"]) == 2
    assert "--gold" in capsys.readouterr().err


def _write(tmp_path, lines):
    path = tmp_path / "rollouts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = [
    json.dumps({"response": "so \\boxed{\\frac{3}{4}}", "gold": "0.75"}),
    json.dumps({"text": "```output\n\\boxed{2}\n```\nno answer", "answer": "2"}),
    json.dumps({"response": "\\boxed{x^2+2x+1}", "gold": "(x+1)^2"}),
    json.dumps({"pred": "070", "answer": 70}),
]


def test_grade_file(tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    assert main(["grade", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy 0.7500 (3/4)" in out and "no answer: 1" in out


def test_grade_file_json(tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    assert main(["grade", "--file", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    items = [json.loads(line) for line in captured.out.splitlines()]
    assert [i["correct"] for i in items] == [True, False, True, True]
    assert [i["line"] for i in items] == [1, 2, 3, 4]
    assert items[1]["pred"] is None
    assert json.loads(captured.err.strip().splitlines()[-1])["accuracy"] == 0.75


@pytest.mark.parametrize(
    ("bad", "message"),
    [("not json", "rollouts.jsonl:3"), ("[1, 2]", "JSON object"), ('{"response": "x"}', '"gold"'),
     ('{"gold": "1"}', '"response"')],
)  # fmt: skip
def test_bad_line_stops_with_file_and_line(tmp_path, capsys, bad, message):
    path = _write(tmp_path, GOOD[:2] + [bad] + GOOD[2:])
    assert main(["grade", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "rollouts.jsonl:3" in err


def test_skip_invalid_counts(tmp_path, capsys):
    path = _write(tmp_path, GOOD[:2] + ["not json", '{"gold": 1}'] + GOOD[2:])
    assert main(["grade", "--file", str(path), "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert "accuracy 0.7500 (3/4)" in out and "invalid lines skipped: 2" in out


def test_missing_file(capsys):
    assert main(["grade", "--file", "/nonexistent/x.jsonl"]) == 2
    assert "/nonexistent/x.jsonl" in capsys.readouterr().err


def test_reference_mode(tmp_path, capsys):
    assert main(["grade", "--pred", "1/2^{99}", "--gold", "1/2^{98}", "--mode", "reference"]) == 0
    assert capsys.readouterr().out.strip() == "correct"  # the reference's false positive, reproduced


def test_reference_mode_extracts_the_reference_way(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    rows = [
        {"response": "```output\n\\boxed{7}\n```\nnot sure", "gold": "7"},  # tool output counts
        {"response": "\\boxed{5} then \\boxed{6", "gold": "5"},  # unclosed last box skipped
        {"response": "\\fbox{5}", "gold": "5"},  # not matched
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def correct() -> list[bool]:
        return [json.loads(line)["correct"] for line in capsys.readouterr().out.splitlines()]

    assert main(["grade", "--file", str(path), "--mode", "reference", "--json"]) == 0
    assert correct() == [True, True, False]
    assert main(["grade", "--file", str(path), "--json"]) == 0  # torl mode: the opposite on all three
    assert correct() == [False, False, True]


def test_rel_tol_option(capsys):
    assert main(["grade", "--pred", "3.14", "--gold", "\\pi"]) == 0
    assert capsys.readouterr().out.strip() == "wrong"
    assert main(["grade", "--pred", "3.14", "--gold", "\\pi", "--rel-tol", "1e-3"]) == 0
    assert capsys.readouterr().out.strip() == "correct"
    assert main(["grade", "--pred", "3.14", "--gold", "\\pi", "--rel-tol", "-1"]) == 2
    assert "--rel-tol" in capsys.readouterr().err
