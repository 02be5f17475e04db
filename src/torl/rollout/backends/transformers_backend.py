"""TransformersBackend: HF `generate` on CPU or GPU, batched, per-row stop strings, logprobs of sampled tokens.

Requests pending at the same time share one left-padded `generate` call (see `BatchingBackend`). Two small
hooks into `generate` do the bookkeeping, so nothing big is kept per step:
- `RowStops` (a StoppingCriteria) ends each row at its own EOS, its own token budget, or its own stop strings
  found in the text sampled in this call (never in the context), and records where and why;
- `LogprobRecorder` (a LogitsProcessor, placed before the temperature/top-p warpers) keeps the log-softmax of
  the temperature-scaled logits for one step and reads off the sampled token's log-probability at the next;
- `SeededSampler` (a LogitsProcessor, for requests with a `seed`) samples each row from its own random stream
  after HF's temperature and top-p warpers and leaves only that token possible, so `generate` runs greedy and
  keeps it: a row's tokens depend on its prompt and seed, not on the other rows, the batch size or pad width.

HF's own `stop_strings` would look at the whole sequence (context included), cannot differ per row, and does
not say which row stopped where; hence `RowStops`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from torl.rollout.backends.base import Generation, GenerationRequest
from torl.rollout.backends.batching import BatchingBackend
from torl.rollout.tokens import eos_token_ids


class RowStops(StoppingCriteria):
    """Per-row end of generation: EOS, token budget or stop strings (in the newly sampled text only)."""

    def __init__(self, tokenizer, prompt_len: int, budgets: Sequence[int], stops: Sequence[Sequence[str]],
                 eos_ids: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len
        self.budgets = list(budgets)
        self.stops = [tuple(s for s in row if s) for row in stops]
        self.eos_ids = set(eos_ids)
        # tokens that can hold a stop string: each carries at least one byte of it, plus one that overshoots
        self.window = max([len(s.encode()) for row in self.stops for s in row] or [0]) + 1
        n = len(self.budgets)
        self.end: list[int | None] = [None] * n  # generated tokens kept
        self.reason: list[str] = ["length"] * n
        self.stop_text: list[str | None] = [None] * n

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        produced = input_ids.shape[1] - self.prompt_len
        tail = input_ids[:, -min(self.window, produced):].tolist()
        check_rows, windows = [], []
        for i, row in enumerate(tail):
            if self.end[i] is not None:
                continue
            if row[-1] in self.eos_ids:
                self.end[i], self.reason[i] = produced, "eos"
            elif self.stops[i]:
                check_rows.append(i)
                windows.append(row)
            if self.end[i] is None and produced >= self.budgets[i]:
                self.end[i], self.reason[i] = produced, "length"
        if windows:
            texts = self.tokenizer.batch_decode(windows, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            for i, text in zip(check_rows, texts, strict=True):
                found = [(text.find(s), s) for s in self.stops[i] if s in text]
                if found:
                    self.end[i], self.reason[i], self.stop_text[i] = produced, "stop", min(found)[1]
        done = [e is not None for e in self.end]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class LogprobRecorder(LogitsProcessor):
    """Records log p(sampled token) under softmax(logits / temperature); leaves the scores unchanged."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature if temperature > 0 else 1.0
        self.prev: torch.Tensor | None = None
        self.values: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prev is not None:
            self._take(input_ids[:, -1:])
        self.prev = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def _take(self, tokens: torch.Tensor) -> None:
        self.values.append(self.prev.gather(1, tokens.to(self.prev.device)).squeeze(1))

    def finish(self, sequences: torch.Tensor) -> list[list[float]]:
        if self.prev is not None:
            self._take(sequences[:, -1:])
            self.prev = None
        if not self.values:
            return [[] for _ in range(sequences.shape[0])]
        return torch.stack(self.values, dim=1).tolist()


class SeededSampler(LogitsProcessor):
    """Per-row seeded sampling: row i's token at step t is drawn with the t-th uniform of its own generator
    (seeded by `seeds[i]`), by inverse CDF over softmax(top_p(logits / temperature)) in float64; the returned
    scores are 0 at that token and -inf elsewhere, so greedy selection takes it.

    The uniforms are drawn up front on the CPU (`budgets[i]` per row: the stream of a row never depends on the
    batch), so the device does one small copy per step and no per-row work.
    """

    def __init__(self, seeds: Sequence[int], budgets: Sequence[int], prompt_len: int, temperature: float,
                 top_p: float) -> None:
        self.prompt_len = prompt_len
        self.warpers = [TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))  # HF's own, as in do_sample: same top-p semantics
        self.uniforms = torch.zeros((len(seeds), max(budgets)), dtype=torch.float64)
        for i, (seed, n) in enumerate(zip(seeds, budgets, strict=True)):
            stream = torch.Generator().manual_seed(int(seed))
            self.uniforms[i, :n] = torch.rand(n, generator=stream, dtype=torch.float64)
        self._device_uniforms: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = min(input_ids.shape[1] - self.prompt_len, self.uniforms.shape[1] - 1)  # an extra step: unused
        for warp in self.warpers:
            scores = warp(input_ids, scores)
        if self._device_uniforms is None or self._device_uniforms.device != scores.device:
            self._device_uniforms = self.uniforms.to(scores.device)
        probs = torch.softmax(scores.double(), dim=-1)
        cdf = probs.cumsum(dim=-1)
        target = self._device_uniforms[:, step : step + 1] * cdf[:, -1:]
        token = torch.searchsorted(cdf, target, right=True).clamp_(max=scores.shape[-1] - 1)
        # rounding can put the target at the very top of the CDF: take the last token that has probability
        possible = probs > 0
        last = scores.shape[-1] - 1 - possible.flip(-1).to(torch.int8).argmax(dim=-1, keepdim=True)
        token = torch.where(possible.gather(1, token), token, last)
        return torch.full_like(scores, -math.inf).scatter_(1, token, 0.0)


