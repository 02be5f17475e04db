"""The runner with the replay backend (exact numbers) and the real LocalSandbox."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from torl.data.eval_sets import load_benchmark
from torl.errors import UserInputError
from torl.eval.runner import EvalConfig, eval_rollout, evaluate
from torl.eval.samples import read_samples
from torl.rollout.config import RolloutConfig

CODE = "Let me compute.\n```python\n{code}\n```\n```output"

# p1: code runs, right answer; p2: code crashes, wrong answer; p3: no code, right (1/2 == 0.5); p4: no box
SCRIPTS = {
    "What is 2 + 3?": [CODE.format(code="print(2 + 3)"), "So the answer is \\boxed{5}."],
    "What is 12 / 2?": [CODE.format(code="print(12 / 0)"), "I guess \\boxed{7}."],
    "What is one half?": ["It is \\boxed{\\frac{1}{2}}."],
    "Say nothing.": ["I do not know."],
}
GOLDS = {"What is 2 + 3?": "5", "What is 12 / 2?": "6", "What is one half?": "0.5", "Say nothing.": "1"}


@pytest.fixture
def bench_file(tmp_path):
    f = tmp_path / "toy.jsonl"
    f.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "problem": p, "answer": GOLDS[p]}) + "\n" for i, p in enumerate(GOLDS)
        )
    )
    return f


def samples_of(out, bench):
    return {r["problem_id"]: r for r in read_samples(out / "samples" / f"{bench}.jsonl").records}


def test_greedy_tir_exact_metrics_with_real_sandbox(tmp_path, bench_file, scripted, local_sandbox):
    model = scripted(SCRIPTS)
    out = tmp_path / "run"
    res = evaluate(
        EvalConfig(benchmarks=[str(bench_file)]),
        backend=model.backend(),
        sandbox=local_sandbox,
        out_dir=out,
        run_info={"model": "scripted"},
        progress=False,
    )
    b = res["benchmarks"]["toy"]
    assert b["accuracy"] == 0.5 and res["macro_average"] == 0.5
    assert (b["n_items"], b["n_samples"], b["n_responses"], b["n_missing"]) == (4, 1, 4, 0)
    assert b["code_ratio"] == 0.5 and b["code_pass_ratio"] == 0.5 and b["executions_per_response"] == 0.5
    assert b["no_answer_ratio"] == 0.25 and b["truncated_ratio"] == 0.0 and b["sandbox_errors"] == 0
    s = samples_of(out, "toy")
    assert (
        s["q0"]["tool_calls"][0]["status"] == "ok" and s["q0"]["tool_calls"][0]["observation"].strip() == "5"
    )
    assert s["q0"]["pred"] == "5" and s["q0"]["correct"] is True
    crash = s["q1"]["tool_calls"][0]
    assert (
        crash["status"] == "error" and "ZeroDivisionError" in crash["observation"]
    )  # the real interpreter ran it
    assert s["q1"]["pred"] == "7" and s["q1"]["correct"] is False
    assert s["q2"]["pred"] == "\\frac{1}{2}" and s["q2"]["correct"] is True and s["q2"]["num_executions"] == 0
    assert s["q3"]["pred"] is None and s["q3"]["correct"] is False
    assert all(r["response_tokens"] > 0 and r["gold"] == GOLDS[SCRIPTS_BY_ID[pid]] for pid, r in s.items())
    # results.json / results.md on disk, run.json with the settings
    assert json.loads((out / "results.json").read_text()) == res
    assert "| toy | 4 | 1 | 50.0 |" in (out / "results.md").read_text()
    run = json.loads((out / "run.json").read_text())
    assert run["model"] == "scripted" and run["template"] == "torl"
    assert run["rollout"] == eval_rollout().to_dict()  # every RolloutConfig field


SCRIPTS_BY_ID = {f"q{i}": p for i, p in enumerate(GOLDS)}


def test_cot_mode_uses_no_tool_prompt_and_never_executes(tmp_path, bench_file, scripted, tokenizer):
    model = scripted(SCRIPTS)
    backend = model.backend()
    res = evaluate(
        EvalConfig(benchmarks=[str(bench_file)], mode="cot"),
        backend=backend,
        sandbox=None,
        out_dir=tmp_path / "cot",
        progress=False,
    )
    prompts = [tokenizer.decode(r.prompt_ids) for r in backend.requests if r.round_index == 0]
    assert len(prompts) == 4
    assert all("Please reason step by step" in p and "programs" not in p for p in prompts)
    assert all(r.stop == () for r in backend.requests)  # no stop marker: nothing can run
    s = samples_of(tmp_path / "cot", "toy")
    assert s["q0"]["has_code"] is True and s["q0"]["num_executions"] == 0 and s["q0"]["tool_calls"] == []
    # without execution, q0's script continues past the marker as one round: no box follows in round 0
    assert res["benchmarks"]["toy"]["executions_per_response"] == 0.0
    assert res["benchmarks"]["toy"]["code_pass_ratio"] is None


def test_tir_prompt_is_the_training_prompt(tmp_path, bench_file, scripted, tokenizer, local_sandbox):
    from torl.rollout import build_prompt

    model = scripted(SCRIPTS)
    backend = model.backend()
    evaluate(
        EvalConfig(benchmarks=[str(bench_file)]),
        backend=backend,
        sandbox=local_sandbox,
        out_dir=tmp_path / "o",
        progress=False,
    )
    prompts = sorted(tokenizer.decode(r.prompt_ids) for r in backend.requests if r.round_index == 0)
    assert prompts == sorted(build_prompt(p) for p in GOLDS)
    assert all(r.temperature == 0.0 for r in backend.requests)


def test_sampled_avg_pass_maj(tmp_path, scripted, local_sandbox):
    # one problem, 4 samples: answers 5, 5, 4, (none) -> avg 0.5, pass@2 = 1 - C(2,2)/C(4,2) = 5/6, maj correct
    answers = ["\\boxed{5}", "\\boxed{5}", "\\boxed{4}", "no idea"]
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps({"id": "a", "problem": "What is 2 + 3?", "answer": "5"}) + "\n")
    model = scripted({"What is 2 + 3?": lambda i: [answers[i]]})
    res = evaluate(
        EvalConfig(benchmarks=[str(f)], n=4, rollout=replace(eval_rollout(), temperature=1.0), batch_size=4),
        backend=model.backend(),
        sandbox=local_sandbox,
        out_dir=tmp_path / "o",
        progress=False,
    )
    b = res["benchmarks"]["one"]
    assert b["accuracy"] == 0.5 and b["avg@4"] == 0.5 and b["n_samples"] == 4 and b["n_responses"] == 4
    assert b["pass@1"] == 0.5 and b["pass@2"] == pytest.approx(5 / 6) and b["pass@4"] == 1.0
    assert b["maj@4"] == 1.0


def test_resume_after_interruption_skips_done_and_never_duplicates(
    tmp_path, bench_file, scripted, local_sandbox
):
    out = tmp_path / "run"
    cfg = EvalConfig(benchmarks=[str(bench_file), "aime24"], batch_size=1, limit=3)
    aime = load_benchmark("aime24")[:3]
    scripts = dict(SCRIPTS)
    scripts.update({p.problem: [f"\\boxed{{{p.answer}}}"] for p in aime})
    # first run: crashes on the second aime24 problem (toy is finished, aime24 has one sample)
    crashing = scripted(scripts, fail_on=aime[1].problem)
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate(cfg, backend=crashing.backend(), sandbox=local_sandbox, out_dir=out, progress=False)
    assert len(read_samples(out / "samples" / "toy.jsonl").records) == 3  # limit=3
    assert read_samples(out / "samples" / "aime24.jsonl").keys() == {(aime[0].id, 0)}
    assert not (out / "results.json").exists()
    # a kill in the middle of a write leaves a cut line behind
    with (out / "samples" / "toy.jsonl").open("rb+") as fh:
        data = fh.read()
        fh.seek(0)
        fh.truncate()
        fh.write(data[: -len(data.splitlines(keepends=True)[-1]) // 2])  # q2's line cut in half
    # rerun: only the missing samples are generated
    model = scripted(scripts)
    res = evaluate(cfg, backend=model.backend(), sandbox=local_sandbox, out_dir=out, progress=False)
    assert sorted(model.asked) == sorted(["What is one half?", aime[1].problem, aime[2].problem])
    for bench, n in (("toy", 3), ("aime24", 3)):
        lines = (out / "samples" / f"{bench}.jsonl").read_text().splitlines()
        keys = [(json.loads(line)["problem_id"], json.loads(line)["sample_index"]) for line in lines]
        assert len(keys) == len(set(keys)) == n
    assert res["benchmarks"]["aime24"]["accuracy"] == 1.0  # golds "204"/"113"/"371" boxed verbatim
    assert res["benchmarks"]["toy"]["accuracy"] == pytest.approx(2 / 3)
    # a third run has nothing left to do and gives the same results
    idle = scripted(scripts)
    again = evaluate(cfg, backend=idle.backend(), sandbox=local_sandbox, out_dir=out, progress=False)
    assert idle.asked == [] and again == res


def test_resume_refuses_other_generation_settings(tmp_path, bench_file, scripted, local_sandbox):
    out = tmp_path / "run"
    evaluate(
        EvalConfig(benchmarks=[str(bench_file)]),
        backend=scripted(SCRIPTS).backend(),
        sandbox=local_sandbox,
        out_dir=out,
        progress=False,
    )
    with pytest.raises(UserInputError, match=r"other settings \(rollout.temperature: 0.0 -> 0.6\)"):
        evaluate(
            EvalConfig(benchmarks=[str(bench_file)], rollout=replace(eval_rollout(), temperature=0.6)),
            backend=scripted(SCRIPTS).backend(),
            sandbox=local_sandbox,
            out_dir=out,
            progress=False,
        )
    # more samples per problem with the same settings is fine: it extends the run
    res = evaluate(
        EvalConfig(benchmarks=[str(bench_file)], n=2),
        backend=scripted(SCRIPTS).backend(),
        sandbox=local_sandbox,
        out_dir=out,
        progress=False,
    )
    assert res["benchmarks"]["toy"]["n_samples"] == 2 and res["benchmarks"]["toy"]["accuracy"] == 0.5


def test_resume_accepts_a_run_json_from_before_the_rollout_record(tmp_path, bench_file, scripted, local_sandbox):
    """run.json once held the rollout settings as top-level keys (no "rollout"): a resume with the same settings
    goes on; one with other settings is refused, naming the field."""
    out = tmp_path / "run"
    cfg = EvalConfig(benchmarks=[str(bench_file)], limit=2)
    evaluate(cfg, backend=scripted(SCRIPTS).backend(), sandbox=local_sandbox, out_dir=out, progress=False)
    run = json.loads((out / "run.json").read_text())
    rollout = run.pop("rollout")
    legacy = {**run, **{k: rollout[k] for k in ("max_tool_calls", "tool_call_budget", "max_response_tokens",
                                                "temperature", "top_p", "observation_style", "exec_timeout")}}
    (out / "run.json").write_text(json.dumps(legacy))
    with pytest.raises(UserInputError, match=r"other settings \(rollout.max_response_tokens: 3072 -> 100\)"):
        evaluate(EvalConfig(benchmarks=[str(bench_file)], limit=2, rollout=replace(eval_rollout(),
                                                                                   max_response_tokens=100)),
                 backend=scripted(SCRIPTS).backend(), sandbox=local_sandbox, out_dir=out, progress=False)
    model = scripted(SCRIPTS)
    res = evaluate(replace(cfg, limit=3), backend=model.backend(), sandbox=local_sandbox, out_dir=out,
                   progress=False)
    assert model.asked == ["What is one half?"] and res["benchmarks"]["toy"]["n_items"] == 3
    assert json.loads((out / "run.json").read_text())["rollout"] == rollout  # rewritten in today's form


def test_resume_ignores_max_concurrent_tool_calls_only(tmp_path, bench_file, scripted, local_sandbox):
    out = tmp_path / "run"
    evaluate(EvalConfig(benchmarks=[str(bench_file)], limit=1), backend=scripted(SCRIPTS).backend(),
             sandbox=local_sandbox, out_dir=out, progress=False)
    model = scripted(SCRIPTS)
    res = evaluate(EvalConfig(benchmarks=[str(bench_file)], limit=2,
                              rollout=replace(eval_rollout(), max_concurrent_tool_calls=1)),
                   backend=model.backend(), sandbox=local_sandbox, out_dir=out, progress=False)
    assert model.asked == ["What is 12 / 2?"] and res["benchmarks"]["toy"]["n_items"] == 2
    with pytest.raises(UserInputError, match=r"other settings \(rollout.exec_memory_mb: None -> 512\)"):
        evaluate(EvalConfig(benchmarks=[str(bench_file)], limit=2,
                            rollout=replace(eval_rollout(), exec_memory_mb=512)),
                 backend=scripted(SCRIPTS).backend(), sandbox=local_sandbox, out_dir=out, progress=False)


def test_config_validation():
    with pytest.raises(UserInputError, match="mode must be one of tir, cot"):
        EvalConfig(mode="pot")
    with pytest.raises(UserInputError, match="-n must be at least 1"):
        EvalConfig(n=0)
    cot = EvalConfig(mode="cot", rollout=replace(eval_rollout(), max_tool_calls=3, obs_max_chars=512))
    assert cot.rollout.max_tool_calls == 0 and cot.rollout.obs_max_chars == 512 and cot.template == "cot"
    default = EvalConfig()
    assert default.template == "torl" and default.rollout.temperature == 0.0 and default.rollout.max_tool_calls == 1
    assert replace(default.rollout, temperature=1.0) == RolloutConfig()  # the training defaults, greedy


def test_a_corrected_gold_is_regraded_without_generating_again(tmp_path, bench_file, scripted, local_sandbox):
    out = tmp_path / "run"
    cfg = EvalConfig(benchmarks=[str(bench_file)])
    first = evaluate(
        cfg, backend=scripted(SCRIPTS).backend(), sandbox=local_sandbox, out_dir=out, progress=False
    )
    assert first["benchmarks"]["toy"]["accuracy"] == 0.5
    # the toy file's gold for "What is 12 / 2?" is fixed to what the model answered
    rows = [json.loads(x) for x in bench_file.read_text().splitlines()]
    rows[1]["answer"] = "7"
    bench_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    idle = scripted(SCRIPTS)
    again = evaluate(cfg, backend=idle.backend(), sandbox=local_sandbox, out_dir=out, progress=False)
    assert idle.asked == []
    assert again["benchmarks"]["toy"]["accuracy"] == 0.75
