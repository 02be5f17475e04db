"""Training: GRPO on TRL's GRPOTrainer with torl's tool-integrated rollout, from one config file.

- `load_config(path, overrides)` -> `TorlTrainConfig` (strict YAML + dotted overrides; clear errors).
- `train(cfg, resume=False)`: a whole run into cfg.run_dir; `build_trainer(cfg)` for the pieces.
- `TIRRolloutFunction`, `TIRReward`: the rollout function and reward function for `trl.GRPOTrainer`.
- `plot_run(run_dir)`: the training-dynamics figures and an HTML report.

One GRPO step, top to bottom (TRL drives it; torl supplies the rollout, the reward and the measurements):

 1. prompts     `trainer.EpochRepeatSampler` picks prompts_per_step problems (seeded per epoch), each repeated
                samples_per_prompt times; `data.render_prompts` made them TORL-template prompts.
 2. sync        colocated vLLM gets the trainer's weights before generating: TRL's `vllm_generation.sync_weights()`
                on CUDA, `vllm_sync.cpu_sync_weights` on vLLM's CPU build (HF generate reads the live model).
 3. rollout     TRL calls `rollout_func.TIRRolloutFunction(prompts, trainer)` → `torl.rollout.loop.arun_rollouts`:
                generate to "```output", run the block in the sandbox (`torl.sandbox`), append the observation,
                continue; returns token ids, the sampler's log-probs and `env_mask` (0 on observation tokens).
 4. reward      `rewards.TIRReward` → `rewards.grade_responses` (torl.reward's extraction, grader pool and
                `reward_value`): +1 / −1 (−0.5 more when the last execution
                failed, with reward.exec_penalty), recorded per step by `recorder.StepRecorder`.
 5. advantages  TRL's `GRPOTrainer._generate_and_score_completions`: (r − mean of the group) / (std + ε).
 6. loss        `trainer.TorlGRPOTrainer._compute_loss` → TRL's clipped-ratio loss over completion_mask × env_mask
                (observations are context, never targets); `engine_gap.EngineGapMeter` measures
                |log p_engine − log p_trainer| on the same forward pass.
 7. optimizer   TRL/accelerate: AdamW step, grad clip, constant LR (`build_grpo_config` maps torl's sections).
 8. log         `callbacks.TIRStepCallback`: accuracy, code ratio, lengths, tool statuses, validation
                (`validation.Validator`) → metrics.jsonl and checkpoints (`rundir`).

Heavy imports (torch, TRL) happen only when those names are used.
"""

from torl.train.config import TorlTrainConfig, load_config

__all__ = ["TIRReward", "TIRRolloutFunction", "TorlTrainConfig", "build_trainer", "load_config", "plot_run",
           "train"]


def __getattr__(name: str):
    if name in ("train", "build_trainer"):
        from torl.train import trainer

        return getattr(trainer, name)
    if name == "TIRRolloutFunction":
        from torl.train.rollout_func import TIRRolloutFunction

        return TIRRolloutFunction
    if name == "TIRReward":
        from torl.train.rewards import TIRReward

        return TIRReward
    if name == "plot_run":
        from torl.train.plot import plot_run

        return plot_run
    raise AttributeError(f"module 'torl.train' has no attribute {name!r}")
