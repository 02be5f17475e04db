import hashlib
import json

import pytest

from torl.data.eval_sets import (
    BENCHMARKS,
    DATA_DIR,
    list_benchmarks,
    load_benchmark,
    load_benchmark_file,
    olympiad_answer,
    resolve_benchmarks,
)
from torl.errors import UserInputError

EXPECTED = {
    "aime24": 30,
    "aime25": 30,
    "amc23": 40,
    "math500": 500,
    "olympiadbench": 675,
    "minerva_math": 272,
    "gsm8k": 1319,
}


def test_list_benchmarks_counts():
    assert list_benchmarks() == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_benchmark_loads_with_count_and_answers(name):
    problems = load_benchmark(name)
    assert len(problems) == EXPECTED[name]
    assert len({p.id for p in problems}) == len(problems), "ids must be unique"
    for p in problems:
        assert p.source == name
        assert p.problem.strip(), p.id
        assert p.answer.strip(), p.id
        assert "$" not in p.answer or name == "math500", (p.id, p.answer)


def test_shipped_files_match_manifest():
    manifest = json.loads((DATA_DIR / "MANIFEST.json").read_text())
    assert set(manifest) == {spec.file for spec in BENCHMARKS.values()}
    for rel, entry in manifest.items():
        data = (DATA_DIR / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], rel
        assert data.count(b"\n") == entry["lines"], rel
    assert (DATA_DIR / "LICENSES.md").read_text().count("|") > 20


def by_id(name):
    return {p.id: p for p in load_benchmark(name)}


def test_answer_normalisation_per_benchmark():
    aime24 = by_id("aime24")
    assert aime24["67"].answer == "25"  # raw "025": AIME answers are integers
    assert aime24["67"].meta["raw_answer"] == "025"
    assert by_id("aime25")["0"].answer == "70"  # raw int 70
    assert by_id("amc23")["0"].answer == "27"  # raw float 27.0
    assert by_id("amc23")["17"].answer == "-1"
    gsm = by_id("gsm8k")
    assert gsm["0"].answer == "18"
    assert "1450000" in {p.answer for p in gsm.values()}  # raw "1,450,000"
    assert not any("," in p.answer for p in gsm.values())
    assert by_id("minerva_math")["0"].answer == "1.6"  # \boxed{1.6} in the solution
    assert by_id("minerva_math")["1"].answer == "4.5e33"
    m5 = by_id("math500")["test/precalculus/807.json"]
    assert m5.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert m5.meta == {"subject": "Precalculus", "level": 2}


def test_olympiadbench_multi_answer_and_meta():
    ob = load_benchmark("olympiadbench")
    multi = [p for p in ob if p.meta["is_multiple_answer"]]
    assert len(multi) == 94
    answers = {p.answer for p in multi}
    assert "69,84" in answers  # raw "$69$,$84$"
    assert "(1,8,19), (2,7,13), (4,5,7)" in answers
    percent = next(p for p in ob if p.meta["unit"] == "%")
    assert percent.answer == "4.2" and percent.meta["tolerance"] == "1e-1"
    assert olympiad_answer(["$1$", "$\\frac{1}{2}$"]) == "1, \\frac{1}{2}"
    assert olympiad_answer("$x$") == "x"


def test_unknown_benchmark_lists_valid_names():
    with pytest.raises(UserInputError) as e:
        load_benchmark("aime23")
    assert "aime23" in str(e.value) and "aime24" in str(e.value) and "gsm8k" in str(e.value)
    with pytest.raises(UserInputError) as e:
        resolve_benchmarks(["math500", "mathh500"])
    assert "'mathh500'" in str(e.value) and "olympiadbench" in str(e.value)


def test_user_benchmark_jsonl_with_column_mapping(tmp_path):
    f = tmp_path / "mine.jsonl"
    rows = [
        {"uid": "a", "question": "1+1?", "gold": 2},
        {"uid": "b", "question": "half?", "gold": 0.5},
        {"uid": "c", "question": "roots?", "gold": ["1", "2"]},
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ps = load_benchmark_file(f, {"id": "uid", "problem": "question", "answer": "gold"})
    assert [(p.id, p.problem, p.answer, p.source) for p in ps] == [
        ("a", "1+1?", "2", "mine"),
        ("b", "half?", "0.5", "mine"),
        ("c", "roots?", "1, 2", "mine"),
    ]
    # resolve_benchmarks mixes files and shipped names; a file's name is its stem
    both = resolve_benchmarks([str(f), "aime24"], {"id": "uid", "problem": "question", "answer": "gold"})
    assert list(both) == ["mine", "aime24"] and len(both["mine"]) == 3


def test_user_benchmark_parquet_default_columns_row_ids(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "pq.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"problem": "p1", "answer": "x"}, {"problem": "p2", "answer": "y"}]), f
    )
    ps = load_benchmark_file(f)
    assert [(p.id, p.answer) for p in ps] == [("1", "x"), ("2", "y")]


def test_user_benchmark_errors_name_file_line_and_field(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "q", "gold": "1"}\n{"question": "q2"}\n')
    with pytest.raises(UserInputError, match=r"bad.jsonl:2: missing column 'gold' \(the answer\)"):
        load_benchmark_file(f, {"problem": "question", "answer": "gold"})
    f.write_text('{"problem": "q", "answer": "1"}\n{"problem": "q", oops\n')
    with pytest.raises(UserInputError, match=r"bad.jsonl:2: invalid JSON"):
        load_benchmark_file(f)
    f.write_text('{"id": 1, "problem": "q", "answer": "1"}\n{"id": 1, "problem": "q", "answer": "2"}\n')
    with pytest.raises(UserInputError, match=r"bad.jsonl:2: duplicate id '1'"):
        load_benchmark_file(f)
    with pytest.raises(UserInputError, match="unknown field"):
        load_benchmark_file(f, {"question": "problem"})
    with pytest.raises(UserInputError, match="no such file"):
        load_benchmark_file(tmp_path / "missing.jsonl")
    with pytest.raises(UserInputError, match="given twice"):
        resolve_benchmarks(["aime24", "aime24"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_gold_is_gradeable_by_torl_reward(name):
    """A response that boxes the gold is graded correct; a partial multi-answer is not."""
    from torl.reward import extract_answer, grade_many

    problems = load_benchmark(name)
    preds = [extract_answer(f"Some reasoning.\n\\boxed{{{p.answer}}}") for p in problems]
    assert preds == [p.answer for p in problems]
    assert all(grade_many(preds, [p.answer for p in problems]))
    if name == "olympiadbench":  # multi-answer golds are unordered lists: order is free, every item is needed
        ob = by_id(name)
        assert ob["1664"].answer == "69,84" and ob["1618"].answer == "(1,8,19), (2,7,13), (4,5,7)"
        preds = ["84, 69", "69", "(2,7,13),(4,5,7),(1,8,19)", "(2,7,13), (4,5,7)"]
        golds = [ob["1664"].answer, ob["1664"].answer, ob["1618"].answer, ob["1618"].answer]
        assert grade_many(preds, golds) == [True, False, True, False]
