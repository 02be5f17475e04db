"""VLLMBackend: vLLM's offline engine (`vllm.LLM`, e.g. TRL's colocated one), driven request by request.

Continuous batching (default): every `agenerate` call becomes one engine request (`LLMEngine.add_request`), and
one engine thread runs `LLMEngine.step()` while any request is unfinished, adding new requests between steps.
A sample that comes back from its tool call re-enters the running batch at the next step, instead of waiting
for a blocking `LLM.generate` over a whole batch (the reference's long tail per round). `continuous=False`
keeps the old blocking batches (`BatchingBackend` + `LLM.generate`), the baseline of
`benchmarks/vllm_rollout_bench.py`.

Per request: its own SamplingParams (temperature, top_p, max_tokens, stop strings kept in the output, the
sampled token's logprob, `seed` → a per-request generator, so a sample's tokens do not depend on what else is
in the batch). Logprobs are what the LLM's `logprobs_mode` says: an LLM built here uses "processed_logprobs"
(after temperature and top-p, as TRL's colocated engine does), which is what `Generation.logprobs` promises and
what the trainer's temperature-scaled forward pass computes (equal when top_p = 1). An LLM in "raw_logprobs"
mode reports the untempered distribution: its logprobs are kept only when that is the same distribution
(temperature 1 or 0, top_p 1) and are NaN otherwise.

The engine thread makes the rank's CUDA device current (`device`, resolved by `torl.rollout.devices` in the
thread that builds the backend; default: that thread's current device), since the current device is per thread.
An error in the engine thread (start-up, an abort, a step) fails every waiting request with it, and the backend
refuses later ones: the rollout raises at once instead of hanging (and with it the other ranks, in NCCL). On a machine without CUDA, vLLM's CPU
defaults are set (small KV cache, no torch.compile, in-process engine) unless the environment already sets them.
Only one driver may use an LLM at a time: don't call `llm.generate` or update weights while a rollout runs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import queue
import threading
import uuid
from dataclasses import dataclass

from torl.rollout import devices
from torl.rollout.backends.base import Generation, GenerationRequest
from torl.rollout.backends.batching import BatchingBackend

log = logging.getLogger(__name__)

# vLLM's CPU build: ~10 GiB of KV cache, gcc on first use and an engine process per LLM otherwise
CPU_ENV_DEFAULTS = {"VLLM_CPU_KVCACHE_SPACE": "1", "TORCH_COMPILE_DISABLE": "1",
                    "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs")
_WARNED: set[int] = set()  # engines already warned about (one warning per engine, not per rollout)


def on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def set_cpu_env_defaults() -> None:
    """Set vLLM's CPU-build defaults (only where no CUDA device exists; values already set win)."""
    if on_cpu():
        for key, value in CPU_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)


@dataclass
class EngineStats:
    """Continuous mode: engine steps run, requests served, requests that joined a batch already running (a
    sample back from its tool call while others generate), and the sum over steps of requests in flight."""

    steps: int = 0
    requests: int = 0
    joined: int = 0
    running_sum: int = 0

    @property
    def mean_running(self) -> float:
        return self.running_sum / self.steps if self.steps else 0.0


