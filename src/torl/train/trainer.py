"""From a torl config to a running `trl.GRPOTrainer`: GRPOConfig, data, rollout function, reward, callbacks, resume.

    from torl.train import load_config, train
    train(load_config("configs/tiny_cpu.yaml", ["train.max_steps=3"]))

Mapping (TORL-SPEC §5 -> TRL): prompts_per_step x samples_per_prompt responses per step = one generation batch =
one optimizer update (gradient accumulation over micro-batches; steps_per_generation = accumulation steps,
num_iterations = 1, so every step is on-policy); kl_coef 0 -> beta 0 (TRL builds no reference model);
loss_type "dapo" = token-mean over the whole step; temperature/top_p are also given to TRL, which computes the
training log-probabilities at the sampling temperature.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import RepeatSampler

import torl
from torl.errors import UserInputError
from torl.sandbox import make_sandbox
from torl.train.callbacks import TIRStepCallback
from torl.train.config import TINY_MODEL, TorlTrainConfig, gradient_accumulation_steps
from torl.train.data import PromptSet, load_validation_problems, read_train_problems, render_prompts
from torl.train.engine_gap import EngineGapMeter
from torl.train.recorder import StepRecorder
from torl.train.rewards import TIRReward
from torl.train.rollout_func import TIRRolloutFunction, default_backend_factory
from torl.train.rundir import (
    attach_log_file,
    detach_log_file,
    prepare_run_dir,
    record_start,
    tied_missing_keys,
)
from torl.train.tiny_model import build_tiny_model
from torl.train.validation import Validator, validation_rollout_config
from torl.train.vllm_sync import colocated_engine_dtype, install_cpu_weight_sync

log = logging.getLogger(__name__)


class EpochRepeatSampler(RepeatSampler):
    """TRL's RepeatSampler with a shuffle that depends only on (seed, epoch).

    TRL's sampler draws each epoch's order from one generator that advances across epochs, so a run resumed in
    epoch k would replay epoch 0's order. Here the order of epoch k is randperm(seed + k): a resumed run sees
    exactly the prompts the uninterrupted run would have seen. The trainer calls `set_epoch` every epoch.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if self.shuffle:
            self.generator = torch.Generator().manual_seed((self.seed or 0) + self.epoch)
        return super().__iter__()


