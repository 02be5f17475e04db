"""OpenAIBackend: any OpenAI-compatible completions server that returns token ids (`vllm serve`, SGLang).

Each request is one `POST {base_url}/v1/completions` with the context as token ids; the server batches
concurrent requests itself (continuous batching), so samples never wait for each other. The response must
identify the sampled tokens: `choices[0].token_ids`, or logprobs tokens of the form "token_id:123"
(vLLM's `return_tokens_as_token_ids`). Sampling is pinned (top_k, min_p, repetition penalty off) so the
server's generation_config defaults do not change it; pass `extra_body` to add or override fields. A request
with a `seed` sends it (OpenAI's `seed` field; vLLM then samples that request from its own generator).
"""

from __future__ import annotations

import asyncio
import math
import os

import httpx

from torl.rollout.backends.base import Backend, Generation, GenerationRequest


class OpenAIBackend(Backend):
    """Client of `/v1/completions`.

    model: the served model name. tokenizer: the model's tokenizer (object or local path; default: `model`
    as a local path). max_concurrency: requests in flight at once. retries: on connection errors and 429/5xx,
    waiting retry_delay_s, doubled each time.
    """

    name = "openai"

    def __init__(self, model: str, *, base_url: str = "http://127.0.0.1:8000", tokenizer=None,
                 api_key: str | None = None, max_concurrency: int = 256, timeout_s: float = 600.0,
                 retries: int = 3, retry_delay_s: float = 0.5, extra_body: dict | None = None) -> None:
        if tokenizer is None or isinstance(tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer or model))
        self.tokenizer = tokenizer
        self.model = model
        self.url = base_url.rstrip("/").removesuffix("/v1") + "/v1/completions"
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.extra_body = dict(extra_body or {})
        self._client: httpx.AsyncClient | None = None
        self._gate: asyncio.Semaphore | None = None
        self._sessions = 0

    async def open_session(self) -> None:
        self._sessions += 1
        if self._client is None:
            limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
            self._client = httpx.AsyncClient(timeout=self.timeout_s, limits=limits, headers=self.headers)
            self._gate = asyncio.Semaphore(self.max_concurrency)

    async def close_session(self) -> None:
        self._sessions -= 1
        if self._sessions <= 0 and self._client is not None:
            client, self._client, self._gate, self._sessions = self._client, None, None, 0
            await client.aclose()

    def body(self, request: GenerationRequest) -> dict:
        body = {
            "model": self.model,
            "prompt": list(request.prompt_ids),
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "n": 1,
            "logprobs": 1,
            "echo": False,
            "stream": False,
            # vLLM/SGLang extensions: ids back, the stop text kept, nothing else shaping the distribution
            "return_tokens_as_token_ids": True,
            "include_stop_str_in_output": True,
            "top_k": -1,
            "min_p": 0.0,
            "repetition_penalty": 1.0,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:  # vLLM/SGLang: this request's own random stream, whatever the batch
            body["seed"] = request.seed
        body.update(self.extra_body)
        return body

    async def agenerate(self, request: GenerationRequest) -> Generation:
        own_session = self._client is None
        if own_session:
            await self.open_session()
        try:
            async with self._gate:  # type: ignore[union-attr]
                data = await self._post(self.body(request))
        finally:
            if own_session:
                await self.close_session()
        return parse_completion(data, request)

    async def _post(self, body: dict) -> dict:
        delay = self.retry_delay_s
        for attempt in range(self.retries + 1):
            try:
                response = await self._client.post(self.url, json=body)  # type: ignore[union-attr]
            except httpx.TransportError as e:
                if attempt == self.retries:
                    raise RuntimeError(f"openai backend: cannot reach {self.url}: {type(e).__name__}: {e}") from e
            else:
                if response.status_code == 200:
                    return response.json()
                if response.status_code not in (429, 500, 502, 503, 504) or attempt == self.retries:
                    raise RuntimeError(f"openai backend: {self.url} answered {response.status_code}: "
                                       f"{response.text[:500]}")
            await asyncio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")


def parse_completion(data: dict, request: GenerationRequest) -> Generation:
    """A `/v1/completions` response → Generation (token ids, logprobs, finish reason)."""
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise RuntimeError(f"openai backend: malformed response: {str(data)[:300]}") from None
    lp = choice.get("logprobs") or {}
    token_ids = choice.get("token_ids")
    if token_ids is None:
        tokens = lp.get("tokens") or []
        if any(not str(t).startswith("token_id:") for t in tokens):
            raise RuntimeError("openai backend: the server returned token strings, not ids; it must support "
                               "`return_tokens_as_token_ids` (vLLM) or return `token_ids`")
        token_ids = [int(str(t).split(":", 1)[1]) for t in tokens]
        if not tokens and choice.get("text"):
            raise RuntimeError("openai backend: the server returned text without logprobs/token ids")
    token_ids = [int(t) for t in token_ids]
    values = lp.get("token_logprobs") or []
    logprobs = [math.nan if v is None else float(v) for v in values]
    if len(logprobs) != len(token_ids):
        logprobs = [math.nan] * len(token_ids)
    reason = choice.get("finish_reason")
    matched = choice.get("stop_reason", choice.get("matched_stop"))
    if reason == "length":
        return Generation(token_ids, logprobs, "length")
    if reason == "stop":
        if isinstance(matched, str) and matched in request.stop:
            return Generation(token_ids, logprobs, "stop", matched)
        return Generation(token_ids, logprobs, "eos")
    raise RuntimeError(f"openai backend: unexpected finish_reason {reason!r}")
