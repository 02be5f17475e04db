"""GRPOTrainer with torl's rollout function: the TRL contract, masking of observation tokens, advantages,
no reference model at beta = 0, and a real training run (tiny model, real sandbox, real grader).

Generation is scripted (see conftest.replay_factory): the code the "model" writes runs in the real sandbox and
the observation inserted is the sandbox's real output; the loss, gradients and optimizer are TRL's, on the real
tiny model.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from torl.rollout.tokens import decode

from .conftest import make_config, replay_factory


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model, tiny_tokenizer, local_sandbox):
    """A built (not trained) trainer over 4 problems: 2 prompts x 4 samples per step, micro-batch 4 (GA 2)."""
    from torl.data.schema import write_problems
    from torl.train.trainer import build_trainer

    from .conftest import arithmetic_problems

    tmp = tmp_path_factory.mktemp("tir_run")
    write_problems(arithmetic_problems(4), tmp / "train.jsonl")
    cfg = make_config(tmp / "run", tiny_model, tmp / "train.jsonl")
    r = build_trainer(cfg, backend_factory=replay_factory(tiny_tokenizer), sandbox=local_sandbox)
    yield r
    r.close()


@pytest.fixture(scope="module")
def batch_inputs(run):
    """One generation batch through TRL's own `_generate_and_score_completions` (rollout -> rewards -> advantages)."""
    trainer = run.trainer
    trainer.model.train()
    rows = next(iter(trainer.get_train_dataloader()))
    inputs = trainer._generate_and_score_completions(rows)
    records = list(run.recorder.records)
    rollouts = list(run.recorder.rollouts)
    run.recorder.reset()
    return rows, inputs, records, rollouts


def test_rollout_func_gets_each_prompt_repeated_num_generations_times(run, batch_inputs):
    """TRL 1.16 passes every prompt already repeated num_generations times in a row (its docstring says it
    passes them once). One call per generation batch = per optimizer step."""
    rows, _, _, rollouts = batch_inputs
    prompts = [r.prompt for r in rollouts]
    n = run.trainer.num_generations
    assert n == 4 and len(prompts) == 2 * n == len(rows)
    assert [p for p in prompts[::n] for _ in range(n)] == prompts
    assert len(set(prompts)) == 2
    assert [len(set(prompts[i : i + n])) for i in range(0, len(prompts), n)] == [1, 1]


def test_env_mask_becomes_trls_tool_mask(batch_inputs, tiny_tokenizer):
    _, inputs, _, rollouts = batch_inputs
    tool_mask = inputs["tool_mask"]
    completion_mask = inputs["completion_mask"]
    for i, r in enumerate(rollouts):
        n = len(r.completion_ids)
        assert inputs["completion_ids"][i, :n].tolist() == r.completion_ids  # the sampled ids, not re-tokenised
        assert tool_mask[i, :n].tolist() == r.mask
        assert completion_mask[i, :n].sum().item() == n
        assert r.num_observation_tokens > 0  # every sample's code ran and its output was inserted
        obs_text = decode(tiny_tokenizer, [t for t, m in zip(r.completion_ids, r.mask, strict=True) if m == 0])
        assert r.tool_calls[0].observation in obs_text


def hand_advantages(rewards: list[float], n: int, eps: float) -> list[float]:
    out = []
    for g in range(0, len(rewards), n):
        grp = rewards[g : g + n]
        mean = sum(grp) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in grp) / (n - 1))  # unbiased, as torch.std / veRL
        out += [(x - mean) / (std + eps) for x in grp]
    return out


def test_grpo_advantages_match_a_hand_computation(batch_inputs):
    _, inputs, records, _ = batch_inputs
    rewards = [r["reward"] for r in records]
    # the scripted answers: samples 0 and 2 of each group right (+1), 1 and 3 wrong (-1), graded for real
    assert rewards == [1.0, -1.0, 1.0, -1.0] * 2
    got = inputs["advantages"].tolist()
    assert got == pytest.approx(hand_advantages(rewards, 4, eps=1e-4), abs=1e-6)  # TRL's epsilon
    assert got == pytest.approx(hand_advantages(rewards, 4, eps=1e-6), abs=1e-3)  # the spec's (same to 1e-4)
    assert got[0] == pytest.approx(1 / math.sqrt(4 / 3), abs=1e-3)


