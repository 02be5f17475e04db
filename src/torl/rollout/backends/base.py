"""The backend interface: token ids in → sampled token ids, logprobs and why it stopped out."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["eos", "stop", "length"]


@dataclass
class GenerationRequest:
    """One round of one sample.

    prompt_ids: the whole context (prompt + the response so far).
    max_new_tokens: the most tokens to sample.
    stop: strings that end the round when the text sampled *in this round* contains one.
    sample_index, round_index: which sample and round this is (for replay and logging; engines ignore them).
    seed: this round's own sampling seed (None: the engine's shared random state). A backend that honours it
        draws the round's tokens from this seed alone, so the sample does not depend on batching or timing.
    """

    prompt_ids: list[int]
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    temperature: float = 1.0
    top_p: float = 1.0
    sample_index: int = 0
    round_index: int = 0
    seed: int | None = None


@dataclass
class Generation:
    """What a backend sampled for one request.

    token_ids: every sampled token, including an EOS token and the tokens of a matched stop string (a backend
        whose engine drops the stop text returns fewer; the engine restores it).
    logprobs: one per token: log-probability under the temperature-scaled distribution (NaN if unknown).
    finish_reason: "eos", "stop" (a stop string; `stop_text` says which) or "length".
    """

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    stop_text: str | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(f"{len(self.token_ids)} token ids but {len(self.logprobs)} logprobs")
        if self.finish_reason not in ("eos", "stop", "length"):
            raise ValueError(f"finish_reason must be eos|stop|length, got {self.finish_reason!r}")


class Backend(abc.ABC):
    """A text generator the rollout loop drives. `tokenizer` is a transformers tokenizer of the model.

    `agenerate` may be called for many requests at once; a backend serves them concurrently (a server with
    continuous batching) or groups them into batches (`BatchingBackend`).
    """

    name: str = "backend"
    tokenizer: Any = None

    @abc.abstractmethod
    async def agenerate(self, request: GenerationRequest) -> Generation:
        """Sample one continuation of `request.prompt_ids`."""

    async def open_session(self) -> None:  # noqa: B027 - optional hook
        """Called by the engine in its event loop before a run (open connections bound to that loop)."""

    async def close_session(self) -> None:  # noqa: B027 - optional hook
        """Called by the engine in the same event loop after the run."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, connections). Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
