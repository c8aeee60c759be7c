"""Any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama, SGLang) as a `Model`.

The requests themselves (images, retries, errors, complete replies) are agent.models.transport's,
shared with synthesis; this adds what the agent loop and the tools need: the `Model` interface,
a slot limit, and the endpoint's first model when none is named.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.models.base import ChatMessage, Chunk, Model, ModelError
from agent.models.transport import Request, Transport
from core import defaults


class OpenAICompatModel(Model):
    """A chat model behind an OpenAI-compatible HTTP endpoint; `model=None` takes the first one it serves."""

    def __init__(
        self,
        model: str | None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_pixels: int = defaults.MAX_PIXELS,
        slots: int = defaults.REMOTE_CONCURRENCY,
        timeout: float = defaults.REQUEST_TIMEOUT,
        max_retries: int = defaults.MAX_RETRIES,
        backoff: float = defaults.BACKOFF,
    ) -> None:
        super().__init__(slots)
        self.transport = Transport(base_url, api_key, timeout=timeout, max_retries=max_retries, backoff=backoff,
                                   max_pixels=max_pixels)
        self.base_url = self.transport.base_url
        self._model = model

    @property
    def name(self) -> str:
        return self._model or f"(first model at {self.base_url})"

    def model_id(self) -> str:
        """The model to ask for; when none was configured, the first one the endpoint lists."""
        if self._model is None:
            ids = self.transport.models()
            if not ids:
                raise ModelError(f"{self.base_url} serves no models — set MAT_MODEL")
            self._model = ids[0]
        return self._model

    def _stream(self, messages: list[ChatMessage], stop: list[str], max_new_tokens: int) -> Iterator[Chunk]:
        request = Request(self.model_id(), self.transport.messages(messages), max_new_tokens, stop)
        yield from self.transport.stream(request)
