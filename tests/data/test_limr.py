"""LIMR scores on a hand-computed example, the rules for missing problems and incomplete epochs, bad dumps."""

import json
from fractions import Fraction

import pytest

from torl.data.limr import LimrConfig, select, write_limr_outputs
from torl.data.readers import read_problems
from torl.data.schema import Problem, write_problems
from torl.errors import UserInputError

# (step, problem, correct flags). K = 2 steps per epoch: epoch 1 = steps 1-2, epoch 2 = steps 3-4.
HAND = [
    (1, "p1", [1, 1, 0, 0]), (1, "p3", [1, 1, 1, 1]), (2, "p2", [0, 0, 0, 0]),
    (3, "p1", [1, 1]), (3, "p3", [1, 1, 1, 1]), (4, "p1", [1, 0]), (4, "p2", [1, 0, 0, 0]),
]
# By hand: r_1 = (p1 1/2, p2 0, p3 1) -> mean 1/2;  r_2 = (p1 3/4, p2 1/4, p3 1) -> mean 2/3.
# Σ(1 - r̄)² = 1/4 + 1/9 = 13/36.
# s_p1 = 1 - (0 + (3/4 - 2/3)²) / (13/36) = 1 - (1/144)/(13/36) = 51/52
# s_p2 = 1 - ((1/2)² + (5/12)²) / (13/36) = 1 - (61/144)/(13/36) = -9/52
# s_p3 = 1 - ((1/2)² + (1/3)²) / (13/36) = 0
EXPECTED = {"p1": Fraction(51, 52), "p2": Fraction(-9, 52), "p3": Fraction(0)}


