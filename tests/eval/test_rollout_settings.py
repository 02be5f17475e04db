"""`torl eval` takes every RolloutConfig field (rollout.KEY=VALUE, the short options, --rollout-from RUN), and
exactly those settings reach the engine and are recorded in results.json."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from tests.rollout.settings import as_overrides, changed_values, spy_engine

from torl.cli import main
from torl.data import write_problems
from torl.eval import cli as eval_cli
from torl.eval import runner
from torl.rollout.cli import ROLLOUT_OPTIONS
from torl.rollout.config import RolloutConfig
from torl.train.config import TorlTrainConfig
from torl.train.tiny_model import arithmetic_problems


@pytest.fixture
def bench(tmp_path):
    path = tmp_path / "arith.jsonl"
    write_problems(arithmetic_problems(2, seed=5), path)
    return path


@pytest.fixture
def settings_of(monkeypatch, tmp_path, bench):
    """Run `torl eval` up to the evaluation (no model loads): the (EvalConfig, run_info) it would evaluate."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    got = []
    monkeypatch.setattr(eval_cli, "_evaluate", lambda args, cfg, model, engine_args, run_info: got.append(
        (cfg, run_info)) or 0)

    def run(*argv):
        got.clear()
        assert main(["eval", "--model", str(model), "--benchmarks", str(bench), "--out", str(tmp_path / "o"),
                     *argv]) == 0
        (one,) = got
        return one

    return run


def test_every_rollout_field_reaches_the_engine_and_is_recorded(tmp_path, bench, tiny_model_dir, monkeypatch,
                                                                capsys):
    values = changed_values()  # every field, none at its default
    seen = spy_engine(monkeypatch, runner)
    out = tmp_path / "o"
    argv = ["eval", "--model", str(tiny_model_dir), "--benchmarks", str(bench), "--limit", "1", "--out", str(out),
            "--no-progress", *as_overrides(values)]
    assert main(argv) == 0
    assert seen == [RolloutConfig(**values)]
    assert json.loads((out / "results.json").read_text())["run"]["rollout"] == values
    # a resumed run compares every field: one changed field refuses the directory, naming the field
    capsys.readouterr()
    assert main([*argv, "rollout.obs_max_chars=301"]) == 2
    assert "other settings (rollout.obs_max_chars: 300 -> 301)" in capsys.readouterr().err
    assert main(argv) == 0 and len(seen) == 1  # the same settings: nothing left to generate


def test_short_options_are_aliases_and_overrides_win(settings_of):
    values = changed_values()
    argv = [x for flag, (name, *_) in ROLLOUT_OPTIONS.items() for x in (flag, str(values[name]))]
    cfg, _ = settings_of(*argv)
    assert {name: getattr(cfg.rollout, name) for name, *_ in ROLLOUT_OPTIONS.values()} == {
        name: values[name] for name, *_ in ROLLOUT_OPTIONS.values()}
    cfg, _ = settings_of("--temperature", "0.5", "--max-tool-calls", "3", "rollout.temperature=0.25")
    assert cfg.rollout == replace(runner.eval_rollout(), temperature=0.25, max_tool_calls=3)
    cfg, _ = settings_of()
    assert cfg.rollout == runner.eval_rollout() == replace(RolloutConfig(), temperature=0.0)  # greedy by default
    cfg, _ = settings_of("--mode", "cot", "rollout.max_tool_calls=3")
    assert cfg.rollout.max_tool_calls == 0  # no tools in cot mode, whatever the settings


@pytest.fixture
def train_run(tmp_path):
    """A `torl train` run directory whose config.yaml (every section, as the trainer writes it) has non-default
    rollout settings; its data files do not exist."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = TorlTrainConfig(rollout=RolloutConfig(**changed_values()))
    cfg.data.train_files = [str(tmp_path / "no_such_train.parquet")]
    (run_dir / "config.yaml").write_text(cfg.to_yaml())
    return run_dir


def test_rollout_from_a_run_is_its_rollout_section_greedy(settings_of, train_run):
    trained = changed_values()
    for source in (train_run, train_run / "config.yaml"):
        cfg, run_info = settings_of("--rollout-from", str(source))
        assert cfg.rollout == RolloutConfig(**{**trained, "temperature": 0.0})  # the eval protocol's temperature
        assert run_info["rollout_from"] == str(source.resolve())
    # sampling, and the other settings, on top of the run's: short options, then overrides
    cfg, _ = settings_of("--rollout-from", str(train_run), "--temperature", "0.6", "--max-tool-calls", "4",
                         "rollout.obs_max_chars=512")
    assert cfg.rollout == RolloutConfig(**{**trained, "temperature": 0.6, "max_tool_calls": 4, "obs_max_chars": 512})
    cfg, _ = settings_of("--rollout-from", str(train_run), "rollout.temperature=0.8")
    assert cfg.rollout.temperature == 0.8


def test_rollout_from_evaluates_and_records_the_run(tmp_path, bench, tiny_model_dir, train_run, monkeypatch):
    seen = spy_engine(monkeypatch, runner)
    out = tmp_path / "o"
    assert main(["eval", "--model", str(tiny_model_dir), "--benchmarks", str(bench), "--limit", "1",
                 "--rollout-from", str(train_run), "--out", str(out), "--no-progress"]) == 0
    greedy = RolloutConfig(**{**changed_values(), "temperature": 0.0})
    assert seen == [greedy]
    run = json.loads((out / "results.json").read_text())["run"]
    assert run["rollout"] == greedy.to_dict() and run["rollout_from"] == str(train_run.resolve())


def test_bad_rollout_settings_name_the_key(tmp_path, settings_of, train_run, capsys):
    cases = [
        (["rollout.obs_max_char=512"], "command-line override rollout.obs_max_char: unknown key (did you mean "
                                       "rollout.obs_max_chars?)"),
        (["rollout.exec_memory_mb=lots"], "command-line override rollout.exec_memory_mb: expected an integer, got "
                                          "'lots'"),
        (["rollout.obs_head_chars=300"], "command-line override rollout.obs_head_chars: obs_head_chars + "
                                         "obs_tail_chars must be <= obs_max_chars (each >= 0), got 300 + 128 and 256"),
        (["rollout.obs_max_chars=200"], "command-line override rollout.obs_max_chars: obs_head_chars + "
                                        "obs_tail_chars"),
        (["--top-p", "0"], "command-line override rollout.top_p: top_p must be in (0, 1], got 0.0"),
        (["optim.lr=1"], "override 'optim.lr=1': expected rollout.KEY=VALUE (KEY one of max_tool_calls,"),
        (["--rollout-from", str(tmp_path)], "is not a `torl train` run directory"),
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  path: m\nrollout:\n  top_p: 1.0\n  exec_timout: 5\n")
    cases.append((["--rollout-from", str(bad)], f"{bad}:5: rollout.exec_timout: unknown key (did you mean "
                                                "rollout.exec_timeout?)"))
    for argv, message in cases:
        with pytest.raises(AssertionError):
            settings_of(*argv)
        err = capsys.readouterr().err
        assert message in err and err.startswith("torl eval: error:"), (argv, err)
    assert not (tmp_path / "o").exists()