class TorlGRPOTrainer(GRPOTrainer):
    """GRPOTrainer plus: torl's per-step metrics join each log (`torl_logs`, filled by the step callback), an
    epoch-seeded prompt order (exact data order on resume), the engine/trainer log-prob gap measured on the loss's
    own forward pass (`engine_gap`, see torl.train.engine_gap), and a working weight sync into a colocated engine
    on vLLM's CPU build (torl.train.vllm_sync; CUDA keeps TRL's)."""

    def __init__(self, *args, engine_dtype: str | None = None, **kwargs) -> None:
        self.torl_logs: dict = {}
        self.engine_gap = EngineGapMeter()
        self._loss_inputs: dict | None = None
        with colocated_engine_dtype(engine_dtype):
            super().__init__(*args, **kwargs)
        if self.use_vllm:
            install_cpu_weight_sync(self.vllm_generation)

    def _compute_loss(self, model, inputs):
        self._loss_inputs = inputs  # read by the first log-prob pass below (the loss's)
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._loss_inputs = None

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        inputs, self._loss_inputs = self._loss_inputs, None
        if inputs is not None and inputs.get("sampling_per_token_logps") is not None:
            mask = inputs["completion_mask"]
            if "tool_mask" in inputs:
                mask = mask * inputs["tool_mask"]
            self.engine_gap.add(out[0], inputs["sampling_per_token_logps"], mask)
        return out

    def _get_train_sampler(self, dataset=None):
        dataset = dataset if dataset is not None else self.train_dataset
        return EpochRepeatSampler(
            data_source=dataset,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.torl_logs:
            logs = {**logs, **self.torl_logs}
            self.torl_logs.clear()
        super().log(logs, start_time)

    def _issue_warnings_after_load(self, load_result) -> None:
        """A resumed checkpoint lacks lm_head.weight when the embeddings are tied (saved once, as
        embed_tokens.weight): not missing, so not warned about; any other missing key still is."""
        tied = tied_missing_keys(self.model, load_result.missing_keys)
        super()._issue_warnings_after_load(
            load_result._replace(missing_keys=[k for k in load_result.missing_keys if k not in tied]))


@dataclass
class TrainingRun:
    """Everything `build_trainer` made. Call `close()` when done (stops the sandbox workers)."""

    config: TorlTrainConfig
    trainer: TorlGRPOTrainer
    rollout_func: TIRRolloutFunction
    reward: TIRReward
    callback: TIRStepCallback
    recorder: StepRecorder
    sandbox: object
    prompts: PromptSet
    resume_from: str | None
    model_path: str
    _log_handler: logging.Handler | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._log_handler is not None:
            detach_log_file(self._log_handler)
            self._log_handler = None
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None


# ------------------------------------------------------------------------------------------------ building blocks


def distributed_state():
    """accelerate's PartialState of this launch. Without CUDA it is created with cpu=True: under torchrun /
    `accelerate launch` the processes then form one gloo group (accelerate's default would leave every process
    alone, each training the whole batch as rank 0 of 1)."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    return distributed_state().num_processes


def build_grpo_config(cfg: TorlTrainConfig, processes: int | None = None) -> GRPOConfig:
    """The trl.GRPOConfig of a torl config (`processes`: the world size; default: this launch's)."""
    processes = processes or world_size()
    g, o, t, r, e = cfg.grpo, cfg.optim, cfg.train, cfg.rollout, cfg.engine
    use_vllm = resolve_use_vllm(cfg)
    model_init = {"dtype": cfg.model.dtype}
    if cfg.model.attn_implementation:
        model_init["attn_implementation"] = cfg.model.attn_implementation
    report_to = ["wandb"] if cfg.logging.wandb_project else "none"
    kwargs = dict(
        output_dir=cfg.run_dir,
        run_name=cfg.logging.run_name or Path(cfg.run_dir).name,
        seed=cfg.seed,
        # batch: one generation batch = one optimizer step
        per_device_train_batch_size=g.micro_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps(cfg, processes),
        num_generations=g.samples_per_prompt,
        num_iterations=1,
        shuffle_dataset=cfg.data.shuffle,
        # loss
        loss_type=g.loss_type,
        epsilon=g.clip_ratio,
        epsilon_high=g.clip_ratio_high,
        beta=g.kl_coef,
        entropy_coef=g.entropy_coef,
        scale_rewards=g.scale_rewards,
        mask_truncated_completions=g.mask_truncated,
        # sampling (TRL computes training log-probs at this temperature)
        temperature=r.temperature,
        top_p=r.top_p,
        max_completion_length=r.max_response_tokens,
        # optimizer
        optim="adamw_torch",
        learning_rate=o.lr,
        lr_scheduler_type=o.scheduler,
        warmup_steps=o.warmup_steps,
        weight_decay=o.weight_decay,
        max_grad_norm=o.max_grad_norm,
        adam_beta1=o.betas[0],
        adam_beta2=o.betas[1],
        adam_epsilon=o.eps,
        # schedule, precision, checkpoints, logging
        max_steps=t.max_steps,
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        model_init_kwargs=model_init,
        trust_remote_code=cfg.model.trust_remote_code,
        save_strategy="steps",
        save_steps=t.save_every,
        save_total_limit=t.save_total_limit,
        save_only_model=False,
        logging_strategy="steps",
        logging_steps=1,
        report_to=report_to,
        disable_tqdm=True,
        eval_strategy="no",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        log_completions=False,
        # generation engine
        use_vllm=use_vllm,
        vllm_mode=e.vllm_mode,
        vllm_server_base_url=e.vllm_server_url if use_vllm and e.vllm_mode == "server" else None,
        vllm_gpu_memory_utilization=e.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=e.vllm_tensor_parallel_size,
        vllm_importance_sampling_correction=e.vllm_importance_sampling_correction,
        vllm_importance_sampling_mode=e.vllm_importance_sampling_mode,
        vllm_importance_sampling_clip_max=e.vllm_importance_sampling_cap,
    )
    # transformers >= 5.? renamed gradient_checkpointing to activation_checkpointing (the old name still works)
    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    ckpt = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    kwargs[ckpt] = cfg.model.gradient_checkpointing
    if "use_cache" in names:
        # transformers 5 Trainer writes args.use_cache (default False) into model.config: TRL's own HF generation
        # then runs without a KV cache, and saved checkpoints carry use_cache=false. torl's backend always asks for
        # the cache and TRL's loss forward always turns it off, so True costs nothing in training.
        kwargs["use_cache"] = True
    if not torch.cuda.is_available():
        # transformers resets accelerate's state when it sets up devices; only use_cpu makes a torchrun launch on
        # CPU-only machines one gloo group (else every process trains alone as rank 0 of 1)
        kwargs["use_cpu"] = True
    kwargs.update(cfg.trl)
    try:
        return GRPOConfig(**kwargs)
    except ValueError as err:
        hint = ""
        if t.precision != "fp32" and not torch.cuda.is_available():
            hint = f" (train.precision={t.precision} needs a GPU here; pass train.precision=fp32 on CPU)"
        raise UserInputError(f"invalid trainer settings: {err}{hint}") from None


def _vllm_installed() -> bool:
    from trl.import_utils import is_vllm_available

    return bool(is_vllm_available())


def resolve_use_vllm(cfg: TorlTrainConfig, *, cuda: bool | None = None, vllm_installed: bool | None = None) -> bool:
    """Whether this run generates with vLLM: engine.vllm, with "auto" = a CUDA GPU and vLLM are both present.

    HF generate on a GPU logs a warning: at the recipes' scale it is 3-4x slower per step than vLLM.
    """
    cuda = torch.cuda.is_available() if cuda is None else cuda
    want = cfg.engine.vllm
    if want == "auto":
        want = cuda and (_vllm_installed() if vllm_installed is None else vllm_installed)
    elif want and not (_vllm_installed() if vllm_installed is None else vllm_installed):
        raise UserInputError("engine.vllm is true but vLLM is not installed: pip install 'torl[vllm]' (GPU), "
                             "or set engine.vllm=false")
    if not want and cuda:
        log.warning("generating with HF generate on a GPU (engine.vllm=%s): at the recipes' scale a step takes "
                    "3-4x longer than with vLLM; install vLLM (pip install 'torl[vllm]') and set engine.vllm=true "
                    "or auto", cfg.engine.vllm)
    return bool(want)


def check_generation_sharding(use_vllm: bool, env: dict | None = None) -> None:
    """Refuse HF generate under ZeRO-3 or FSDP.

    There, transformers generates with `synced_gpus` (every decode step is a collective over all ranks), while
    torl's rollout makes a timing-dependent number of `generate` calls per rank (batches form as samples return
    from their tool calls), so ranks would wait in mismatched collectives and hang. vLLM keeps a full copy of the
    weights per engine and needs no collective while sampling. Reads the variables `accelerate launch` sets.
    """
    if use_vllm:
        return
    env = os.environ if env is None else env
    on = {"true", "1", "yes"}
    if env.get("ACCELERATE_USE_FSDP", "").lower() in on:
        raise UserInputError("FSDP with HF generate (engine.vllm=false) would hang: torl's rollout makes a "
                             "different number of generate calls on each rank, and FSDP's generate is a "
                             "collective. Set engine.vllm=true, or use configs/accelerate/multi_gpu.yaml or "
                             "deepspeed_zero2.yaml")
    if env.get("ACCELERATE_USE_DEEPSPEED", "").lower() in on and env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        raise UserInputError("DeepSpeed ZeRO-3 with HF generate (engine.vllm=false) would hang: transformers "
                             "generates with synced_gpus under ZeRO-3 (a collective per decode step) and torl's "
                             "rollout makes a different number of generate calls on each rank. Set "
                             "engine.vllm=true, or use configs/accelerate/deepspeed_zero2.yaml")


def local_sandbox_workers(configured: int | None, *, cores: int | None = None,
                          local_processes: int | None = None) -> int:
    """LocalSandbox pool size per training process: engine.sandbox_workers, or the node's CPU cores divided among
    its training processes (at least 1, at most 32). Every process runs its own pool, so a per-process default
    of 2 x cores would start 2 x cores x processes interpreters per node, and their wall-clock timeouts would
    fire from CPU contention alone."""
    if configured is not None:
        return configured
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = local_processes or int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(32, cores // max(1, local)))


def resolve_model_path(cfg: TorlTrainConfig) -> str:
    """model.path, with `tiny://` built (once per set of arguments, by the main process) into the tiny cache."""
    if cfg.model.path != TINY_MODEL:
        return cfg.model.path

    key = hashlib.sha256(json.dumps(cfg.model.tiny, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cfg.model.tiny_cache or Path.home() / ".cache" / "torl" / "tiny_model").expanduser()
    out = root / key
    with distributed_state().main_process_first():
        if not (out / "config.json").is_file():
            log.info("building the tiny model %s into %s", cfg.model.tiny or "(defaults)", out)
            tmp = root / f".{key}.building"
            build_tiny_model(tmp, **cfg.model.tiny)
            tmp.replace(out)
    return str(out)


def load_policy_tokenizer(path: str, trust_remote_code: bool = False):
    """The policy's tokenizer as GRPO batches need it: left padding, a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, padding_side="left", trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None:
        raise UserInputError(f"model.path: the tokenizer of {path} has no EOS token")
    return tok


def _check_context(model_path: str, cfg: TorlTrainConfig) -> None:
    """Warn when prompt + response can exceed the model's context (such responses end early as truncated)."""
    from transformers import AutoConfig

    try:
        ctx = getattr(AutoConfig.from_pretrained(model_path, trust_remote_code=cfg.model.trust_remote_code),
                      "max_position_embeddings", None)
    except (OSError, ValueError):
        return
    need = cfg.data.max_prompt_tokens + cfg.rollout.max_response_tokens
    if ctx is not None and need > ctx:
        log.warning("data.max_prompt_tokens + rollout.max_response_tokens = %d exceeds the model's context (%d): "
                    "long responses will be cut at the context limit", need, ctx)


def make_run_sandbox(cfg: TorlTrainConfig):
    return make_sandbox(cfg.engine.sandbox, workers=local_sandbox_workers(cfg.engine.sandbox_workers))


# ------------------------------------------------------------------------------------------------ entry points


def build_trainer(cfg: TorlTrainConfig, *, resume: bool = False, backend_factory: Callable | None = None,
                  sandbox=None, callbacks: Sequence = ()) -> TrainingRun:
    """Prepare the run directory and build the trainer with torl's rollout function, reward and callbacks.

    backend_factory: `trainer -> context manager yielding a torl Backend` (default: vLLM if enabled, else HF
    generate on the live model). sandbox: a Sandbox to use (default: from engine.sandbox; closed by `close()`).
    """
    state = distributed_state()
    grpo_args = build_grpo_config(cfg, state.num_processes)  # checks the batch arithmetic before writing anything
    check_generation_sharding(grpo_args.use_vllm)
    run_state = prepare_run_dir(cfg, resume=resume, is_main=state.is_main_process)
    handler = attach_log_file(cfg.run_dir) if state.is_main_process else None
    own_sandbox = sandbox is None
    try:
        if own_sandbox:
            sandbox = make_run_sandbox(cfg)
        run = _assemble(cfg, grpo_args, sandbox, backend_factory, callbacks)
    except BaseException:
        if own_sandbox and sandbox is not None:
            sandbox.close()
        if handler is not None:
            detach_log_file(handler)
        raise
    run.resume_from, run._log_handler = run_state.resume_from, handler
    run.sandbox = sandbox if own_sandbox else None
    if state.is_main_process:
        record_start(cfg.run_dir, {
            "resume_from": run_state.resume_from, "world_size": state.num_processes,
            "gradient_accumulation_steps": grpo_args.gradient_accumulation_steps,
            "model_path": run.model_path, "data": run.prompts.report(), "versions": _versions(),
        })
    return run


def _assemble(cfg: TorlTrainConfig, grpo_args: GRPOConfig, sandbox, backend_factory, callbacks) -> TrainingRun:
    """Model, data, rollout function, reward, validator, callbacks and the trainer itself."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    model_path = resolve_model_path(cfg)
    tokenizer = load_policy_tokenizer(model_path, cfg.model.trust_remote_code)
    _check_context(model_path, cfg)
    prompts = render_prompts(read_train_problems(cfg.data.train_files), tokenizer, template=cfg.data.template,
                             max_prompt_tokens=cfg.data.max_prompt_tokens, length_tokenizer=cfg.data.length_tokenizer)
    if len(prompts.rows) < cfg.grpo.prompts_per_step:
        raise UserInputError(f"data.train_files: {len(prompts.rows)} usable prompts, fewer than "
                             f"grpo.prompts_per_step ({cfg.grpo.prompts_per_step})")

    recorder = StepRecorder()
    factory = backend_factory or (
        lambda tr: default_backend_factory(tr, max_batch_size=cfg.engine.generation_batch_size))
    rollout_func = TIRRolloutFunction(cfg.rollout, sandbox, recorder, backend_factory=factory, seed=cfg.seed)
    reward = TIRReward(cfg.reward, recorder)
    validator = None
    if cfg.validation.every or cfg.validation.at_start:
        val_problems = load_validation_problems(cfg.validation.benchmarks, cfg.validation.files,
                                                cfg.validation.max_items)
        if val_problems:
            val_rollout = validation_rollout_config(cfg.rollout, temperature=cfg.validation.temperature,
                                                    max_response_tokens=cfg.validation.max_response_tokens)
            validator = Validator(val_problems, run_dir=cfg.run_dir, sandbox=sandbox, template=cfg.data.template,
                                  rollout_config=val_rollout, reward_config=cfg.reward, backend_factory=factory,
                                  seed=cfg.seed)
    step_cb = TIRStepCallback(cfg.run_dir, recorder, dump_samples=cfg.train.dump_samples, validator=validator,
                              validate_every=cfg.validation.every, validate_at_start=cfg.validation.at_start,
                              tensorboard=cfg.logging.tensorboard, progress=cfg.logging.progress)
    if cfg.logging.wandb_project:
        os.environ.setdefault("WANDB_PROJECT", cfg.logging.wandb_project)

    with warnings.catch_warnings():  # TRL flags rollout_func as experimental; torl pins the TRL it is tested on
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
        trainer = TorlGRPOTrainer(
            model=model_path,
            reward_funcs=[reward],
            args=grpo_args,
            train_dataset=Dataset.from_list(prompts.rows),
            processing_class=tokenizer,
            rollout_func=rollout_func,
            callbacks=[step_cb, *callbacks],
            engine_dtype=("float32" if grpo_args.use_vllm and grpo_args.vllm_mode == "colocate"
                          and cfg.train.precision == "fp32" else None),
        )
    trainer.remove_callback(PrinterCallback)  # our callback shows the progress
    step_cb.bind(trainer)
    return TrainingRun(cfg, trainer, rollout_func, reward, step_cb, recorder, sandbox, prompts, None, model_path)


def train(cfg: TorlTrainConfig, *, resume: bool = False, backend_factory: Callable | None = None) -> TrainingRun:
    """Build the trainer, train to `train.max_steps` (continuing from the last checkpoint with `resume`), save
    the final model in RUN_DIR/final. Returns the (closed) TrainingRun."""
    run = build_trainer(cfg, resume=resume, backend_factory=backend_factory)
    try:
        run.trainer.train(resume_from_checkpoint=run.resume_from)
        if cfg.train.save_final_model:
            final = Path(cfg.run_dir) / "final"
            run.trainer.save_model(str(final))
            if run.trainer.accelerator.is_main_process:
                run.trainer.processing_class.save_pretrained(str(final))
    finally:
        run.close()
    return run


def _versions() -> dict:
    import accelerate
    import transformers
    import trl

    return {"torl": torl.__version__, "trl": trl.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "torch": torch.__version__,
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}


__all__ = ["EpochRepeatSampler", "TorlGRPOTrainer", "TrainingRun", "build_grpo_config", "build_trainer",
           "check_generation_sharding", "gradient_accumulation_steps", "local_sandbox_workers",
           "resolve_model_path", "resolve_use_vllm", "train"]