class TransformersBackend(BatchingBackend):
    """Batched generation with a transformers causal LM.

    model: a path/hub-style name of a local model directory, or an already loaded model (then pass its
        `tokenizer`; the trainer's live model works: it is put in eval mode for generation and restored).
    device, dtype: where/how to load a model given by path (default: cuda if available, else cpu; "auto").
    seed: seeds torch's global generator once, at construction (HF sampling of requests without their own
        `seed` draws from it). Requests with a `seed` are sampled from that seed alone (`SeededSampler`).
    The model's own generation_config (top_k, repetition penalty, ...) is ignored: sampling is exactly the
    request's temperature and top_p.
    """

    name = "transformers"

    def __init__(self, model, tokenizer=None, *, device: str | None = None, dtype: str | torch.dtype = "auto",
                 max_batch_size: int = 64, batch_wait_s: float = 0.02, max_wait_s: float = 1.0,
                 seed: int | None = None, trust_remote_code: bool = False) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_wait_s=batch_wait_s, max_wait_s=max_wait_s)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(model, str | os.PathLike):
            path = str(model)
            tokenizer = tokenizer or path
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
            model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        elif tokenizer is None:
            raise ValueError("TransformersBackend: pass `tokenizer` together with a loaded model")
        if isinstance(tokenizer, str | os.PathLike):
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer), trust_remote_code=trust_remote_code)
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(tokenizer, getattr(model.generation_config, "eos_token_id", None))
        if not self.eos_ids:
            raise ValueError("TransformersBackend: the tokenizer has no EOS token")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        self.max_context = getattr(model.config, "max_position_embeddings", None)
        if seed is not None:
            torch.manual_seed(seed)

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        results: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple[float, float, bool], list[int]] = {}
        for i, r in enumerate(requests):
            budget = self._budget(r)
            if budget <= 0:
                results[i] = Generation([], [], "length", info={"context_full": True})
            else:
                seeded = r.seed is not None and r.temperature > 0
                groups.setdefault((r.temperature, r.top_p, seeded), []).append(i)
        for (temperature, top_p, seeded), idx in groups.items():
            gens = self._generate([requests[i] for i in idx], temperature, top_p, seeded)
            for i, gen in zip(idx, gens, strict=True):
                results[i] = gen
        return results  # type: ignore[return-value]

    def _budget(self, r: GenerationRequest) -> int:
        if self.max_context is None:
            return r.max_new_tokens
        return min(r.max_new_tokens, self.max_context - len(r.prompt_ids))

    def _generate(self, requests: list[GenerationRequest], temperature: float, top_p: float,
                  seeded: bool = False) -> list[Generation]:
        device = self.model.device
        width = max(len(r.prompt_ids) for r in requests)
        input_ids = torch.full((len(requests), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(requests), width), dtype=torch.long)
        for i, r in enumerate(requests):
            input_ids[i, width - len(r.prompt_ids):] = torch.tensor(r.prompt_ids, dtype=torch.long)
            attention[i, width - len(r.prompt_ids):] = 1
        budgets = [self._budget(r) for r in requests]
        stops = RowStops(self.tokenizer, width, budgets, [r.stop for r in requests], self.eos_ids)
        recorder = LogprobRecorder(temperature)
        processors = [recorder]
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        if seeded:  # greedy over the SeededSampler's one-hot scores
            processors.append(SeededSampler([r.seed for r in requests], budgets, width, temperature, top_p))
            sampling = {"do_sample": False}
        config = GenerationConfig(
            max_new_tokens=max(budgets), pad_token_id=self.pad_id, eos_token_id=self.eos_ids, use_cache=True,
            **(sampling if temperature > 0 else {"do_sample": False}),
        )
        model_config, was_training = self.model.generation_config, self.model.training
        self.model.generation_config = GenerationConfig(pad_token_id=self.pad_id, eos_token_id=self.eos_ids)
        self.model.eval()
        try:
            with torch.no_grad():
                sequences = self.model.generate(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config,
                    logits_processor=LogitsProcessorList(processors), stopping_criteria=StoppingCriteriaList([stops]),
                )
        finally:
            self.model.generation_config = model_config
            self.model.train(was_training)
        logprobs = recorder.finish(sequences)
        new = sequences[:, width:].tolist()
        out = []
        for i in range(len(requests)):
            end = stops.end[i] if stops.end[i] is not None else len(new[i])
            out.append(Generation(new[i][:end], logprobs[i][:end], stops.reason[i], stops.stop_text[i]))  # type: ignore[arg-type]
        return out
