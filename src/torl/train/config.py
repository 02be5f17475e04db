"""The training config: dataclasses, strict YAML loading, dotted command-line overrides.

One YAML file describes a whole run (see configs/torl_1.5b.yaml). Every key is checked: an unknown key, a value
of the wrong type or out of range, or a missing required field is a `UserInputError` that names the file, the
line and the dotted key ("configs/x.yaml:12: grpo.clip_ratio: expected a number, got 'high'").

Paths: data files and validation files given *in a config file* are relative to that file's directory; paths
given on the command line, `run_dir`, and `model.path` when no such directory exists next to the config are
taken as given (relative to the current directory). `model.path` may be a local model directory, a hub id, or
`tiny://` (a tiny random Qwen2-style model built locally by `torl.models.tiny.build_tiny_model`, cached
under `model.tiny_cache`, default `~/.cache/torl/tiny_model`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from torl.errors import UserInputError
from torl.reward.score import RewardConfig
from torl.rollout.config import RolloutConfig

TINY_MODEL = "tiny://"
PAPER_BENCHMARKS = ["aime24", "aime25", "math500", "olympiadbench", "amc23"]
# keys whose change does not alter the optimisation: a resumed run may change them
RESUMABLE_CHANGES = ("train.max_steps", "train.save_every", "train.save_total_limit", "logging.", "validation.",
                     "engine.sandbox", "engine.sandbox_workers", "engine.generation_batch_size")


@dataclass
class ModelConfig:
    """path: local directory, hub id, or "tiny://". dtype: dtype of the trained weights ("auto" = the checkpoint's);
    keep float32 master weights and let train.precision=bf16 run the compute in bf16 (with lr 1e-6, updates to
    bf16 weights are mostly rounded away).
    gradient_checkpointing: recompute activations in the backward pass (memory for time).
    tiny: keyword arguments of `torl.models.tiny.build_tiny_model` for `tiny://` (e.g. train_steps: 100 to
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
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text) or {}
        lines = _key_lines(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise UserInputError(f"{path}{at}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(raw, dict):
        raise UserInputError(f"{path}: expected a mapping of config sections, got {type(raw).__name__}")
    _resolve_input_paths(raw, path.resolve().parent)
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
    for item in overrides:
        apply_override(raw, item)
    cfg = from_dict(TorlTrainConfig, raw, where=where, lines=lines, overridden=_override_keys(overrides))
    validate(cfg, where=where, lines=lines)
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    """ "grpo.clip_ratio=0.3" -> ("grpo.clip_ratio", 0.3); the value is read as YAML (so lists and null work)."""
    if "=" not in item:
        raise UserInputError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=2e-6")
    key, value = item.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise UserInputError(f"override {item!r}: {key!r} is not a dotted key like optim.lr")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str) and _looks_like_float(parsed):
        parsed = float(parsed)  # YAML 1.1 reads "1e-6" as a string
    return key, parsed


def apply_override(raw: dict, item: str) -> None:
    key, value = parse_override(item)
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserInputError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls, data: Any, *, where: str = "", lines: dict[str, int] | None = None, prefix: str = "",
              overridden: set[str] | None = None):
    """Build dataclass `cls` from a mapping, checking every key and type. Errors name where/line/key."""
    lines = lines or {}
    overridden = overridden or set()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _error(where, lines, prefix.rstrip("."), f"expected a section (mapping), got {_show(data)}",
                     overridden)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(names)})"
            raise _error(where, lines, f"{prefix}{key}", f"unknown key{hint}", overridden)
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        dotted = f"{prefix}{name}"
        kwargs[name] = _coerce(hints[name], data[name], dotted, where, lines, overridden)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise _error(where, lines, prefix.rstrip("."), str(e), overridden) from None