def test_no_reference_model_when_beta_is_zero(run, tmp_path, tiny_model, tiny_tokenizer, local_sandbox):
    from torl.train.trainer import build_trainer

    assert run.trainer.beta == 0.0 and run.trainer.ref_model is None
    cfg = make_config(tmp_path / "kl", tiny_model, run.config.data.train_files[0], "grpo.kl_coef=0.05")
    with_kl = build_trainer(cfg, backend_factory=replay_factory(tiny_tokenizer), sandbox=local_sandbox)
    try:  # the control: a KL term does load one, a separate module
        assert with_kl.trainer.ref_model is not None and with_kl.trainer.ref_model is not with_kl.trainer.model
    finally:
        with_kl.close()


# ------------------------------------------------------------------------------- observation tokens and the loss


def loss_grads(trainer, inputs, *, hidden_noise: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient of TRL's GRPO loss on `inputs` (flattened), optionally adding `hidden_noise` to the backbone's
    last hidden states (the inputs of the LM head)."""
    model = trainer.model
    handle = None
    if hidden_noise is not None:
        def hook(module, args, output):
            output.last_hidden_state = output.last_hidden_state + hidden_noise
            return output

        handle = model.model.register_forward_hook(hook)
    try:
        model.zero_grad()
        trainer.current_gradient_accumulation_steps = trainer.args.steps_per_generation  # normaliser = all tokens
        loss = trainer._compute_loss(model, inputs)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()
    finally:
        if handle is not None:
            handle.remove()
        model.zero_grad()


def noise_at(inputs, positions_mask: torch.Tensor, hidden: int, scale: float = 5.0) -> torch.Tensor:
    """Noise on the hidden states that *predict* the completion tokens selected by `positions_mask` (B, C)."""
    prompt_len = inputs["prompt_ids"].shape[1]
    batch, comp = positions_mask.shape
    gen = torch.Generator().manual_seed(0)
    noise = torch.zeros(batch, prompt_len + comp, hidden)
    rows, cols = positions_mask.nonzero(as_tuple=True)
    noise[rows, prompt_len - 1 + cols] = torch.randn(len(rows), hidden, generator=gen) * scale
    return noise


def masks_from_rollouts(rollouts, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(observation, model-token) position masks (B, C), from the rollout engine's own record of which token is
    which (the ground truth, independent of how the mask travels through TRL)."""
    shape = inputs["completion_ids"].shape
    obs, model = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape, dtype=torch.bool)
    for i, r in enumerate(rollouts):
        m = torch.tensor(r.mask)
        obs[i, : len(m)] = m == 0
        model[i, : len(m)] = m == 1
    return obs, model


def test_observation_logits_never_reach_the_gradient(run, batch_inputs):
    trainer = run.trainer
    _, inputs, _, rollouts = batch_inputs
    hidden = trainer.model.config.hidden_size
    obs, model_tokens = masks_from_rollouts(rollouts, inputs)
    assert obs.sum() > 0 and model_tokens.sum() > 0

    base = loss_grads(trainer, inputs)
    assert base.abs().sum() > 0
    # scrambling the logits of every observation token leaves the gradient exactly as it was
    perturbed = loss_grads(trainer, inputs, hidden_noise=noise_at(inputs, obs, hidden))
    assert torch.allclose(perturbed, base, rtol=0, atol=1e-7)
    # controls (so that this test can fail): the same noise on model tokens changes it ...
    on_model = loss_grads(trainer, inputs, hidden_noise=noise_at(inputs, model_tokens, hidden))
    assert not torch.allclose(on_model, base, atol=1e-4)
    # ... and without the env mask the observation noise changes it too
    unmasked = {k: v for k, v in inputs.items() if k != "tool_mask"}
    assert not torch.allclose(loss_grads(trainer, unmasked, hidden_noise=noise_at(inputs, obs, hidden)),
                              loss_grads(trainer, unmasked), atol=1e-4)


def hand_objective_grads(trainer, inputs, loss_mask: torch.Tensor) -> torch.Tensor:
    """Gradient of -(1/N) sum over loss_mask of A_i * log p(token): the on-policy GRPO gradient, written out
    with a plain forward pass."""
    model = trainer.model
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    p = inputs["prompt_ids"].shape[1]
    model.zero_grad()
    logits = model(input_ids=ids, attention_mask=attn).logits[:, p - 1 : -1].float() / trainer.temperature
    logp = torch.log_softmax(logits, dim=-1).gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)
    n = loss_mask.sum()
    objective = -(inputs["advantages"].unsqueeze(1) * logp * loss_mask).sum() / n
    objective.backward()
    grads = torch.cat([q.grad.flatten() for q in model.parameters() if q.grad is not None]).clone()
    model.zero_grad()
    return grads


