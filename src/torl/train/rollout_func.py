"""The rollout function for `trl.GRPOTrainer(rollout_func=...)`: torl's tool-integrated loop on the live policy.

TRL 1.16 calls `rollout_func(prompts, trainer)` once per generation batch with this process's prompts, each
already repeated `num_generations` times in a row (its docstring says otherwise; `check_groups` fails loudly if
that ever changes). We return one response per prompt:

  prompt_ids, completion_ids   the exact sampled token ids (+ tokenised observations), never re-tokenised text
  logprobs                     the sampler's per-token log-probabilities (0.0 on observation tokens)
  env_mask                     1 on model tokens, 0 on observation tokens: TRL multiplies it into the loss mask,
                               so observations stay in the context but contribute nothing to the loss
  rollout_index, ...           per-sample extras that TRL forwards to the reward functions

Generation uses the trainer's current weights: HF `generate` on the unwrapped model (ZeRO-3 parameters gathered),
or TRL's vLLM engine (colocate: the same `vllm.LLM`; server: the `trl vllm-serve` OpenAI endpoint), whose
weights TRL syncs before calling us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from torl.rollout import RolloutConfig, RolloutResult, make_backend
from torl.rollout.backends.transformers_backend import TransformersBackend
from torl.rollout.devices import bind_device, resolve_device
from torl.rollout.loop import arun_rollouts
from torl.rollout.seeds import sample_seeds
from torl.train.recorder import StepRecorder
from torl.train.vllm_sync import server_generation_barrier

log = logging.getLogger(__name__)

BackendFactory = Callable[["object"], contextlib.AbstractContextManager]


def check_groups(prompts: Sequence, num_generations: int) -> None:
    """Fail unless `prompts` is whole runs of `num_generations` identical prompts (TRL 1.16's behaviour)."""
    if len(prompts) % num_generations:
        raise RuntimeError(f"rollout_func got {len(prompts)} prompts, not a multiple of num_generations="
                           f"{num_generations}: this TRL version batches prompts differently than 1.16")
    for start in range(0, len(prompts), num_generations):
        group = prompts[start : start + num_generations]
        if any(p != group[0] for p in group):
            raise RuntimeError("rollout_func expects each prompt repeated num_generations times in a row "
                               "(TRL 1.16); this TRL version passes prompts differently")


class AutocastTransformersBackend(TransformersBackend):
    """torl's TransformersBackend under the trainer's mixed precision (bf16 compute on fp32 master weights, as in
    the loss). Autocast is per thread and the backend generates in a worker thread, hence here."""

    def __init__(self, model, tokenizer, *, autocast: Callable[[], contextlib.AbstractContextManager],
                 **kwargs) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self._autocast = autocast

    def generate_batch(self, requests):
        with self._autocast():
            return super().generate_batch(requests)


@contextlib.contextmanager
def hf_backend(trainer, *, max_batch_size: int = 64) -> Iterator:
    """A torl TransformersBackend on the trainer's unwrapped, current model (ZeRO-3: gathered for the call)."""
    from trl.models import unwrap_model_for_generation

    with unwrap_model_for_generation(
        trainer.model_wrapped,
        trainer.accelerator,
        gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
        gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
    ) as model:
        backend = AutocastTransformersBackend(model, trainer.processing_class, max_batch_size=max_batch_size,
                                              autocast=trainer.accelerator.autocast)
        try:
            yield backend
        finally:
            backend.close()


@contextlib.contextmanager
def vllm_backend(trainer, *, max_batch_size: int = 1024, server_url: str | None = None) -> Iterator:
    """A torl backend on TRL's vLLM engine: the colocated `vllm.LLM`, or the `trl vllm-serve` server."""
    gen = trainer.vllm_generation
    if gen.mode == "colocate":
        if gen.tensor_parallel_size != 1:
            raise NotImplementedError("torl's rollout needs vllm_tensor_parallel_size=1 in colocate mode "
                                      "(each process rolls out its own prompts); use server mode for TP > 1")
        # continuous batching (the backend's default); its engine thread makes the rank's GPU current
        backend = make_backend("vllm", gen.llm, tokenizer=trainer.processing_class, max_batch_size=max_batch_size,
                               device=trainer.accelerator.device)
    else:
        url = server_url or gen.server_base_url or f"http://{gen.server_host}:{gen.server_port}"
        backend = make_backend("openai", served_model_name(url), base_url=url, tokenizer=trainer.processing_class)
    try:
        yield backend
    finally:
        backend.close()


def served_model_name(base_url: str) -> str:
    """The model id an OpenAI-compatible server serves (GET /v1/models)."""
    import httpx

    url = base_url.rstrip("/").removesuffix("/v1") + "/v1/models"
    return httpx.get(url, timeout=30).json()["data"][0]["id"]


def default_backend_factory(trainer, *, max_batch_size: int = 64, server_url: str | None = None):
    """vLLM when the trainer uses it, else HF generate."""
    if getattr(trainer, "use_vllm", False):
        return vllm_backend(trainer, server_url=server_url)
    return hf_backend(trainer, max_batch_size=max_batch_size)


def run_rollouts_on_device(prompts: list, *, backend, sandbox, config: RolloutConfig, seeds=None,
                           device=None) -> list[RolloutResult]:
    """`run_rollouts` in a fresh event loop whose worker threads (`asyncio.to_thread`, where the backends run
    their blocking engine calls) first make `device` their current CUDA device. Without this, a rank's engine
    calls would run on GPU 0 while its model lives on GPU k. The loop runs in this thread (TRL calls the rollout
    function outside any event loop). An index-less "cuda" is resolved here, in the calling thread."""
    device = resolve_device(device)
    bind_device(device)

    async def main():
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(thread_name_prefix="torl-gen", initializer=bind_device, initargs=(device,)))
        return await arun_rollouts(prompts, backend=backend, sandbox=sandbox, config=config, seeds=seeds)

    return asyncio.run(main())


