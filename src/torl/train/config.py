"""The training config: dataclasses, strict YAML loading, dotted command-line overrides.

One YAML file describes a whole run (see configs/torl_1.5b.yaml). Every key is checked: an unknown key, a value
of the wrong type or out of range, or a missing required field is a `UserInputError` that names the file, the
line and the dotted key ("configs/x.yaml:12: grpo.clip_ratio: expected a number, got 'high'").

Paths: data files and validation files given *in a config file* are relative to that file's directory; paths
given on the command line, `run_dir`, and `model.path` when no such directory exists next to the config are
taken as given (relative to the current directory). `model.path` may be a local model directory, a hub id, or
`tiny://` (a tiny random Qwen2-style model built locally by `torl.train.tiny_model.build_tiny_model`, cached
under `model.tiny_cache`, default `~/.cache/torl/tiny_model`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from torl.config import apply_overrides, config_error, from_dict, override_keys, read_yaml
from torl.data.eval_sets import PAPER_BENCHMARKS, list_benchmarks
from torl.errors import UserInputError
from torl.reward.score import RewardConfig
from torl.rollout.config import RolloutConfig
from torl.rollout.templates import TEMPLATES
from torl.train.tiny_model import build_tiny_model

TINY_MODEL = "tiny://"
# keys whose change does not alter the optimisation: a resumed run may change them
RESUMABLE_CHANGES = ("train.max_steps", "train.save_every", "train.save_total_limit", "logging.", "validation.",
                     "engine.sandbox", "engine.sandbox_workers", "engine.generation_batch_size")


@dataclass
class ModelConfig:
    """path: local directory, hub id, or "tiny://". dtype: dtype of the trained weights ("auto" = the checkpoint's);
    keep float32 master weights and let train.precision=bf16 run the compute in bf16 (with lr 1e-6, updates to
    bf16 weights are mostly rounded away).
    gradient_checkpointing: recompute activations in the backward pass (memory for time).
    tiny: keyword arguments of `torl.train.tiny_model.build_tiny_model` for `tiny://` (e.g. train_steps: 100 to
    warm it up on TIR transcripts). tiny_cache: where `tiny://` models are built (default
    ~/.cache/torl/tiny_model; one subdirectory per set of arguments, reused)."""

    path: str = ""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "float32"
    attn_implementation: str | None = None
    gradient_checkpointing: bool = True
    trust_remote_code: bool = False
    tiny: dict = field(default_factory=dict)
    tiny_cache: str | None = None


@dataclass
class DataConfig:
    """train_files: torl Problem files (.jsonl/.parquet) or veRL / reference parquet files (TORL-SPEC §2),
    concatenated. template: torl.rollout template name. max_prompt_tokens: prompts longer than this are dropped
    (and counted). length_tokenizer: the tokenizer that counts prompt tokens: null = the model's, "qwen2.5" = the
    Qwen2.5 tokenizer built offline (the reference's filter: <= 390 of its tokens), or a tokenizer directory.
    shuffle: shuffle the prompt order (seeded by `seed`; the order is part of the checkpoint)."""

    train_files: list[str] = field(default_factory=list)
    template: str = "torl"
    max_prompt_tokens: int = 400
    length_tokenizer: str | None = None
    shuffle: bool = True


@dataclass
class GRPOConfigSection:
    """GRPO (TORL-SPEC §5). prompts_per_step x samples_per_prompt responses per step, one optimizer update per
    step. micro_batch_size: responses per device per forward/backward (gradient accumulation makes up the rest).
    loss_type: TRL's name; "dapo" is veRL's token-mean (sum over every response token of the step / their
    number). clip_ratio: PPO epsilon (clip_ratio_high: the upper one, default = clip_ratio). kl_coef: 0 = no KL
    term and no reference model loaded. scale_rewards: "group" = (r - mean) / (std + eps) per prompt group.
    mask_truncated: drop responses cut by the length cap from the loss."""

    prompts_per_step: int = 128
    samples_per_prompt: int = 16
    micro_batch_size: int = 4
    loss_type: Literal["dapo", "grpo", "bnpo", "dr_grpo"] = "dapo"
    clip_ratio: float = 0.2
    clip_ratio_high: float | None = None
    kl_coef: float = 0.0
    entropy_coef: float = 0.0
    scale_rewards: Literal["group", "batch", "none"] = "group"
    mask_truncated: bool = False


@dataclass
class OptimConfig:
    """AdamW. scheduler: a transformers scheduler name ("constant", "constant_with_warmup", "cosine", ...)."""

    lr: float = 1e-6
    scheduler: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class TrainSection:
    """max_steps: optimizer steps. save_every: checkpoint interval in steps (model, optimizer, scheduler, RNG,
    data position). precision: "bf16" | "fp16" | "fp32" mixed precision. dump_samples: write
    RUN_DIR/samples/step_NNNNNN.jsonl every step (LIMR reads them)."""

    max_steps: int = 1000
    save_every: int = 20
    save_total_limit: int | None = None
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    dump_samples: bool = True
    save_final_model: bool = True


@dataclass
class ValidationConfig:
    """Greedy validation with the training loop every `every` steps (0: never) and before the first step
    (`at_start`). benchmarks: shipped benchmark names; files: extra Problem files. max_items: first N problems
    of each (None: all). max_response_tokens: None = rollout.max_response_tokens."""

    every: int = 4
    at_start: bool = True
    benchmarks: list[str] = field(default_factory=lambda: list(PAPER_BENCHMARKS))
    files: list[str] = field(default_factory=list)
    max_items: int | None = None
    max_response_tokens: int | None = None
    temperature: float = 0.0


@dataclass
class EngineConfig:
    """Where generation and code execution run.

    sandbox: "local" (LocalSandbox) or the URL of a Sandbox Fusion server. sandbox_workers: LocalSandbox pool size
    per training process (null: the CPU cores divided among the processes of the node, see `local_sandbox_workers`).
    generation_batch_size: most sequences per HF `generate` call (transformers backend).
    vllm: generate with TRL's vLLM integration (true), with HF `generate` on the live model (false), or "auto":
    vLLM when a CUDA GPU and vLLM are present, else HF generate (with a warning on GPUs: 3-4x slower at scale).
    vllm_mode "colocate" (an engine inside each training process) or "server" (`trl vllm-serve` at
    vllm_server_url, weights pushed by rank 0 every step).
    vllm_importance_sampling_correction: reweight the loss by p_trainer / p_engine (TRL's correction for the
    engine/trainer mismatch). Off by default: the paper's objective is fully on-policy PPO-clip GRPO with no such
    correction; torl measures the mismatch every step instead (train/engine_logprob_gap). When on,
    vllm_importance_sampling_mode is TRL's mode and vllm_importance_sampling_cap its upper bound C_max
    ("*_truncate": ratios clipped at the cap; "*_mask": tokens/sequences above it dropped)."""

    sandbox: str = "local"
    sandbox_workers: int | None = None
    generation_batch_size: int = 64
    vllm: bool | Literal["auto"] = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_url: str = "http://localhost:8000"
    vllm_gpu_memory_utilization: float = 0.3
    vllm_tensor_parallel_size: int = 1
    vllm_importance_sampling_correction: bool = False
    vllm_importance_sampling_mode: Literal["token_truncate", "token_mask", "sequence_truncate",
                                          "sequence_mask"] = "sequence_mask"
    vllm_importance_sampling_cap: float = 3.0


@dataclass
class LoggingConfig:
    """tensorboard: write RUN_DIR/tensorboard. wandb_project: also log to Weights & Biases (needs wandb).
    progress: a progress bar with the key metrics."""

    tensorboard: bool = True
    wandb_project: str | None = None
    run_name: str | None = None
    progress: bool = True


@dataclass
class TorlTrainConfig:
    """A whole training run. `trl` holds extra `trl.GRPOConfig` arguments, passed through as they are."""

    run_dir: str = ""
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    grpo: GRPOConfigSection = field(default_factory=GRPOConfigSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=TrainSection)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    trl: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------------------------------------------- loading


def read_config_file(path: str | Path) -> tuple[dict, dict[str, int]]:
    """The raw mapping of a YAML config file (input paths resolved against its folder) and each dotted key's line.

    Raises UserInputError naming the file (and line) when it is missing, not YAML, or not a mapping.
    """
    raw, lines = read_yaml(path)
    _resolve_input_paths(raw, Path(path).resolve().parent)
    return raw, lines


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> TorlTrainConfig:
    """Read a YAML config (or start from the defaults when `path` is None), apply `key=value` overrides, validate.

    Raises UserInputError naming the file, line and key of the first problem.
    """
    raw: dict = {}
    lines: dict[str, int] = {}
    where = "<defaults>"
    if path is not None:
        raw, lines = read_config_file(path)
        where = str(path)
    apply_overrides(raw, overrides)
    overridden = override_keys(overrides)
    cfg = from_dict(TorlTrainConfig, raw, where=where, lines=lines, overridden=overridden)
    validate(cfg, where=where, lines=lines, overridden=overridden)
    check_environment(cfg, where=where, lines=lines, overridden=overridden)
    return cfg


# ---------------------------------------------------------------------------------------------------- validation


def validate(cfg: TorlTrainConfig, *, where: str = "", lines: dict[str, int] | None = None,
             overridden: set[str] | frozenset[str] = frozenset()) -> None:
    """Checks of the config itself, across fields (no file system: see `check_environment`). Raises
    UserInputError naming the key (as a command-line override when it is in `overridden`)."""
    lines = lines or {}

    def fail(key: str, msg: str):
        raise config_error(where, lines, key, msg, overridden)

    if not cfg.run_dir:
        fail("run_dir", "missing (the directory for checkpoints, logs and sample dumps)")
    if not cfg.model.path:
        fail("model.path", f"missing (a local model directory, a hub id, or {TINY_MODEL})")
    if cfg.model.path.startswith("tiny:") and cfg.model.path != TINY_MODEL:
        fail("model.path", f"the tiny model is written {TINY_MODEL!r}, got {cfg.model.path!r}")
    if cfg.model.tiny:
        _check_tiny_args(cfg.model.tiny, fail)
    if not cfg.data.train_files:
        fail("data.train_files", "missing (one or more torl Problem files, .jsonl or .parquet)")
    positive = {
        "data.max_prompt_tokens": cfg.data.max_prompt_tokens,
        "grpo.prompts_per_step": cfg.grpo.prompts_per_step,
        "grpo.micro_batch_size": cfg.grpo.micro_batch_size,
        "train.max_steps": cfg.train.max_steps,
        "train.save_every": cfg.train.save_every,
        "engine.generation_batch_size": cfg.engine.generation_batch_size,
        "engine.vllm_tensor_parallel_size": cfg.engine.vllm_tensor_parallel_size,
        "optim.lr": cfg.optim.lr,
        "optim.max_grad_norm": cfg.optim.max_grad_norm,
    }
    for key, value in positive.items():
        if value <= 0:
            fail(key, f"must be > 0, got {value}")
    if cfg.grpo.samples_per_prompt < 2:
        fail("grpo.samples_per_prompt", f"GRPO needs at least 2 samples per prompt, got {cfg.grpo.samples_per_prompt}")
    if not 0 < cfg.grpo.clip_ratio < 1:
        fail("grpo.clip_ratio", f"must be in (0, 1), got {cfg.grpo.clip_ratio}")
    if cfg.grpo.clip_ratio_high is not None and cfg.grpo.clip_ratio_high <= 0:
        fail("grpo.clip_ratio_high", f"must be > 0, got {cfg.grpo.clip_ratio_high}")
    for key, value in (("grpo.kl_coef", cfg.grpo.kl_coef), ("optim.weight_decay", cfg.optim.weight_decay),
                       ("optim.warmup_steps", cfg.optim.warmup_steps), ("validation.every", cfg.validation.every)):
        if value < 0:
            fail(key, f"must be >= 0, got {value}")
    if cfg.rollout.temperature <= 0:
        fail("rollout.temperature", "training samples must be drawn with temperature > 0 (greedy is for validation)")
    if len(cfg.optim.betas) != 2 or not all(0 <= b < 1 for b in cfg.optim.betas):
        fail("optim.betas", f"expected two numbers in [0, 1), got {cfg.optim.betas}")
    if cfg.validation.max_items is not None and cfg.validation.max_items < 1:
        fail("validation.max_items", f"must be >= 1 or null, got {cfg.validation.max_items}")
    if cfg.validation.every and not (cfg.validation.benchmarks or cfg.validation.files):
        fail("validation.benchmarks", "validation is on (validation.every > 0) but names no benchmark or file")
    if cfg.engine.vllm_importance_sampling_cap <= 1:
        fail("engine.vllm_importance_sampling_cap", f"must be > 1, got {cfg.engine.vllm_importance_sampling_cap}")
    if cfg.engine.sandbox_workers is not None and cfg.engine.sandbox_workers < 1:
        fail("engine.sandbox_workers", f"must be >= 1 or null, got {cfg.engine.sandbox_workers}")
    if cfg.engine.sandbox != "local" and not cfg.engine.sandbox.startswith(("http://", "https://")):
        fail("engine.sandbox", f"must be 'local' or an http(s):// URL, got {cfg.engine.sandbox!r}")
    if cfg.engine.vllm is not False and cfg.engine.vllm_mode == "colocate" and cfg.engine.vllm_tensor_parallel_size != 1:
        # refused here, not after TRL has built the engines: each process rolls out its own prompts on its engine
        fail("engine.vllm_tensor_parallel_size", f"must be 1 in colocate mode, got "
             f"{cfg.engine.vllm_tensor_parallel_size}; use engine.vllm_mode=server for tensor parallelism")
    if cfg.validation.benchmarks:
        _check_benchmarks(cfg.validation.benchmarks, fail)
    _check_template(cfg.data.template, fail)
    if cfg.trl:
        _check_trl_keys(cfg.trl, fail)


def gradient_accumulation_steps(cfg: TorlTrainConfig, processes: int) -> int:
    """Micro-batches per process per step, so that one step = prompts_per_step x samples_per_prompt responses."""
    g = cfg.grpo
    responses = g.prompts_per_step * g.samples_per_prompt
    if g.prompts_per_step % processes:
        raise UserInputError(f"grpo.prompts_per_step ({g.prompts_per_step}) must be a multiple of the number of "
                             f"processes ({processes}), so each process rolls out whole prompt groups")
    per_process = responses // processes
    if per_process % g.micro_batch_size:
        raise UserInputError(f"grpo.micro_batch_size ({g.micro_batch_size}) must divide the responses per process "
                             f"and step ({per_process} = {g.prompts_per_step} x {g.samples_per_prompt} / "
                             f"{processes} processes)")
    return per_process // g.micro_batch_size


def check_environment(cfg: TorlTrainConfig, *, where: str = "", lines: dict[str, int] | None = None,
                      overridden: set[str] | frozenset[str] = frozenset()) -> None:
    """What a run needs of this machine before it starts: the model directory, the problem files, optional
    packages. Raises UserInputError naming the key (as a command-line override when it is in `overridden`)."""
    lines = lines or {}

    def fail(key: str, msg: str):
        raise config_error(where, lines, key, msg, overridden)

    if cfg.model.path != TINY_MODEL and _is_local_path(cfg.model.path) and not Path(cfg.model.path).is_dir():
        fail("model.path", f"no such model directory: {cfg.model.path}")
    for i, f in enumerate(cfg.data.train_files):
        if not Path(f).is_file():
            fail(f"data.train_files[{i}]", f"no such file: {f}")
    for i, f in enumerate(cfg.validation.files):
        if not Path(f).is_file():
            fail(f"validation.files[{i}]", f"no such file: {f}")
    if cfg.logging.wandb_project and importlib.util.find_spec("wandb") is None:
        fail("logging.wandb_project", "needs wandb: pip install 'torl[wandb]' (or set it to null)")


def _check_tiny_args(args: dict, fail) -> None:
    params = inspect.signature(build_tiny_model).parameters
    for key in args:
        if key == "out_dir" or key not in params:
            known = ", ".join(k for k in params if k != "out_dir")
            fail(f"model.tiny.{key}", f"not an argument of build_tiny_model (known: {known})")


def _check_benchmarks(names: list[str], fail) -> None:
    known = list_benchmarks()
    for i, name in enumerate(names):
        if name not in known:
            fail(f"validation.benchmarks[{i}]", f"unknown benchmark {name!r} (shipped: {', '.join(known)})")


def _check_template(name: str, fail) -> None:
    if name not in TEMPLATES and not Path(name).is_file():
        fail("data.template", f"unknown template {name!r} (named: {', '.join(TEMPLATES)}; or a template file)")


# GRPOConfig arguments that torl sets from its own sections: setting them under `trl:` would be ambiguous
_OWNED_TRL_KEYS = {
    "output_dir", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
    "max_completion_length", "temperature", "top_p", "beta", "epsilon", "epsilon_high", "loss_type",
    "scale_rewards", "entropy_coef", "max_steps", "save_steps", "seed", "use_vllm", "vllm_mode",
    "lr_scheduler_type", "weight_decay", "max_grad_norm", "num_iterations", "generation_batch_size",
    "steps_per_generation", "logging_steps", "logging_strategy", "save_strategy", "report_to", "disable_tqdm",
    "remove_unused_columns", "bf16", "fp16", "optim", "shuffle_dataset", "use_cache",
    "vllm_importance_sampling_correction", "vllm_importance_sampling_mode", "vllm_importance_sampling_clip_max",
}


def _check_trl_keys(extra: dict, fail) -> None:
    from trl import GRPOConfig

    if extra.get("vllm_enable_sleep_mode"):
        fail("trl.vllm_enable_sleep_mode", "not supported: torl's rollout drives the vLLM engine itself, so TRL's "
             "wake-up of the KV cache before generation never runs. Lower engine.vllm_gpu_memory_utilization "
             "(or use engine.vllm_mode=server) to make room for training instead")

    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    for key in extra:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            fail(f"trl.{key}", "not a trl.GRPOConfig argument" + (f" (did you mean {close[0]}?)" if close else ""))
        if key in _OWNED_TRL_KEYS:
            fail(f"trl.{key}", "is set from torl's own config sections; set it there instead")


# ---------------------------------------------------------------------------------------------------- helpers


def diff_configs(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        dotted = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict) and key != "trl":
            keys += diff_configs(a, b, f"{dotted}.")
        elif a != b:
            keys.append(dotted)
    return keys


def non_resumable_changes(old: dict, new: dict) -> list[str]:
    """The changed keys that a resumed run may not change (they alter the optimisation or the data)."""
    return [k for k in diff_configs(old, new) if not k.startswith(RESUMABLE_CHANGES) and k != "run_dir"]


def _resolve_input_paths(raw: dict, base_dir: Path) -> None:
    """Make input paths written in a config file relative to its directory."""

    def fix(p):
        if not isinstance(p, str) or not p or Path(p).expanduser().is_absolute():
            return p
        return str(base_dir / p)

    data = raw.get("data")
    if isinstance(data, dict) and "train_files" in data:
        files = data["train_files"]
        data["train_files"] = [fix(f) for f in files] if isinstance(files, list) else fix(files)
    val = raw.get("validation")
    if isinstance(val, dict) and isinstance(val.get("files"), list):
        val["files"] = [fix(f) for f in val["files"]]
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("path"), str) and model["path"] != TINY_MODEL:
        candidate = base_dir / model["path"]
        if not Path(model["path"]).expanduser().is_absolute() and candidate.is_dir():
            model["path"] = str(candidate)


def _is_local_path(p: str) -> bool:
    """A path that must exist locally (absolute, ./ ../ ~), as opposed to a possible hub id "org/name"."""
    if p.startswith(("/", "./", "../", "~")) or Path(p).expanduser().exists():
        return True
    return not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", p)
