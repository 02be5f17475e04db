"""The whole build: every filter counted per source, outputs in both schemas, the report, bad input."""

import json

import pytest

from torl.data.build import BuildConfig, build_dataset, write_outputs
from torl.data.filters import FILTER_ORDER
from torl.data.readers import parse_source_arg, read_problems
from torl.data.verl import base_prompt, read_verl_parquet
from torl.errors import UserInputError

EXPECTED_DROPS = {
    "numina-1": "missing_fields",  # a proof with no box
    "numina-18": "missing_fields",  # empty problem
    "numina-2": "proof",
    "numina-4": "multiple_choice",  # letter answer, no choices listed
    "numina-7": "multi_part",  # (1) find ... (2) find ...
    "numina-19": "multi_part",  # boxes 2 and -2
    "numina-9": "free_text_answer",
    "numina-10": "unparseable_answer",
    "numina-11": "prompt_too_long",
    "numina-12": "contaminated",  # a MATH500 problem
    "numina-13": "exact_duplicate",  # of numina-0
    "numina-15": "near_duplicate",  # of numina-14
}
EXPECTED_KEPT = ["numina-0", "numina-3", "numina-5", "numina-6", "numina-8", "numina-14", "numina-16", "numina-17",
                 "numina-20", "numina-21"]


@pytest.fixture(scope="module")
def numina_build(numina_fixture):
    return build_dataset([parse_source_arg(f"numina={numina_fixture}")], BuildConfig(workers=1))


def test_each_item_is_dropped_by_the_right_filter(numina_build):
    from torl.reward import can_parse

    assert not can_parse("\\frac{}{}")  # the premise of numina-10 (a broken scrape)
    assert {d.id: d.filter for d in numina_build.dropped} == EXPECTED_DROPS
    assert [p.id for p in numina_build.problems] == EXPECTED_KEPT
    kept = {p.id: p for p in numina_build.problems}
    assert kept["numina-5"].answer == "5" and kept["numina-6"].answer == "D" and kept["numina-20"].answer == "0.75"
    assert kept["numina-17"].source == "numina/gsm8k" and kept["numina-0"].meta["origin"].endswith(":1")


def test_report_counts_every_filter_per_source(numina_build):
    r = numina_build.report
    assert (r["n_input"], r["n_kept"], r["n_dropped"]) == (22, 10, 12)
    assert r["filter_order"] == list(FILTER_ORDER)
    assert r["filters"]["missing_fields"] == {"total": 2, "numina/cn_k12": 1, "numina/olympiads": 1}
    assert r["filters"]["proof"] == {"total": 1, "numina/olympiads": 1}
    assert r["filters"]["invalid_row"] == {"total": 0}
    assert r["sources"]["numina/orca_math"] == {"n_input": 5, "n_kept": 3}  # 10, 15 dropped
    assert sum(s["n_input"] for s in r["sources"].values()) == 22
    assert r["examples"]["proof"][0]["id"] == "numina-2" and "prove" in r["examples"]["proof"][0]["reason"]
    assert r["answer_types"]["all"] == {"integer": 8, "choice letter": 1, "decimal": 1}
    assert r["difficulty"]["numina/cn_k12"] == {"unknown": 3}
    hit = r["decontamination"]["hits"]
    assert [(h["benchmark"], h["id"], h["train"][0]["id"]) for h in hit] == [
        ("math500", "test/precalculus/807.json", "numina-12")]
    assert r["decontamination"]["benchmarks"]["math500"] == 500 and r["decontamination"]["items_hit"] == {"math500": 1}
    assert r["prompt_limit"] == {"unit": "characters", "limit": 1560, "tokenizer": None}


def test_outputs_in_both_schemas(numina_build, tmp_path):
    paths = write_outputs(numina_build, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"train.parquet", "problems.jsonl", "dropped.jsonl", "report.json",
                                                    "report.md"}
    torl_rows = read_problems(paths["problems"])
    verl_rows = read_verl_parquet(paths["verl"])
    assert [(p.id, p.problem, p.answer, p.source) for p in torl_rows] == [
        (p.id, p.problem, p.answer, p.source) for p in verl_rows] == [
        (p.id, p.problem, p.answer, p.source) for p in numina_build.problems]
    dropped = [json.loads(line) for line in paths["dropped"].read_text().splitlines()]
    assert {d["id"]: d["filter"] for d in dropped} == EXPECTED_DROPS
    assert json.loads(paths["report_json"].read_text())["n_kept"] == 10
    md = paths["report_md"].read_text()
    assert "| filter | numina/amc_aime |" in md and "| **kept** |" in md and "### contaminated" in md


