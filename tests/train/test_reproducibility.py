"""`torl train` with the same seed twice gives the same run: the same sampled responses, rewards and metrics
(timings aside) and weights; another seed samples other responses. `--resume` on a finished run says so, exits 0
and writes nothing; raising train.max_steps continues it exactly as if it had never stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.threads import one_torch_thread
from torl.cli import main

from .conftest import TINY_CPU

TIMING = ("time/", "throughput/", "step_time")
# measured on the sampler's log-probs, which carry float rounding of the batch shape (not the tokens: those match)
GAP = "train/engine_logprob_gap"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


def _train(run_dir: Path, model: Path, *overrides: str) -> int:
    return main(["train", str(TINY_CPU), f"run_dir={run_dir}", f"model.path={model}", "grpo.prompts_per_step=2",
                 "grpo.samples_per_prompt=4", "grpo.micro_batch_size=4", "rollout.max_response_tokens=32",
                 "validation.every=0", "validation.at_start=false", "logging.progress=false",
                 "logging.tensorboard=false", "engine.sandbox_workers=1", "train.save_final_model=false",
                 "train.save_every=1", *overrides])


def _dumps(run_dir: Path) -> list[list[dict]]:
    files = sorted((run_dir / "samples").glob("step_*.jsonl"))
    return [[json.loads(x) for x in f.read_text().splitlines()] for f in files]


def _step_metrics(run_dir: Path) -> list[dict]:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in records if "train/accuracy" in r]


def _without_gap(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != GAP} for m in metrics]


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_same_seed_same_run_and_resuming_a_finished_run(tmp_path, tiny_model, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert _train(a, tiny_model, "train.max_steps=3", "seed=1") == 0
    # b generates in batches of 3 rather than all 8 samples of a step at once: seeded samples do not care
    assert _train(b, tiny_model, "train.max_steps=2", "seed=1", "engine.generation_batch_size=3") == 0

    # b is finished: --resume says so, exits 0, writes nothing
    before = _snapshot(b)
    capsys.readouterr()
    assert main(["train", str(b), "--resume"]) == 0
    assert "is complete: checkpoint-2 reached train.max_steps=2" in capsys.readouterr().err
    assert _snapshot(b) == before
    # a larger train.max_steps continues it
    assert main(["train", str(b), "--resume", "train.max_steps=3"]) == 0
    assert "missing keys" not in (b / "train.log").read_text()  # the tied lm_head.weight is not missing

    # a and b (the same seed; b in other batches, stopped at step 2 and resumed) are the same run
    dumps = _dumps(a)
    assert len(dumps) == 3 and all(len(step) == 8 for step in dumps)
    assert _dumps(b) == dumps  # responses, rewards, tool calls, token counts, step by step
    assert [m["step"] for m in _step_metrics(b)] == [1, 2, 3]
    ma, mb = _step_metrics(a), _step_metrics(b)
    assert _without_gap(mb) == _without_gap(ma)
    assert all(abs(x.get(GAP, 0) - y.get(GAP, 0)) < 1e-5 for x, y in zip(ma, mb, strict=True))
    wa, wb = load_file(a / "checkpoint-3" / "model.safetensors"), load_file(b / "checkpoint-3" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    responses = [[r["response"] for r in step] for step in dumps]
    assert responses[0] != responses[1]  # steps sample with their own seeds
    assert len(set(responses[0])) == 8

    # another seed: other responses
    assert _train(c, tiny_model, "train.max_steps=1", "seed=2") == 0
    assert [r["response"] for r in _dumps(c)[0]] != responses[0]


def test_only_keys_tied_to_a_loaded_weight_are_not_missing(tiny_model):
    from transformers import AutoModelForCausalLM

    from torl.train.rundir import tied_missing_keys

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert tied_missing_keys(model, ["lm_head.weight", "model.norm.weight"]) == ["lm_head.weight"]
    assert tied_missing_keys(model, ["lm_head.weight", "model.embed_tokens.weight"]) == []  # neither was loaded
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())  # untied
    assert tied_missing_keys(model, ["lm_head.weight"]) == []
