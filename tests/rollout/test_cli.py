"""`torl rollout` end to end: a problem file in, one JSON line per sample out, transcripts with --show."""

import json

import pytest

from tests.rollout.settings import as_overrides, changed_values, spy_engine
from torl.cli import main
from torl.data import write_problems
from torl.rollout import cli as rollout_cli
from torl.rollout.cli import ROLLOUT_OPTIONS
from torl.rollout.config import RolloutConfig
from torl.train.tiny_model import arithmetic_problems


@pytest.fixture
def problems(tmp_path):
    path = tmp_path / "problems.jsonl"
    write_problems(arithmetic_problems(3, seed=21), path)
    return path


def test_rollout_writes_one_line_per_sample(trained_dir, problems, tmp_path, capsys):
    out = tmp_path / "rollouts.jsonl"
    argv = ["rollout", "--model", str(trained_dir), "--input", str(problems), "--out", str(out), "-n", "2",
            "--max-tool-calls", "1", "--max-response-tokens", "96", "--temperature", "0", "--sandbox-workers", "1",
            "--show"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    assert sorted((r["problem_id"], r["sample"]) for r in rows) == [(p, k) for p in
                                                                     ("demo-21-0", "demo-21-1", "demo-21-2")
                                                                     for k in (0, 1)]
    for r in rows:
        assert r["finish_reason"] in ("eos", "length") and r["gold"]
        assert r["num_tokens"] == r["num_model_tokens"] + r["num_observation_tokens"]
        assert sum(n for _, n in r["mask_runs"]) == r["num_tokens"]
        assert r["num_executions"] == len(r["tool_calls"]) <= 1
        for tc in r["tool_calls"]:
            assert set(tc) == {"code", "status", "observation"}
            assert f"```output\n{tc['observation']}\n```" in r["text"]
        assert "completion_ids" not in r
    assert sum(r["num_executions"] for r in rows) >= 3
    shown = capsys.readouterr()
    assert "demo-21-0 · sample 0" in shown.out and "```output" in shown.out
    assert "6 samples" in shown.err


def test_rollout_ids_and_no_tools(tiny_dir, problems, tmp_path):
    out = tmp_path / "r.jsonl"
    assert main(["rollout", "--model", str(tiny_dir), "--input", str(problems), "--out", str(out), "--limit", "1",
                 "--max-tool-calls", "0", "--max-response-tokens", "16", "--ids"]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(row["completion_ids"]) == len(row["mask"]) == len(row["logprobs"]) == row["num_tokens"] <= 16
    assert row["num_executions"] == 0 and set(row["mask"]) == {1}


@pytest.mark.parametrize(("extra", "message"), [
    (["--input", "missing.jsonl"], "missing.jsonl: no such file"),
    (["--input", "BAD"], "bad.jsonl:2: invalid JSON"),
    (["--out", None], "give --out FILE"),
    (["-n", "0"], "-n must be >= 1"),
    (["--template", "nope"], "unknown template 'nope'"),
    (["--max-tool-calls", "-1"], "max_tool_calls must be >= 0"),
    (["--model", "no/such/model"], "--model no/such/model: no such directory"),
])
def test_rollout_errors_are_one_line(tiny_dir, problems, tmp_path, capsys, extra, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "problem": "x", "answer": "1"}\n{oops\n', encoding="utf-8")
    args = {"--model": str(tiny_dir), "--input": str(problems), "--out": str(tmp_path / "o.jsonl")}
    flags = []
    for i in range(0, len(extra), 2):
        key, value = extra[i], extra[i + 1]
        if key in args:
            args[key] = {"BAD": str(bad)}.get(value, value)
        else:
            flags += [key, value]
    argv = ["rollout", *[x for k, v in args.items() if v is not None for x in (k, v)], *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("torl rollout: error:")


def test_every_rollout_field_reaches_the_engine(trained_dir, problems, tmp_path, monkeypatch):
    values = changed_values()  # every field, none at its default
    seen = spy_engine(monkeypatch, rollout_cli)
    out = tmp_path / "r.jsonl"
    assert main(["rollout", "--model", str(trained_dir), "--input", str(problems), "--out", str(out), "--limit", "1",
                 "--sandbox-workers", "1", *as_overrides(values)]) == 0
    assert seen == [RolloutConfig(**values)]
    assert len(out.read_text().splitlines()) == 1


def test_short_options_are_aliases_and_overrides_win(tiny_dir, problems, tmp_path, monkeypatch):
    values = {**changed_values(), "max_tool_calls": 0}  # no sandbox: only the settings matter here
    seen = spy_engine(monkeypatch, rollout_cli)
    base = ["rollout", "--model", str(tiny_dir), "--input", str(problems), "--out", str(tmp_path / "r.jsonl"),
            "--limit", "1"]
    options = [x for flag, (name, *_) in ROLLOUT_OPTIONS.items() for x in (flag, str(values[name]))]
    assert main([*base, *options]) == 0
    assert seen[-1] == RolloutConfig(**{name: values[name] for name, *_ in ROLLOUT_OPTIONS.values()})
    assert main([*base, "--temperature", "0.5", "--max-tool-calls", "0", "rollout.temperature=0.25"]) == 0
    assert seen[-1] == RolloutConfig(temperature=0.25, max_tool_calls=0)  # the rest: RolloutConfig's defaults


@pytest.mark.parametrize(("overrides", "message"), [
    (["rollout.obs_max_char=512"],
     "command-line override rollout.obs_max_char: unknown key (did you mean rollout.obs_max_chars?)"),
    (["rollout.exec_timeout=soon"], "command-line override rollout.exec_timeout: expected a number, got 'soon'"),
    (["rollout.stop=", "rollout.max_tool_calls=2"],
     "command-line override rollout.stop: stop must be a non-empty string when max_tool_calls > 0"),
    (["grpo.clip_ratio=0.3"], "override 'grpo.clip_ratio=0.3': expected rollout.KEY=VALUE"),
])
def test_bad_override_names_the_key(tiny_dir, problems, tmp_path, capsys, overrides, message):
    argv = ["rollout", "--model", str(tiny_dir), "--input", str(problems), "--out", str(tmp_path / "o.jsonl"),
            *overrides]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("torl rollout: error:")
    assert not (tmp_path / "o.jsonl").exists()