def test_tokenizer_limit(numina_fixture, word_tokenizer):
    from transformers import AutoTokenizer

    from torl.data.readers import read_source

    tok = AutoTokenizer.from_pretrained(word_tokenizer)
    spec = parse_source_arg(f"numina={numina_fixture}")
    items, _ = read_source(spec)
    lengths = {i.id: len(tok(base_prompt(i.problem), add_special_tokens=False)["input_ids"]) for i in items if i.problem}
    limit = sorted(lengths.values())[len(lengths) // 2]
    r = build_dataset([spec], BuildConfig(decontaminate=False, tokenizer=str(word_tokenizer), max_prompt_tokens=limit))
    earlier = FILTER_ORDER[: FILTER_ORDER.index("prompt_too_long")]
    reached = set(lengths) - {d.id for d in r.dropped if d.filter in earlier}
    too_long = {d.id for d in r.dropped if d.filter == "prompt_too_long"}
    assert too_long == {i for i in reached if lengths[i] > limit}
    assert 2 <= len(too_long) < len(reached)
    assert all(f"tokens (limit {limit})" in d.reason for d in r.dropped if d.filter == "prompt_too_long")
    assert r.report["prompt_limit"] == {"unit": "tokens", "limit": limit, "tokenizer": str(word_tokenizer)}
    with pytest.raises(UserInputError, match="--tokenizer .*cannot load"):
        build_dataset([spec], BuildConfig(tokenizer=str(numina_fixture.parent)))


def test_skip_invalid_rows_are_counted_and_reported(numina_fixture):
    spec = parse_source_arg(f"numina={numina_fixture.parent / 'numina_bad.jsonl'}")
    with pytest.raises(UserInputError, match=r"numina_bad\.jsonl:2"):
        build_dataset([spec], BuildConfig(decontaminate=False))
    r = build_dataset([spec], BuildConfig(decontaminate=False, skip_invalid=True)).report
    assert r["n_input"] == 4 and r["n_kept"] == 2
    assert r["filters"]["invalid_row"] == {"total": 2, "numina": 2}
    assert [e["where"].rsplit(":", 1)[1] for e in r["examples"]["invalid_row"]] == ["2", "3"]
    assert r["inputs"][0]["invalid"] == 2


def test_drop_all_multiple_choice(numina_fixture):
    r = build_dataset([parse_source_arg(f"numina={numina_fixture}")],
                      BuildConfig(decontaminate=False, drop_all_multiple_choice=True))
    assert {d.id for d in r.dropped if d.filter == "multiple_choice"} == {"numina-4", "numina-6"}


def test_earlier_sources_win_duplicates(numina_fixture, tmp_path):
    copy = tmp_path / "copy.jsonl"
    copy.write_text(numina_fixture.read_text().splitlines()[0] + "\n")
    specs = [parse_source_arg(f"generic:mine={copy}", {"problem": "problem", "solution": "solution"}),
             parse_source_arg(f"numina={numina_fixture}")]
    r = build_dataset(specs, BuildConfig(decontaminate=False))
    assert r.problems[0].id == "mine-0"
    assert {d.id: d.reason for d in r.dropped}["numina-0"] == "duplicate of mine-0"


@pytest.fixture(scope="module")
def shipped_build(shared_data):
    """DeepScaleR (AIME 1983-2023 + MATH train) and the MATH test split, against every shipped benchmark."""
    specs = [parse_source_arg(f"deepscaler={shared_data / 'train' / 'deepscaler'}"),
             parse_source_arg(f"math={shared_data / 'raw' / 'math_test5000.jsonl'}")]
    return build_dataset(specs, BuildConfig())


def test_shipped_sources_every_math500_item_is_caught(shipped_build, shared_data):
    from torl.data.eval_sets import load_benchmark

    r = shipped_build.report
    assert r["n_input"] == 975 + 7474 + 5000 and r["n_input"] == r["n_kept"] + r["n_dropped"]
    math500 = {p.problem.strip(): p.id for p in load_benchmark("math500")}
    dropped = {d.id: d for d in shipped_build.dropped}
    test_rows = [json.loads(line) for line in (shared_data / "raw" / "math_test5000.jsonl").open()]
    copies = {f"math-{i}": math500[row["problem"].strip()] for i, row in enumerate(test_rows)
              if row["problem"].strip() in math500}
    assert len(copies) == 500
    # every copy is gone: contaminated, or dropped by an earlier filter before decontamination ran
    before = set(FILTER_ORDER[: FILTER_ORDER.index("contaminated")])
    assert all(dropped[i].filter == "contaminated" or dropped[i].filter in before for i in copies)
    reached = {bench_id for i, bench_id in copies.items() if dropped[i].filter == "contaminated"}
    assert len(reached) >= 490
    hit_ids = {h["id"] for h in r["decontamination"]["hits"] if h["benchmark"] == "math500"}
    assert reached <= hit_ids and len(hit_ids) == r["decontamination"]["items_hit"]["math500"]
    assert not any(p.problem.strip() in math500 for p in shipped_build.problems)


def test_shipped_sources_aime_copies_in_math_train_are_duplicates(shipped_build):
    dups = [d for d in shipped_build.dropped if d.filter == "exact_duplicate"]
    # AIME (read first) is kept; its copies in MATH train (ids from 975 on) are dropped
    aime_kept = [d for d in dups if int(d.id.split("-")[1]) >= 975 and int(d.reason.split("-")[-1]) < 975]
    assert len(aime_kept) > 100
    assert shipped_build.report["duplicates"]["answer_conflicts"] == 0
    ids = [p.id for p in shipped_build.problems]
    assert len(ids) == len(set(ids))
