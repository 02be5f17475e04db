"""The reference's parquet files (TORL-SPEC §2) in, and a file for the reference trainer out.

In: a file built here in the published schema (chat-list prompt with a bare user problem, `reward_model.stype`,
`extra_info.id` or `index` or nothing) read by `torl data build --source verl=`, `data.train_files`,
`validation.files` and `torl eval --benchmarks` (one benchmark per data_source). Out: `--for reference` writes the
bare problem as the user message, so the reference's template (§3) gives exactly torl's prompt.
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torl.cli import main
from torl.data.readers import read_problems
from torl.data.verl import REFERENCE_SYSTEM_MESSAGE, derived_id, read_verl_parquet
from torl.errors import UserInputError

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
# the reference's template (TORL-SPEC §3, exact string); its trainer fills [PROMPT] with the user message
REFERENCE_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.\nUser: Please "
    "integrate natural language reasoning with programs to solve the problem above, and put your final answer within "
    "\\boxed{}.\n[PROMPT]\nAssistant:\n"
)
ITEMS = [  # data_source, problem, gold
    ("aime24", "Find the number of ordered pairs $(m,n)$ of positive integers with $m+n=10$.", "9"),
    ("aime24", "What is the remainder when $2^{10}$ is divided by $7$?", "2"),
    ("math500", "Simplify $\\frac{6}{8}$.", "\\frac{3}{4}"),
    ("math500", "Compute $\\sqrt{49}$.", "7"),
    ("math500", "What is $0.5 + 0.25$?", "0.75"),
]


def reference_rows(extra):
    """Rows in the published schema; `extra(i)` gives each row's extra_info."""
    return [{"data_source": src, "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}],
             "ability": "other", "reward_model": {"ground_truth": gold, "stype": "rule"}, "extra_info": extra(i)}
            for i, (src, p, gold) in enumerate(ITEMS)]


@pytest.fixture
def reference_file(tmp_path):
    """Like the reference's test.parquet: ids in extra_info, the AIME rows repeated (the reference repeats them)."""
    rows = reference_rows(lambda i: {"id": f"r{i}", "split": "test"})
    rows += rows[:2]
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_reads_the_published_schema(reference_file):
    problems = read_verl_parquet(reference_file)
    assert [p.id for p in problems] == ["r0", "r1", "r2", "r3", "r4", "r0#2", "r1#2"]
    assert [(p.source, p.problem, p.answer) for p in problems[:5]] == ITEMS
    assert problems[0].meta == {"split": "test"}
    assert read_problems(reference_file) == problems  # every torl reader of problem files takes it


def test_index_or_no_id_and_numeric_golds(tmp_path):
    rows = reference_rows(lambda i: {"index": i, "split": "train"})
    for i, r in enumerate(rows):
        r["reward_model"] = {"ground_truth": float(i) + 0.5 * (i == 4), "style": "rule"}  # veRL's spelling, numbers
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "idx.parquet")
    problems = read_verl_parquet(tmp_path / "idx.parquet")
    assert [p.id for p in problems] == ["0", "1", "2", "3", "4"]
    assert [p.answer for p in problems] == ["0", "1", "2", "3", "4.5"]
    bare = [{k: v for k, v in r.items() if k != "extra_info"} for r in reference_rows(lambda i: {})]
    pq.write_table(pa.Table.from_pylist(bare + bare[:1]), tmp_path / "noid.parquet")
    ids = [p.id for p in read_verl_parquet(tmp_path / "noid.parquet")]
    assert ids[0] == derived_id("aime24", ITEMS[0][1]) == "aime24-" + ids[0].split("-")[1]
    assert ids == [p.id for p in read_verl_parquet(tmp_path / "noid.parquet")]  # stable
    assert len(set(ids)) == 6 and ids[5] == ids[0] + "#2"


def test_bad_rows_name_file_row_and_field(tmp_path):
    rows = reference_rows(lambda i: {"id": str(i)})
    rows[2]["reward_model"] = {"ground_truth": None, "stype": "rule"}
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bad.parquet")
    with pytest.raises(UserInputError, match=r"bad\.parquet:row 2: field 'reward_model.ground_truth' is missing"):
        read_verl_parquet(tmp_path / "bad.parquet")
    rows = reference_rows(lambda i: {"id": str(i)})
    rows[0]["prompt"] = [{"role": "system", "content": SYSTEM}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "nouser.parquet")
    with pytest.raises(UserInputError, match=r"nouser\.parquet:row 0: field 'prompt' has no user message"):
        read_problems(tmp_path / "nouser.parquet")