def test_observation_ids_act_only_as_context(run, batch_inputs):
    trainer = run.trainer
    _, inputs, _, rollouts = batch_inputs
    obs, model_tokens = masks_from_rollouts(rollouts, inputs)
    real = obs | model_tokens
    model_mask = model_tokens.float()

    trl = loss_grads(trainer, inputs)
    assert torch.allclose(trl, hand_objective_grads(trainer, inputs, model_mask), rtol=1e-3, atol=1e-7)
    # control: counting observation tokens as model tokens is a different gradient
    assert not torch.allclose(trl, hand_objective_grads(trainer, inputs, real.float()), rtol=1e-2, atol=1e-5)

    # other observation ids: the loss changes (they are context for later model tokens) ...
    vocab = trainer.model.config.vocab_size
    changed = dict(inputs)
    changed["completion_ids"] = torch.where(obs, (inputs["completion_ids"] + 7) % vocab, inputs["completion_ids"])
    trl_changed = loss_grads(trainer, changed)
    assert not torch.allclose(trl_changed, trl, atol=1e-5)
    # ... but only through context: it is still exactly the objective over the model tokens
    assert torch.allclose(trl_changed, hand_objective_grads(trainer, changed, model_mask), rtol=1e-3, atol=1e-7)


# ------------------------------------------------------------------------------- a real training run


def test_training_run_with_tool_calls(tmp_path, tiny_model, tiny_tokenizer, local_sandbox):
    from torl.data.schema import write_problems
    from torl.train.trainer import build_trainer

    from .conftest import arithmetic_problems

    problems = {p.id: p for p in arithmetic_problems(4)}
    write_problems(problems.values(), tmp_path / "train.jsonl")
    cfg = make_config(tmp_path / "run", tiny_model, tmp_path / "train.jsonl", "train.max_steps=2",
                      "train.save_every=2", "optim.lr=1e-3")
    run = build_trainer(cfg, backend_factory=replay_factory(tiny_tokenizer), sandbox=local_sandbox)
    calls = []
    rollout_func = run.trainer.rollout_func

    def spy(prompts, trainer):
        calls.append(list(prompts))
        return rollout_func(prompts, trainer)

    run.trainer.rollout_func = spy
    before = [p.detach().clone() for p in run.trainer.model.parameters()]
    try:
        run.trainer.train()
    finally:
        run.close()
    # one rollout call per optimizer step (on-policy), each prompt repeated num_generations=4 times
    assert [len(c) for c in calls] == [8, 8]
    assert all(c[i] == c[i - i % 4] for c in calls for i in range(8))
    after = list(run.trainer.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # non-zero advantages trained

    out = tmp_path / "run"
    for step in (1, 2):
        lines = [json.loads(x) for x in (out / "samples" / f"step_{step:06d}.jsonl").read_text().splitlines()]
        assert len(lines) == 8
        for k, rec in enumerate(lines):
            assert {"step", "problem_id", "source", "prompt", "response", "reward", "correct", "num_executions",
                    "tool_calls"} <= set(rec)
            assert rec["step"] == step and rec["source"] == "test" and rec["num_executions"] == 1
            call = rec["tool_calls"][0]
            assert set(call) == {"code", "status", "observation"}
            if k % 4 == 3:
                assert call["status"] == "error" and "NameError" in call["observation"]
            else:
                assert call["status"] == "ok" and call["observation"] == rec["gold"]  # the sandbox's real output
            assert rec["correct"] is (k % 4 in (0, 2)) and rec["reward"] == (1.0 if rec["correct"] else -1.0)
            problem = problems[rec["problem_id"]]
            assert problem.problem in rec["prompt"] and rec["gold"] == problem.answer
            assert rec["prompt"].endswith("\nAssistant:\n")
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    by_step = {m["step"]: m for m in metrics if "train/accuracy" in m}
    assert sorted(by_step) == [1, 2]
    m = by_step[1]
    assert m["train/accuracy"] == 0.5 and m["train/code_ratio"] == 1.0 and m["train/code_pass_ratio"] == 0.75
    assert m["train/executions_per_response"] == 1.0 and 0 < m["train/observation_token_share"] < 1
    assert m["train/code_pass_ratio_correct"] == 1.0 and m["train/code_pass_ratio_wrong"] == 0.5
    assert m["time/rollout_s"] > 0 and m["time/update_s"] > 0 and m["throughput/generated_tokens_per_s"] > 0
    assert m["reward"] == 0.0 and m["frac_reward_zero_std"] == 0.0  # TRL's own metrics in the same record
    ckpt = out / "checkpoint-2"
    for f in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert (ckpt / f).is_file()
    assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] == 2
