"""Metrics from sample records, the metrics file, sample dumps, the plot report, and the epoch-seeded sampler."""

from __future__ import annotations

import json

import pytest

from torl.train.metrics import (
    MetricsWriter,
    benchmark_metrics,
    read_metrics,
    sample_metrics,
    timing_metrics,
    truncate_metrics,
)
from torl.train.recorder import remove_dumps_after, sample_dump_path, write_sample_dump


def rec(correct, statuses=(), code=None, tokens=10, obs=0, truncated=False):
    return {"reward": 1.0 if correct else -1.0, "correct": correct, "has_code": bool(statuses) if code is None else code,
            "num_executions": len(statuses), "tool_calls": [{"code": "", "status": s, "observation": ""}
                                                            for s in statuses],
            "response_tokens": tokens, "observation_tokens": obs, "truncated": truncated}


def test_sample_metrics_by_hand():
    records = [rec(True, ["ok"], tokens=20, obs=4), rec(False, ["error"], tokens=30, obs=6),
               rec(False, [], code=True, tokens=40, truncated=True), rec(True, [], tokens=10)]
    m = sample_metrics(records)
    assert m["train/accuracy"] == 0.5 and m["train/reward_mean"] == 0.0
    assert m["train/code_ratio"] == 0.75  # the third wrote code that never ran
    assert m["train/code_pass_ratio"] == 0.5
    assert m["train/code_pass_ratio_correct"] == 1.0 and m["train/code_pass_ratio_wrong"] == 0.0
    assert m["train/executions_per_response"] == 0.5 and m["train/sandbox_error_ratio"] == 0.0
    assert sample_metrics([rec(False, ["sandbox_error", "ok"])])["train/sandbox_error_ratio"] == 0.5
    assert m["train/observation_token_share"] == pytest.approx(10 / 100)
    assert m["train/response_length"] == 25.0 and m["train/truncated_ratio"] == 0.25
    assert sample_metrics([rec(False)])["train/code_pass_ratio"] is None


def test_benchmark_metrics_and_mean():
    m = benchmark_metrics({"a": [rec(True), rec(False)], "b": [rec(True)]})
    assert m["val/a/accuracy"] == 0.5 and m["val/b/accuracy"] == 1.0 and m["val/mean_accuracy"] == 0.75
    assert "val/a/reward_mean" not in m


def test_timing_split():
    t = timing_metrics(step_s=10.0, rollout_s=6.0, tool_s=9.0, grading_s=1.0, model_tokens=600, total_tokens=1500)
    assert t["time/update_s"] == 3.0 and t["throughput/generated_tokens_per_s"] == 100.0
    assert t["throughput/update_tokens_per_s"] == 500.0


def test_metrics_file_roundtrip_and_truncation(tmp_path):
    w = MetricsWriter(tmp_path, tensorboard=True)
    for step in (1, 2, 3):
        w.write(step, {"train/accuracy": step / 10, "nan": float("nan")})
    w.close()
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "torn')  # a killed writer
    recs = read_metrics(tmp_path)
    assert [r["step"] for r in recs] == [1, 2, 3] and recs[0]["nan"] is None
    assert any((tmp_path / "tensorboard").iterdir())
    assert truncate_metrics(tmp_path, 2) == 2
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_sample_dumps_replace_and_prune(tmp_path):
    write_sample_dump(tmp_path, 1, [{"problem_id": "a"}])
    write_sample_dump(tmp_path, 2, [{"problem_id": "b"}, {"problem_id": "c"}])
    write_sample_dump(tmp_path, 2, [{"problem_id": "d"}])  # a redone step replaces, never appends
    lines = sample_dump_path(tmp_path, 2).read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"step": 2, "problem_id": "d"}]
    assert sample_dump_path(tmp_path, 2).name == "step_000002.jsonl"
    assert remove_dumps_after(tmp_path, 1) == 1 and sample_dump_path(tmp_path, 1).exists()


def test_plot_report(tmp_path):
    from torl.errors import UserInputError
    from torl.train.plot import plot_run

    with pytest.raises(UserInputError, match="no metrics.jsonl"):
        plot_run(tmp_path)
    w = MetricsWriter(tmp_path, tensorboard=False)
    w.write(0, {"val/aime24/accuracy": 0.1, "val/math500/accuracy": 0.5, "val/mean_accuracy": 0.3})
    for s in range(1, 9):
        w.write(s, {"train/accuracy": s / 10, "train/code_ratio": 0.4 + s / 50, "train/code_pass_ratio": 0.8,
                    "train/response_length": 500 + s, "time/step_s": 3.0, "time/rollout_s": 2.0,
                    "time/grading_s": 0.1, "time/update_s": 0.9})
    w.write(8, {"val/aime24/accuracy": 0.2, "val/math500/accuracy": 0.6, "val/mean_accuracy": 0.4})
    out = plot_run(tmp_path)
    for name in ("accuracy", "code_ratio", "code_pass_ratio", "response_length", "time_split"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{name}.png"' in (out / "index.html").read_text()
    assert not (out / "executions_per_response.png").exists()  # no data, no empty figure
    assert "val/mean_accuracy" in (out / "index.html").read_text()


def test_epoch_sampler_is_a_function_of_seed_and_epoch():
    from trl.trainer.utils import RepeatSampler

    from torl.train.trainer import EpochRepeatSampler

    data = list(range(10))
    kw = dict(mini_repeat_count=2, batch_size=5, repeat_count=1, shuffle=True, seed=7)
    s = EpochRepeatSampler(data, **kw)
    epoch0, epoch0_again = list(s), list(s)
    assert epoch0 == epoch0_again == list(RepeatSampler(data, **{**kw, "seed": 7}))
    s.set_epoch(1)
    epoch1 = list(s)
    assert epoch1 != epoch0 and sorted(epoch1) == sorted(epoch0)
    fresh = EpochRepeatSampler(data, **kw)  # a resumed run: a new sampler told its epoch
    fresh.set_epoch(1)
    assert list(fresh) == epoch1
    # TRL's own sampler would replay epoch 0 after a restart:
    stock = RepeatSampler(data, **kw)
    assert list(stock) == epoch0 and list(stock) != list(RepeatSampler(data, **kw))