def test_data_build_reads_a_verl_source(reference_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["data", "build", "--source", f"verl={reference_file}", "--out", str(out), "--no-decontaminate",
                 "--workers", "1"]) == 0
    assert "kept 5 of 7 rows" in capsys.readouterr().out  # the repeated rows are exact duplicates
    rows = [json.loads(line) for line in (out / "problems.jsonl").read_text().splitlines()]
    assert [(r["source"], r["problem"], r["answer"]) for r in rows] == [(f"verl/{s}", p, g) for s, p, g in ITEMS]
    assert rows[0]["meta"]["source_id"] == "r0"


def test_export_for_the_reference_trainer_gives_the_spec_prompt(reference_file, tmp_path, capsys):
    from torl.rollout import build_prompt

    out = tmp_path / "ref"
    assert main(["data", "build", "--source", f"verl={reference_file}", "--out", str(out), "--no-decontaminate",
                 "--workers", "1", "--for", "reference"]) == 0
    table = pq.read_table(out / "train.parquet")
    assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    for row, (_, problem, gold) in zip(table.to_pylist(), ITEMS, strict=True):
        system, user = row["prompt"]
        assert system == {"role": "system", "content": REFERENCE_SYSTEM_MESSAGE} and user["content"] == problem
        # the reference trainer puts the user content into its template: exactly torl's prompt, instruction once
        rendered = REFERENCE_TEMPLATE.replace("[PROMPT]", user["content"])
        assert rendered == build_prompt(problem, "torl") and rendered.count("Please integrate") == 1
        assert row["reward_model"]["ground_truth"] == gold
    assert json.loads((out / "report.json").read_text())["verl_flavour"] == "reference"
    # torl reads its own export back to the same problems
    back = read_verl_parquet(out / "train.parquet")
    assert [(p.problem, p.answer) for p in back] == [(p, g) for _, p, g in ITEMS]
    # the default export keeps torl's layout: the instruction line is in the user message
    assert main(["data", "build", "--source", f"verl={reference_file}", "--out", str(tmp_path / "torl"),
                 "--no-decontaminate", "--workers", "1"]) == 0
    user = pq.read_table(tmp_path / "torl" / "train.parquet").to_pylist()[0]["prompt"][1]["content"]
    assert user.startswith("Please integrate natural language reasoning") and user.endswith(ITEMS[0][1])


def test_train_files_and_validation_files(reference_file):
    from torl.train.data import load_validation_problems, read_train_problems

    assert [p.id for p in read_train_problems([str(reference_file)])][:2] == ["r0", "r1"]
    sets = load_validation_problems([], [str(reference_file)], None)
    assert {k: len(v) for k, v in sets.items()} == {"aime24": 4, "math500": 3}  # one set per data_source


def test_eval_benchmarks_one_per_data_source(reference_file):
    from torl.data.eval_sets import resolve_benchmarks

    found = resolve_benchmarks([str(reference_file)])
    assert {k: [p.id for p in v] for k, v in found.items()} == {"aime24": ["r0", "r1", "r0#2", "r1#2"],
                                                               "math500": ["r2", "r3", "r4"]}
    only = resolve_benchmarks([f"{reference_file}:math500"])
    assert list(only) == ["math500"] and [p.answer for p in only["math500"]] == ["\\frac{3}{4}", "7", "0.75"]
    with pytest.raises(UserInputError, match="no data_source 'amc23'; the file has aime24, math500"):
        resolve_benchmarks([f"{reference_file}:amc23"])
    with pytest.raises(UserInputError, match="'aime24' given twice"):
        resolve_benchmarks(["aime24", str(reference_file)])


def test_data_build_counts_prompt_tokens_with_qwen25():
    from torl.data.build import prompt_lengths
    from torl.data.verl import base_prompt
    from torl.models import qwen25_tokenizer

    qwen = qwen25_tokenizer()
    problems = [p for _, p, _ in ITEMS]
    assert prompt_lengths(problems, "qwen2.5") == [len(qwen.encode(base_prompt(p), add_special_tokens=False))
                                                   for p in problems]
    assert prompt_lengths(problems, None) == [len(base_prompt(p)) for p in problems]
