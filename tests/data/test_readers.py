"""Readers: every format and container, gold answers, and bad input (stop with file:line, or skip and count)."""

import json

import pytest

from torl.data.filters import letter_answer
from torl.data.readers import SourceSpec, data_files, parse_columns_arg, parse_source_arg, read_source
from torl.errors import UserInputError


def test_numina_jsonl_gold_from_last_box_and_subsource(numina_fixture):
    items, invalid = read_source(parse_source_arg(f"numina={numina_fixture}"))
    assert invalid == [] and len(items) == 22
    first = items[0]
    assert (first.id, first.answer, first.answer_from, first.source) == ("numina-0", "7", "boxed", "numina/cn_k12")
    assert first.where == f"{numina_fixture}:1"
    assert items[5].answer == "5"  # "\textbf{(B)}\ 5" -> the value
    assert items[1].answer is None and items[1].answer_from == "none"  # a proof without a box
    assert items[19].answer == "-2" and items[19].other_boxed == ("2",)


def test_numina_messages_fill_a_missing_problem(numina_fixture):
    items, _ = read_source(parse_source_arg(f"numina={numina_fixture}"))
    row = items[17]
    assert row.problem == "Tom has 5 apples and buys 7 more. How many apples does he have now?"
    assert row.answer == "12" and row.source == "numina/gsm8k"


def test_numina_parquet_and_datasets_directory_read_the_same_items(numina_fixture, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in numina_fixture.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train-00000-of-00001.parquet")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:3]), "test": datasets.Dataset.from_list(rows[3:5])}
                         ).save_to_disk(str(tmp_path / "saved_dict"))
    ref = [(i.problem, i.answer) for i in read_source(parse_source_arg(f"numina={numina_fixture}"))[0]]
    for path in (tmp_path / "train-00000-of-00001.parquet", tmp_path / "saved"):
        items, _ = read_source(parse_source_arg(f"numina={path}"))
        assert [(i.problem, i.answer) for i in items] == ref
    test_split, _ = read_source(parse_source_arg(f"numina={tmp_path / 'saved_dict'}", split="test"))
    assert [i.problem for i in test_split] == [r[0] for r in ref[3:5]]
    with pytest.raises(UserInputError, match="no split 'validation'.*train, test"):
        read_source(parse_source_arg(f"numina={tmp_path / 'saved_dict'}", split="validation"))


def test_directory_reads_only_the_requested_split(tmp_path, numina_fixture):
    (tmp_path / "data").mkdir()
    lines = numina_fixture.read_text().splitlines()
    (tmp_path / "data" / "train-0.jsonl").write_text("\n".join(lines[:4]) + "\n")
    (tmp_path / "data" / "test-0.jsonl").write_text("\n".join(lines[4:6]) + "\n")
    (tmp_path / "README.md").write_text("not data")
    assert [p.name for p in data_files(tmp_path, "train")] == ["train-0.jsonl"]
    items, _ = read_source(parse_source_arg(f"numina={tmp_path}"))
    assert len(items) == 4


def test_deepscaler_json_arrays(shared_data):
    items, invalid = read_source(parse_source_arg(f"deepscaler={shared_data / 'train' / 'deepscaler'}"))
    assert invalid == [] and len(items) == 975 + 7474  # train_aime.json then train_math.json (sorted)
    aime = items[0]
    assert aime.answer == "60" and aime.answer_from == "answer" and aime.meta["year"] == 1983
    assert aime.meta["difficulty"] == 4.0 and aime.where.endswith("train_aime.json:item 1")
    math0 = items[975]
    assert math0.answer == "0" and math0.meta["type"] == "Algebra" and math0.id == "deepscaler-975"


def test_math_test_split_gold_matches_math500(shared_data):
    """The last-\\boxed{} rule on MATH solutions gives MATH500's published answers."""
    from torl.data.eval_sets import load_benchmark

    items, _ = read_source(parse_source_arg(f"math={shared_data / 'raw' / 'math_test5000.jsonl'}"))
    assert len(items) == 5000 and all(i.answer_from == "boxed" for i in items)
    assert items[0].meta["level"] == 3 and items[0].meta["type"] == "Algebra"
    by_problem = {i.problem.strip(): i.answer for i in items}
    differ = [(p.answer, by_problem[p.problem.strip()]) for p in load_benchmark("math500")
              if by_problem[p.problem.strip()] != p.answer]
    # the only differences: a lone choice label becomes its letter ("\\text{(C)}" -> "C")
    assert len(differ) <= 5 and all(letter_answer(gold) == ours for gold, ours in differ), differ