class VLLMBackend(BatchingBackend):
    """model: a model path (an `LLM` is built with `llm_kwargs`) or an existing `vllm.LLM` (TRL's:
    `trainer.vllm_generation.llm`). tokenizer: object or path (default: the model path's, or the LLM's).
    continuous: drive the engine request by request (True) or in blocking `LLM.generate` batches (False;
    max_batch_size, batch_wait_s, max_wait_s shape those batches). device: the CUDA device the engine thread
    makes current (default: the current device here, when CUDA is available). seed: the built LLM's seed.
    """

    name = "vllm"

    def __init__(self, model, tokenizer=None, *, continuous: bool = True, device=None, max_batch_size: int = 1024,
                 batch_wait_s: float = 0.02, max_wait_s: float = 1.0, seed: int | None = None,
                 **llm_kwargs) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_wait_s=batch_wait_s, max_wait_s=max_wait_s)
        set_cpu_env_defaults()
        try:
            import vllm
        except ImportError as e:
            raise ImportError("the vllm backend needs vLLM: pip install 'torl[vllm]'") from e
        self._vllm = vllm
        self.owns_llm = isinstance(model, str | os.PathLike)
        if self.owns_llm:
            llm_kwargs.setdefault("logprobs_mode", "processed_logprobs")
            if on_cpu():  # see _check_cpu_seeds
                llm_kwargs.setdefault("enable_chunked_prefill", False)
            model = vllm.LLM(model=str(model), seed=seed if seed is not None else 0, **llm_kwargs)
        elif llm_kwargs:
            raise TypeError(f"LLM arguments {sorted(llm_kwargs)} given with an existing vllm.LLM")
        self.llm = model
        self.engine = model.llm_engine
        self.logprobs_mode = str(getattr(self.engine.model_config, "logprobs_mode", "raw_logprobs"))
        _check_cpu_seeds(self.engine)
        if self.logprobs_mode not in LOGPROBS_MODES:
            raise ValueError(f"the vllm backend needs an LLM with logprobs_mode in {LOGPROBS_MODES}, "
                             f"got {self.logprobs_mode!r} (logits are not logprobs)")
        if tokenizer is None and self.owns_llm:
            tokenizer = model.llm_engine.model_config.tokenizer
        if tokenizer is None:
            tokenizer = model.get_tokenizer()
        elif isinstance(tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self.tokenizer = tokenizer
        self.continuous = continuous
        # resolved here: an index-less "cuda" means this thread's current device, not the engine thread's
        self.device = devices.resolve_device(device) if device is not None else _current_cuda_device()
        self.num_threads = _torch_threads()
        self.engine_stats = EngineStats()
        self.lock = threading.Lock()  # held while this backend drives the engine
        self._ids = itertools.count()
        self._prefix = f"torl-{uuid.uuid4().hex[:8]}"  # unique across backends sharing one LLM
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._waiting: dict[str, tuple[GenerationRequest, asyncio.Future]] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        self._error: BaseException | None = None  # what ended the engine thread
        self._state = threading.Lock()  # orders a request's enqueueing against the thread's failure

    # ---- requests ----------------------------------------------------------------------------------------
    def sampling_params(self, r: GenerationRequest):
        from vllm.sampling_params import RequestOutputKind

        return self._vllm.SamplingParams(
            n=1, temperature=r.temperature, top_p=r.top_p, top_k=0, min_p=0.0, repetition_penalty=1.0,
            max_tokens=r.max_new_tokens, stop=list(r.stop) or None, include_stop_str_in_output=True, logprobs=0,
            seed=r.seed, output_kind=RequestOutputKind.FINAL_ONLY,
        )

    def generation_from(self, completion, request: GenerationRequest) -> Generation:
        """This backend's Generation of a vLLM completion: NaN log-probs where vLLM's raw ones are not the
        distribution sampled from (temperature or top-p applied)."""
        gen = completion_to_generation(completion, request)
        tempered = request.temperature not in (0.0, 1.0) or request.top_p < 1
        if self.logprobs_mode == "raw_logprobs" and tempered:  # not the distribution sampled from
            gen.logprobs = [math.nan] * len(gen.logprobs)
        return gen

    # ---- continuous batching -----------------------------------------------------------------------------
    async def agenerate(self, request: GenerationRequest) -> Generation:
        if not self.continuous:
            return await super().agenerate(request)
        future = asyncio.get_running_loop().create_future()
        rid = f"{self._prefix}-{next(self._ids)}"
        with self._state:  # either the engine thread sees this request, or it has failed and we see its error
            self._raise_if_unusable()
            self._start_thread()
            self._inbox.put(("add", rid, request, future))
        try:
            return await future
        except asyncio.CancelledError:
            self._inbox.put(("abort", rid, None, None))
            raise

    def _raise_if_unusable(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the vllm backend's engine thread failed: {self._error!r}") from self._error
        if self._closed:
            raise RuntimeError("the vllm backend is closed")

    def _start_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="torl-vllm-engine", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        """The engine thread. Any error here (start-up, an abort, a step) leaves the engine in an unknown state:
        every waiting and queued request fails with it and later ones are refused (`_raise_if_unusable`), so the
        rollout raises at once instead of waiting for futures nobody will resolve. `close()` still shuts down an
        LLM built here."""
        try:
            _init_thread(self.device, self.num_threads)
            self._serve()
        except BaseException as e:  # noqa: BLE001 - handed to every request, waiting or later
            log.exception("vLLM engine thread failed")
            with self._state:
                self._error = e  # from now on the backend refuses requests, as a closed one does
                queued = self._take_queued()
            self._fail_all(e)
            _fail_queued(queued, e)

    def _take_queued(self) -> list:
        """Take every message still queued (called under `_state`, after which nothing more is queued)."""
        queued = []
        while True:
            try:
                queued.append(self._inbox.get_nowait())
            except queue.Empty:
                return queued

    def _serve(self) -> None:
        """Take new requests between steps, step while any is unfinished, hand results out."""
        engine = self.engine
        while True:
            busy = bool(self._waiting)
            try:
                msg = self._inbox.get(block=not busy)
            except queue.Empty:
                msg = None
            with self.lock:
                running = busy  # requests already stepped: what is added now joins a running batch
                while msg is not None:
                    if msg[0] == "close":
                        self._fail_all(RuntimeError("the vllm backend was closed during generation"))
                        with self._state:
                            queued = self._take_queued()
                        _fail_queued(queued, RuntimeError("the vllm backend was closed before this request "
                                                          "reached the engine"))
                        return
                    self._handle(engine, *msg, running=running)
                    try:
                        msg = self._inbox.get_nowait()
                    except queue.Empty:
                        msg = None
                if not self._waiting:
                    continue
                outputs = engine.step()  # an error ends the thread (see _run)
                self.engine_stats.steps += 1
                self.engine_stats.running_sum += len(self._waiting)
                for out in outputs:
                    if out.finished and out.request_id in self._waiting:
                        request, future = self._waiting.pop(out.request_id)
                        try:
                            result = self.generation_from(out.outputs[0], request)
                        except Exception as e:  # noqa: BLE001
                            result = e
                        _resolve(future, result)

    def _handle(self, engine, kind: str, rid: str, request: GenerationRequest | None, future, *,
                running: bool) -> None:
        if kind == "abort":
            if self._waiting.pop(rid, None) is not None:
                engine.abort_request([rid])
            return
        if future.done():  # cancelled before it reached the engine
            return
        try:
            engine.add_request(rid, self._engine_input(request.prompt_ids), self.sampling_params(request))
        except Exception as e:  # noqa: BLE001 - a bad request fails alone
            _resolve(future, e)
            return
        self.engine_stats.requests += 1
        self.engine_stats.joined += running
        self._waiting[rid] = (request, future)

    def _engine_input(self, prompt_ids):
        prompt = {"prompt_token_ids": [int(t) for t in prompt_ids]}
        renderer = getattr(self.llm, "renderer", None)
        if renderer is None or not hasattr(renderer, "render_cmpl"):
            return prompt
        (rendered,) = renderer.render_cmpl([prompt])
        return rendered

    def _fail_all(self, error: BaseException) -> None:
        waiting, self._waiting = self._waiting, {}
        if waiting:
            try:
                self.engine.abort_request(list(waiting))
            except Exception:  # noqa: BLE001 - the engine may be what failed
                log.debug("abort after failure failed", exc_info=True)
        for _, future in waiting.values():
            _resolve(future, error)

    # ---- blocking batches (continuous=False) ----------------------------------------------------------------
    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        _init_thread(self.device, self.num_threads)
        with self.lock:
            outputs = self.llm.generate(
                [{"prompt_token_ids": [int(t) for t in r.prompt_ids]} for r in requests],
                [self.sampling_params(r) for r in requests],
                use_tqdm=False,
            )
        return [self.generation_from(out.outputs[0], r) for out, r in zip(outputs, requests, strict=True)]

    def close(self) -> None:
        """Stop the engine thread (failing any request still in flight). An LLM built here is shut down; one
        passed in (TRL's) stays usable."""
        with self._state:  # ordered against agenerate's enqueueing: no request is queued after "close"
            if self._closed:
                return
            self._closed = True
            thread = self._thread if self._thread is not None and self._thread.is_alive() else None
            if thread is not None:
                self._inbox.put(("close", "", None, None))
        if thread is not None:
            thread.join(timeout=60)
        if self.owns_llm and self.llm is not None:
            try:
                self.engine.engine_core.shutdown()
            except Exception:  # noqa: BLE001 - best effort at exit
                log.debug("vLLM engine shutdown failed", exc_info=True)
            self.llm = self.engine = None


def completion_to_generation(completion, request: GenerationRequest) -> Generation:
    """A vLLM `CompletionOutput` → Generation. vLLM says finish_reason "stop" for both EOS (stop_reason None or
    the EOS token id) and a stop string (stop_reason the string); "length" for the budget or the model length."""
    ids = [int(t) for t in completion.token_ids]
    logprobs = []
    for tid, entry in zip(ids, completion.logprobs or [], strict=False):
        lp = entry.get(tid) if entry else None
        logprobs.append(float(lp.logprob) if lp is not None else math.nan)
    logprobs += [math.nan] * (len(ids) - len(logprobs))
    if completion.finish_reason == "length":
        return Generation(ids, logprobs, "length")
    if completion.finish_reason != "stop":
        raise RuntimeError(f"vllm backend: request ended with finish_reason {completion.finish_reason!r}")
    stop = completion.stop_reason
    if isinstance(stop, str):
        if stop not in request.stop:
            raise RuntimeError(f"vllm backend: the engine stopped at {stop!r}, not a stop string of the request")
        return Generation(ids, logprobs, "stop", stop)
    return Generation(ids, logprobs, "eos")


def _fail_queued(queued: list, error: BaseException) -> None:
    """Fail the requests among queued messages that never reached the engine."""
    for kind, _, _, future in queued:
        if kind == "add":
            _resolve(future, error)


def _resolve(future: asyncio.Future, result) -> None:
    """Hand a result (or exception) to a future of another thread's event loop."""

    def set_it() -> None:
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    try:
        future.get_loop().call_soon_threadsafe(set_it)
    except RuntimeError:  # that loop is closed: nobody waits any more
        pass


def _check_cpu_seeds(engine) -> None:
    """vLLM's CPU build fails a step ("CPU Generator does not use offset") when a seeded request's prompt is
    prefilled in chunks (it rewinds the request's generator, which only CUDA generators can do); an LLM built
    here turns chunked prefill off on CPU."""
    scheduler = getattr(getattr(engine, "vllm_config", None), "scheduler_config", None)
    if on_cpu() and getattr(scheduler, "enable_chunked_prefill", False) and id(engine) not in _WARNED:
        _WARNED.add(id(engine))
        log.warning("vLLM on CPU with chunked prefill: a seeded request whose prompt is prefilled in chunks makes "
                    "the engine step fail (CPU generators have no offset); build the LLM with "
                    "enable_chunked_prefill=False")


def _current_cuda_device() -> int | None:
    import torch

    if devices.cuda_available() and torch.cuda.is_initialized():
        return devices.current_cuda_index()
    return None


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _init_thread(device, num_threads: int) -> None:
    """Give a thread that drives the engine the per-thread state of the thread that built it: the current CUDA
    device (the rank's), and on CPU the intra-op thread count (vLLM's CPU attention checks that the count it
    planned with is the one it runs with; a new thread starts with OpenMP's default)."""
    import torch

    devices.bind_device(device)
    if torch.get_num_threads() != num_threads:
        torch._C._set_num_threads(num_threads)  # vLLM's CPU worker replaces torch.set_num_threads by a no-op
