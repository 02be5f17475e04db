"""Training: GRPO on TRL's GRPOTrainer with torl's tool-integrated rollout, from one config file.

- `load_config(path, overrides)` -> `TorlTrainConfig` (strict YAML + dotted overrides; clear errors).
- `train(cfg, resume=False)`: a whole run into cfg.run_dir; `build_trainer(cfg)` for the pieces.
- `TIRRolloutFunction`, `TIRReward`: the rollout function and reward function for `trl.GRPOTrainer`.
- `plot_run(run_dir)`: the training-dynamics figures and an HTML report.

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
