"""The demo's acceptance targets and first/last-steps windows, on known numbers."""

from __future__ import annotations

import json

from torl.demo.report import targets, training_dynamics, window_mean


def _numbers(**kw):
    base = {"accuracy_before": 0.05, "accuracy_after": 0.30, "accuracy_after_no_tools": 0.10,
            "code_ratio_first_steps": 0.3, "code_ratio_last_steps": 0.9, "wall_seconds": 400.0}
    return {**base, **kw}


def test_targets_on_and_just_off_their_thresholds():
    assert all(targets(_numbers()).values())
    t = targets(_numbers(accuracy_after=0.249, accuracy_after_no_tools=0.1))
    assert not t["accuracy_gain_at_least_0.2"] and not t["tools_beat_no_tools_by_0.15"]
    assert not targets(_numbers(code_ratio_last_steps=0.3))["code_ratio_rises"]
    assert not targets(_numbers(code_ratio_first_steps=None))["code_ratio_rises"]
    assert not targets(_numbers(wall_seconds=600.5))["wall_seconds_at_most_600"]


def test_windows_are_a_quarter_of_the_steps_between_1_and_5(tmp_path):
    def write(n):
        (tmp_path / "metrics.jsonl").write_text("".join(
            json.dumps({"step": s, "train/code_ratio": s / n, "train/accuracy": 0.5}) + "\n" for s in range(1, n + 1)))
        return training_dynamics(tmp_path)

    d = write(8)
    assert d["window_steps"] == 2 and d["code_ratio_first_steps"] == (1 + 2) / 16
    assert d["code_ratio_last_steps"] == (7 + 8) / 16 and d["code_ratio_by_step"][0] == [1, 1 / 8]
    assert write(60)["window_steps"] == 5 and write(2)["window_steps"] == 1
    assert window_mean([], True, 3) is None
