"""`torl eval` on a reference-schema parquet (one benchmark per data_source) and with the reference's call budget,
through the runner with a scripted model and the real LocalSandbox."""

from __future__ import annotations

import json
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from torl.cli import main
from torl.errors import UserInputError
from torl.eval.runner import EvalConfig, eval_rollout, evaluate, run_record
from torl.eval.samples import read_samples
from torl.rollout.config import build_rollout_config

NO_CODE = "I think it is 5.\n```output"  # stops at the marker without a code block
CODE = "\nLet me check.\n```python\nprint(2 + 3)\n```\n```output"
SCRIPTS = {
    "What is 2 + 3?": [NO_CODE, CODE, "\nSo \\boxed{5}."],
    "What is 10 - 4?": ["It is \\boxed{6}."],
}


@pytest.fixture
def reference_file(tmp_path):
    rows = [{"data_source": src, "prompt": [{"role": "system", "content": "Please reason step by step."},
                                            {"role": "user", "content": p}],
             "ability": "other", "reward_model": {"ground_truth": gold, "stype": "rule"},
             "extra_info": {"id": f"x{i}", "split": "test"}}
            for i, (src, p, gold) in enumerate([("aime24", "What is 2 + 3?", "5"), ("amc23", "What is 10 - 4?", "6")])]
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize(("budget", "executions", "text_end"), [
    ("executions", 1, "```output\n5\n```\n\nSo \\boxed{5}."),  # the marker-only round is free: the code runs
    ("rounds", 0, "print(2 + 3)\n```\n```output"),  # it spent C = 1: the code round runs without the stop, EOS
])
def test_reference_file_one_benchmark_per_source_and_the_budget(tmp_path, reference_file, scripted, local_sandbox,
                                                                budget, executions, text_end):
    model = scripted(SCRIPTS)
    out = tmp_path / "run"
    res = evaluate(EvalConfig(benchmarks=[str(reference_file)], rollout=replace(eval_rollout(), tool_call_budget=budget)), backend=model.backend(),
                   sandbox=local_sandbox, out_dir=out, run_info={"model": "scripted"}, progress=False)
    assert set(res["benchmarks"]) == {"aime24", "amc23"}
    assert res["benchmarks"]["amc23"]["accuracy"] == 1.0
    (rec,) = read_samples(out / "samples" / "aime24.jsonl").records
    assert rec["problem_id"] == "x0" and rec["num_executions"] == executions
    assert rec["response"].endswith(text_end)
    assert res["benchmarks"]["aime24"]["accuracy"] == (1.0 if budget == "executions" else 0.0)
    assert json.loads((out / "run.json").read_text())["rollout"]["tool_call_budget"] == budget


def test_budget_is_a_generation_setting():
    assert run_record(EvalConfig())["rollout"]["tool_call_budget"] == "executions"
    assert build_rollout_config(eval_rollout(), ["rollout.tool_call_budget=rounds"]).tool_call_budget == "rounds"
    with pytest.raises(UserInputError, match="override rollout.tool_call_budget: tool_call_budget must be one of"):
        build_rollout_config(eval_rollout(), ["rollout.tool_call_budget=calls"])


def test_cli_flags(capsys, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    for cmd in (["eval", "--model", str(model), "--out", str(tmp_path / "o")],
                ["rollout", "--model", str(model), "--input", "x.jsonl", "--out", str(tmp_path / "r.jsonl")]):
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--tool-call-budget", "calls"])
        assert e.value.code == 2 and "invalid choice: 'calls'" in capsys.readouterr().err


def test_tokenizer_name_qwen25(tmp_path):
    from torl.eval.cli import check_tokenizer
    from torl.models.qwen25 import build_qwen25_tokenizer_dir

    path = check_tokenizer("openai", "served-name", "qwen2.5")
    assert path == str(build_qwen25_tokenizer_dir().resolve())
    with pytest.raises(UserInputError, match="does not exist"):
        check_tokenizer("openai", "served-name", str(tmp_path / "nope"))