def write_dumps(run_dir, records):
    samples = run_dir / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    by_step: dict[int, list[str]] = {}
    for step, pid, flags in records:
        for ok in flags:
            line = {"step": step, "problem_id": pid, "source": "math", "prompt": f"Solve {pid}", "response": "...",
                    "reward": 1.0 if ok else -1.0, "correct": bool(ok), "num_executions": 1, "tool_calls": []}
            by_step.setdefault(step, []).append(json.dumps(line))
    for step, lines in by_step.items():
        (samples / f"step_{step:06d}.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def scores(result):
    return {s.problem_id: s.score for s in result.scores}


def test_hand_computed_example(tmp_path):
    result = select(write_dumps(tmp_path, HAND), LimrConfig(steps_per_epoch=2, threshold=0.6))
    assert result.epoch_means == pytest.approx([0.5, 2 / 3])
    assert scores(result) == pytest.approx({k: float(v) for k, v in EXPECTED.items()})
    assert result.selected_ids == ["p1"]
    p1 = next(s for s in result.scores if s.problem_id == "p1")
    assert p1.epoch_rewards == [0.5, 0.75] and p1.n_samples == 8
    assert result.report["epochs_used"] == [1, 2] and result.report["epochs_incomplete"] == {}


def test_threshold_is_inclusive(tmp_path):
    result = select(write_dumps(tmp_path, HAND), LimrConfig(steps_per_epoch=2, threshold=0.0))
    assert result.selected_ids == ["p1", "p3"]  # s_p3 = 0 >= 0


def test_missing_epoch_rules(tmp_path):
    run = write_dumps(tmp_path, [*HAND, (2, "p4", [1, 0])])  # p4 only in epoch 1; r̄_1 stays 1/2
    skip = select(run, LimrConfig(steps_per_epoch=2))
    # skip: p4 is scored over epoch 1 only: 1 - (1/2 - 1/2)² / (1/2)² = 1
    assert scores(skip) == pytest.approx({**{k: float(v) for k, v in EXPECTED.items()}, "p4": 1.0})
    assert skip.selected_ids == ["p1", "p4"] and skip.report["n_missing_some_epoch"] == 1
    drop = select(run, LimrConfig(steps_per_epoch=2, missing="drop"))
    p4 = next(s for s in drop.scores if s.problem_id == "p4")
    assert p4.score is None and not p4.kept and "not sampled in 1 of 2 epochs" in p4.note
    assert drop.selected_ids == ["p1"] and drop.report["n_not_scored"] == 1


def test_incomplete_epoch_rules(tmp_path):
    run = write_dumps(tmp_path, [*HAND, (5, "p1", [0, 0])])  # epoch 3 has 1 of 2 steps
    dropped = select(run, LimrConfig(steps_per_epoch=2))
    assert scores(dropped) == pytest.approx({k: float(v) for k, v in EXPECTED.items()})
    assert dropped.report["epochs_incomplete"] == {"3": "1 of 2 steps"} and dropped.report["epochs_used"] == [1, 2]
    kept = select(run, LimrConfig(steps_per_epoch=2, partial_epochs="keep"))
    # epoch 3: only p1, r = 0 = r̄_3. p1: 1 - (1/144) / (13/36 + 1) = 195/196; p2, p3 skip epoch 3.
    assert scores(kept)["p1"] == pytest.approx(195 / 196)
    assert scores(kept)["p2"] == pytest.approx(-9 / 52) and kept.report["epochs_used"] == [1, 2, 3]


def test_bad_lines_stop_or_are_counted(tmp_path):
    run = write_dumps(tmp_path, HAND)
    path = run / "samples" / "step_000002.jsonl"
    path.write_text(path.read_text() + '{"step": 2, "problem_id": "p2", "correct": "yes"}\n{oops\n')
    with pytest.raises(UserInputError, match=r"step_000002\.jsonl:5: field 'correct' must be true or false"):
        select(run, LimrConfig(steps_per_epoch=2))
    result = select(run, LimrConfig(steps_per_epoch=2, skip_invalid=True))
    assert result.report["n_invalid_lines"] == 2 and scores(result)["p2"] == pytest.approx(-9 / 52)
    path.write_text('{"step": 3, "problem_id": "p2", "correct": true}\n')
    with pytest.raises(UserInputError, match="field 'step' is 3 but the file is step 2"):
        select(run, LimrConfig(steps_per_epoch=2))


def test_config_and_directory_errors(tmp_path):
    with pytest.raises(UserInputError, match="steps-per-epoch"):
        LimrConfig(steps_per_epoch=0)
    with pytest.raises(UserInputError, match="no step_NNNNNN.jsonl"):
        select(tmp_path, LimrConfig(steps_per_epoch=2))
    run = write_dumps(tmp_path / "short", HAND[:3])  # steps 1-2 only
    with pytest.raises(UserInputError, match="no complete epoch"):
        select(run, LimrConfig(steps_per_epoch=4))


def test_outputs_with_the_pool(tmp_path):
    run = write_dumps(tmp_path / "run", HAND)
    pool = tmp_path / "pool.jsonl"
    write_problems([Problem(p, f"Problem {p}", "1", "math") for p in ("p1", "p2", "p3", "p9")], pool)
    result = select(run, LimrConfig(steps_per_epoch=2))
    paths = write_limr_outputs(result, tmp_path / "out", 0.6, pool)
    assert paths["selected_ids"].read_text() == "p1\n"
    assert [(p.id, p.problem) for p in read_problems(paths["selected"])] == [("p1", "Problem p1")]
    rows = [json.loads(line) for line in paths["scores"].read_text().splitlines()]
    assert [r["problem_id"] for r in rows] == ["p1", "p2", "p3"] and rows[0]["kept"] is True
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(paths["report_json"].read_text())
    assert report["pool"]["n_never_sampled"] == 1 and report["pool"]["n_selected_in_pool"] == 1
    from torl.data.verl import read_verl_parquet

    assert [p.id for p in read_verl_parquet(paths["selected_verl"])] == ["p1"]
    other = tmp_path / "other.jsonl"
    write_problems([Problem("q1", "x", "1")], other)
    with pytest.raises(UserInputError, match="none of the 3 sampled problem ids is in this pool"):
        write_limr_outputs(result, tmp_path / "out2", 0.6, other)
