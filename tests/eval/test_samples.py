import json

import pytest

from torl.errors import UserInputError
from torl.eval.samples import SampleWriter, read_samples


def test_write_then_read(tmp_path):
    path = tmp_path / "s" / "b.jsonl"
    with SampleWriter(path) as w:
        w.write([{"problem_id": "1", "sample_index": 0, "x": "é"}, {"problem_id": "1", "sample_index": 1}])
    with SampleWriter(path) as w:  # appends
        w.write([{"problem_id": "2", "sample_index": 0}])
    got = read_samples(path)
    assert got.keys() == {("1", 0), ("1", 1), ("2", 0)}
    assert got.records[0]["x"] == "é" and got.dropped_partial == 0 and got.duplicates == 0


def test_cut_last_line_is_dropped_counted_and_repaired(tmp_path):
    path = tmp_path / "b.jsonl"
    good = json.dumps({"problem_id": "1", "sample_index": 0}) + "\n"
    path.write_text(good + '{"problem_id": "2", "sample_in')
    got = read_samples(path)
    assert got.keys() == {("1", 0)} and got.dropped_partial == 1
    assert path.read_text() == good  # the fragment is gone, so the next append starts a clean line
    with SampleWriter(path) as w:
        w.write([{"problem_id": "2", "sample_index": 0}])
    assert read_samples(path).keys() == {("1", 0), ("2", 0)}


def test_unterminated_but_parseable_last_line_is_also_unfinished(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text('{"problem_id": "1", "sample_index": 0}\n{"problem_id": "2", "sample_index": 0}')
    got = read_samples(path, repair=False)
    assert got.keys() == {("1", 0)} and got.dropped_partial == 1
    assert path.read_text().endswith("}")  # repair=False leaves the file alone


def test_corrupt_middle_line_is_an_error_with_location(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text(
        '{"problem_id": "1", "sample_index": 0}\nnot json\n{"problem_id": "2", "sample_index": 0}\n'
    )
    with pytest.raises(UserInputError, match=r"b.jsonl:2: invalid JSON"):
        read_samples(path)
    path.write_text('{"problem_id": "1"}\n')
    with pytest.raises(UserInputError, match=r"b.jsonl:1: not a sample record"):
        read_samples(path)


def test_duplicates_keep_first_and_are_counted(tmp_path):
    path = tmp_path / "b.jsonl"
    lines = [
        {"problem_id": "1", "sample_index": 0, "v": "first"},
        {"problem_id": "1", "sample_index": 0, "v": "second"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    got = read_samples(path)
    assert [r["v"] for r in got.records] == ["first"] and got.duplicates == 1


def test_missing_file_is_empty(tmp_path):
    got = read_samples(tmp_path / "none.jsonl")
    assert got.records == [] and got.dropped_partial == 0