def test_generic_source_with_column_mapping(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps({"qid": 7, "question": "What is 6*7?", "final": 42, "note": "x"}) + "\n")
    label, columns = parse_columns_arg("gsm:id=qid,problem=question,answer=final")
    items, _ = read_source(parse_source_arg(f"generic:{label}={path}", columns))
    item = items[0]
    assert (item.problem, item.answer, item.source, item.meta["source_id"]) == ("What is 6*7?", "42", "gsm", "7")
    assert item.meta["note"] == "x"


def test_malformed_line_stops_with_file_and_line(tmp_path, numina_fixture):
    bad = numina_fixture.parent / "numina_bad.jsonl"
    with pytest.raises(UserInputError, match=r"numina_bad\.jsonl:2: invalid JSON"):
        read_source(parse_source_arg(f"numina={bad}"))


def test_skip_invalid_counts_every_bad_row(numina_fixture):
    bad = numina_fixture.parent / "numina_bad.jsonl"
    items, invalid = read_source(parse_source_arg(f"numina={bad}"), skip_invalid=True)
    assert [i.id for i in items] == ["numina-0", "numina-3"]
    assert [(r.id, r.where.rsplit(":", 1)[1]) for r in invalid] == [("numina-1", "2"), ("numina-2", "3")]
    assert "must be text, got int" in invalid[1].reason


def test_a_file_without_the_problem_column_is_an_error(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"question": "What is 1+1?", "answer": "2"}) + "\n")
    with pytest.raises(UserInputError, match="no row has the problem column 'problem'.*--columns x:problem=COLUMN"):
        read_source(SourceSpec("generic", path, "x"))


def test_a_broken_json_array_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n{"problem": "p", "answer": "1"},\n{"problem": "q" "answer": "2"}\n]\n')
    with pytest.raises(UserInputError, match=r"a\.json:3: invalid JSON"):
        read_source(SourceSpec("deepscaler", path, "d"))


@pytest.mark.parametrize(
    ("arg", "message"),
    [("numina", "expected FORMAT"), ("nope=/tmp", "unknown format 'nope'"), ("math:bad label=/tmp", "label"),
     ("math=/does/not/exist", "no such file")],
)
def test_source_argument_errors(arg, message):
    with pytest.raises(UserInputError, match=message):
        parse_source_arg(arg)


def test_columns_argument_errors():
    with pytest.raises(UserInputError, match="expected LABEL:FIELD=COLUMN"):
        parse_columns_arg("gsm")
    with pytest.raises(UserInputError, match="unknown field"):
        parse_source_arg("generic:g=/tmp", {"question": "q"})


def test_hendrycks_math_directory_of_problem_files(tmp_path):
    """The original MATH release: MATH/{train,test}/<subject>/<n>.json, one problem per file."""
    for split, n in (("train", 3), ("test", 2)):
        folder = tmp_path / "MATH" / split / "algebra"
        folder.mkdir(parents=True)
        for k in range(n):
            row = {"problem": f"{split} problem {k}: what is {k}+1?", "level": f"Level {k + 1}", "type": "Algebra",
                   "solution": f"It is $\\boxed{{{k + 1}}}$."}
            (folder / f"{k}.json").write_text(json.dumps(row))
    items, _ = read_source(parse_source_arg(f"math={tmp_path / 'MATH'}"))
    assert [(i.answer, i.meta["level"]) for i in items] == [("1", 1), ("2", 2), ("3", 3)]
    assert all(i.problem.startswith("train") and i.where.endswith(".json") for i in items)
    test_items, _ = read_source(parse_source_arg(f"math={tmp_path / 'MATH'}", split="test"))
    assert len(test_items) == 2