def to_trl_output(results: Sequence[RolloutResult], *, eos_token_id: int, first_index: int = 0) -> dict:
    """RolloutResults -> the dict GRPOTrainer expects from a rollout function (see the module docstring).

    An empty response (the context was already full) gets one EOS token with mask 0, so TRL's tensors and its
    truncation check have a token to look at while nothing is trained on it.
    """
    prompt_ids, completion_ids, logprobs, env_mask = [], [], [], []
    for r in results:
        ids, mask, lps = list(r.completion_ids), list(r.mask), list(r.logprobs)
        if not ids:
            ids, mask, lps = [eos_token_id], [0], [0.0]
        if not (len(ids) == len(mask) == len(lps)):
            raise RuntimeError(f"rollout result has {len(ids)} ids, {len(mask)} mask values, {len(lps)} logprobs")
        prompt_ids.append(list(r.prompt_ids))
        completion_ids.append(ids)
        env_mask.append(mask)
        logprobs.append([float(x) if x is not None else math.nan for x in lps])
    return {
        "prompt_ids": prompt_ids,
        "completion_ids": completion_ids,
        "logprobs": logprobs,
        "env_mask": env_mask,
        # extras, forwarded by TRL to the reward functions (one value per sample)
        "rollout_index": list(range(first_index, first_index + len(results))),
        "num_executions": [int(r.num_executions) for r in results],
        "tool_statuses": [[c.result.status for c in r.tool_calls] for r in results],
        "tool_printed": [[bool(c.result.stdout) for c in r.tool_calls] for r in results],
    }


class TIRRolloutFunction:
    """`rollout_func` for GRPOTrainer: runs torl's TIR rollout for a batch of (already repeated) prompts.

    config: the training RolloutConfig. sandbox: where code runs. recorder: receives the rollouts (the reward
    function and the step callback read them). backend_factory: `trainer -> context manager yielding a torl
    Backend` (default: vLLM if the trainer uses it, else HF generate on the live model).
    seed: the run's seed; sample i of a call gets the seed derive_seed(seed, step, process index, i), so a
    step's samples depend on (seed, step, prompt, sample) only (None: the backend's shared random state).
    """

    def __init__(self, config: RolloutConfig, sandbox, recorder: StepRecorder, *,
                 backend_factory: BackendFactory | None = None, generation_batch_size: int = 64,
                 check_prompt_groups: bool = True, seed: int | None = None) -> None:
        self.config = config
        self.seed = seed
        self.sandbox = sandbox
        self.recorder = recorder
        self.backend_factory = backend_factory or (
            lambda trainer: default_backend_factory(trainer, max_batch_size=generation_batch_size))
        self.check_prompt_groups = check_prompt_groups
        self.calls: list[int] = []  # number of prompts per call (observability, tests)

    def __call__(self, prompts: list, trainer) -> dict:
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError("torl's rollout function takes plain-text prompts (rendered with a torl template)")
        if self.check_prompt_groups and trainer.model.training:
            check_groups(prompts, trainer.num_generations)
        self.calls.append(len(prompts))
        start = time.perf_counter()
        mode = "train" if trainer.model.training else "eval"
        seeds = sample_seeds(self.seed, len(prompts), mode, trainer.state.global_step,
                             trainer.accelerator.process_index)
        server_generation_barrier(trainer)  # server mode: rank 0's weight push is done before anyone samples
        with self.backend_factory(trainer) as backend:
            results = run_rollouts_on_device(list(prompts), backend=backend, sandbox=self.sandbox,
                                             config=self.config, seeds=seeds, device=trainer.accelerator.device)
        seconds = time.perf_counter() - start
        first = self.recorder.add_rollouts(results, seconds)
        eos = trainer.processing_class.eos_token_id
        return to_trl_output(results, eos_token_id=eos, first_index=first)