def _coerce(tp, value, dotted: str, where: str, lines: dict[str, int], overridden: set[str]):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where, lines=lines, prefix=f"{dotted}.", overridden=overridden)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        errors = []
        for a in others:
            try:
                return _coerce(a, value, dotted, where, lines, overridden)
            except UserInputError as e:
                errors.append(e)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise _error(where, lines, dotted, f"must be one of {choices}, got {_show(value)}", overridden)
        return value
    if origin is list:
        (item_tp,) = args or (Any,)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and item_tp is str:
            value = [value]  # a single path for a list of paths
        if not isinstance(value, list):
            raise _error(where, lines, dotted, f"expected a list, got {_show(value)}", overridden)
        return [_coerce(item_tp, v, f"{dotted}[{i}]", where, lines, overridden) for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _error(where, lines, dotted, f"expected a mapping, got {_show(value)}", overridden)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _error(where, lines, dotted, f"expected true or false, got {_show(value)}", overridden)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _error(where, lines, dotted, f"expected an integer, got {_show(value)}", overridden)
        return value
    if tp is float:
        if isinstance(value, str) and _looks_like_float(value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _error(where, lines, dotted, f"expected a number, got {_show(value)}", overridden)
        return float(value)
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _error(where, lines, dotted, f"expected a string, got {_show(value)}", overridden)
        return str(value)
    if tp is Any:
        return value
    raise TypeError(f"config field {dotted}: unsupported type {tp!r}")  # a bug in the dataclasses, not user input


# ---------------------------------------------------------------------------------------------------- validation


def validate(cfg: TorlTrainConfig, *, where: str = "", lines: dict[str, int] | None = None) -> None:
    """Checks across fields and on the file system. Raises UserInputError naming the key."""
    lines = lines or {}

    def fail(key: str, msg: str):
        raise _error(where, lines, key, msg, set())

    if not cfg.run_dir:
        fail("run_dir", "missing (the directory for checkpoints, logs and sample dumps)")
    if not cfg.model.path:
        fail("model.path", f"missing (a local model directory, a hub id, or {TINY_MODEL})")
    if cfg.model.path != TINY_MODEL and _is_local_path(cfg.model.path) and not Path(cfg.model.path).is_dir():
        fail("model.path", f"no such model directory: {cfg.model.path}")
    if cfg.model.path.startswith("tiny:") and cfg.model.path != TINY_MODEL:
        fail("model.path", f"the tiny model is written {TINY_MODEL!r}, got {cfg.model.path!r}")
    if cfg.model.tiny:
        _check_tiny_args(cfg.model.tiny, fail)
    if not cfg.data.train_files:
        fail("data.train_files", "missing (one or more torl Problem files, .jsonl or .parquet)")
    for i, f in enumerate(cfg.data.train_files):
        if not Path(f).is_file():
            fail(f"data.train_files[{i}]", f"no such file: {f}")
    for i, f in enumerate(cfg.validation.files):
        if not Path(f).is_file():
            fail(f"validation.files[{i}]", f"no such file: {f}")
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
    if cfg.validation.benchmarks:
        _check_benchmarks(cfg.validation.benchmarks, fail)
    _check_template(cfg.data.template, fail)
    if cfg.trl:
        _check_trl_keys(cfg.trl, fail)
    if cfg.logging.wandb_project:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            fail("logging.wandb_project", "needs wandb: pip install 'torl[wandb]' (or set it to null)")


def _check_tiny_args(args: dict, fail) -> None:
    import inspect

    from torl.models.tiny import build_tiny_model

    params = inspect.signature(build_tiny_model).parameters
    for key in args:
        if key == "out_dir" or key not in params:
            known = ", ".join(k for k in params if k != "out_dir")
            fail(f"model.tiny.{key}", f"not an argument of build_tiny_model (known: {known})")


def _check_benchmarks(names: list[str], fail) -> None:
    try:
        from torl.eval.benchmarks import list_benchmarks
    except ImportError:  # the eval part is not installed: the names are checked when loaded
        return
    known = list_benchmarks()
    for i, name in enumerate(names):
        if name not in known:
            fail(f"validation.benchmarks[{i}]", f"unknown benchmark {name!r} (shipped: {', '.join(known)})")


def _check_template(name: str, fail) -> None:
    from torl.rollout.templates import TEMPLATES

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


def _looks_like_float(s: str) -> bool:
    return bool(re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", s))


def _show(value) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return repr(value)


def _override_keys(overrides) -> set[str]:
    return {item.split("=", 1)[0].strip() for item in overrides if "=" in item}


def _error(where: str, lines: dict[str, int], key: str, msg: str, overridden: set[str]) -> UserInputError:
    if key in overridden or any(key.startswith(o + ".") or key.startswith(o + "[") for o in overridden):
        return UserInputError(f"command-line override {key}: {msg}")
    line = _line_of(lines, key)
    at = f"{where}:{line}" if line else where
    return UserInputError(f"{at}: {key}: {msg}" if key else f"{at}: {msg}")


def _line_of(lines: dict[str, int], key: str) -> int | None:
    while key:
        if key in lines:
            return lines[key]
        key = key.rsplit(".", 1)[0] if "." in key else (key.split("[")[0] if "[" in key else "")
    return None


def _key_lines(text: str) -> dict[str, int]:
    """Dotted key (and key[i] for list items) -> 1-based line number, from the YAML node tree."""
    out: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = f"{prefix}{k.value}"
                out[key] = k.start_mark.line + 1
                walk(v, key + ".")
        elif isinstance(node, yaml.SequenceNode):
            base = prefix.rstrip(".")
            for i, item in enumerate(node.value):
                out[f"{base}[{i}]"] = item.start_mark.line + 1
                walk(item, f"{base}[{i}].")

    root = yaml.compose(text)
    if root is not None:
        walk(root, "")
    return out
