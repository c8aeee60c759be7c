"""Any OpenAI-compatible chat endpoint (OpenAI, Azure, vLLM, Ollama, SGLang) through the `openai` client.

Images travel as base64 data URLs inside content parts. A request that fails transiently (429, 5xx,
timeout, refused connection) is retried with exponential backoff; every other failure, and a stream that
breaks once text has arrived, becomes a one-line ModelError that says what to fix. The API key is never
put into a message or a log line.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Iterator

from agent.models.base import ChatMessage, Chunk, Model, ModelError
from agent.models.stopping import cut_at_stop

MAX_STOP = 4  # OpenAI rejects more than four stop sequences
DEFAULT_MAX_PIXELS = 1024 * 28 * 28
RETRY_STATUS = {408, 429}


@functools.lru_cache(maxsize=64)
def _cached_data_url(path: str, mtime_ns: int, max_pixels: int) -> str:
    from agent.models.images import to_data_url

    return to_data_url(path, max_pixels)


def _data_url(path: str, max_pixels: int) -> str:
    """The image as a data URL, encoded once per file version: the loop resends task images every step."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        raise ModelError(f"image not found: {path}") from None
    return _cached_data_url(str(path), mtime, max_pixels)


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a connection failure, in a few words."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    if isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        return "connection refused"
    if isinstance(exc, TimeoutError) or "timed out" in str(exc).lower():
        return "timed out"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class OpenAICompatModel(Model):
    """A chat model behind an OpenAI-compatible HTTP endpoint; `model=None` takes the first one it serves."""

    def __init__(
        self,
        model: str | None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        slots: int = 8,
        timeout: float = 60,
        max_retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        super().__init__(slots)
        import openai

        if not api_key and not base_url:
            raise ModelError(
                "no API key for api.openai.com — set MAT_API_KEY or OPENAI_API_KEY, or MAT_BASE_URL for a local server"
            )
        # Local servers (vLLM, Ollama) accept any key, but the client insists on one.
        self._api_key = api_key or "EMPTY"
        self._client = openai.OpenAI(base_url=base_url, api_key=self._api_key, timeout=timeout, max_retries=0)
        self.base_url = str(self._client.base_url).rstrip("/")
        self._model = model
        self.max_pixels = max_pixels
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        # Options some servers reject; dropped (or renamed) once a server says so, then remembered.
        self._stream_usage = True
        self._token_limit_key = "max_tokens"
        self._send_stop = True

    @property
    def name(self) -> str:
        return self._model or f"(first model at {self.base_url})"

    def model_id(self) -> str:
        """The model to ask for; when none was configured, the first one the endpoint lists."""
        if self._model is None:
            listed = self._call(lambda: self._client.models.list())
            ids = [m.id for m in listed.data]
            if not ids:
                raise ModelError(f"{self.base_url} serves no models — set MAT_MODEL")
            self._model = ids[0]
        return self._model

    def _messages(self, messages: list[ChatMessage]) -> list[dict]:
        """Rendered messages in the OpenAI wire shape; images stay where the message places them."""
        out = []
        for message in messages:
            parts = message["content"]
            if all(part["type"] == "text" for part in parts):
                out.append({"role": message["role"], "content": "".join(part["text"] for part in parts)})
                continue
            wire = [
                {"type": "image_url", "image_url": {"url": _data_url(part["image"], self.max_pixels)}}
                if part["type"] == "image" else {"type": "text", "text": part["text"]}
                for part in parts
            ]
            out.append({"role": message["role"], "content": wire})
        return out

    def _request(self, messages: list[dict], stop: list[str], max_new_tokens: int) -> dict:
        request = {"model": self.model_id(), "messages": messages, "stream": True}
        request[self._token_limit_key] = max_new_tokens
        if self._stream_usage:
            request["stream_options"] = {"include_usage": True}
        if stop and self._send_stop:
            request["stop"] = stop[:MAX_STOP]
        return request

    def _stream(self, messages: list[ChatMessage], stop: list[str], max_new_tokens: int) -> Iterator[Chunk]:
        payload = self._messages(messages)
        usage = Chunk()
        pieces = self._pieces(payload, stop, max_new_tokens, usage)
        try:
            for text in cut_at_stop(pieces, stop):
                yield Chunk(text)
        finally:
            pieces.close()  # closes the HTTP stream when we stop early: the server stops generating
        if usage.input_tokens or usage.output_tokens:
            yield usage

    def _pieces(self, payload: list[dict], stop: list[str], max_new_tokens: int, usage: Chunk) -> Iterator[str]:
        """Text deltas of one completion; fills `usage` when the server reports it."""
        # The request is rebuilt on each try: a rejected option is dropped before the next one.
        create = self._client.chat.completions.create
        stream = self._call(lambda: create(**self._request(payload, stop, max_new_tokens)))
        try:
            for event in stream:
                if event.usage is not None:
                    usage.input_tokens = event.usage.prompt_tokens or 0
                    usage.output_tokens = event.usage.completion_tokens or 0
                for choice in event.choices or []:
                    if choice.delta and choice.delta.content:
                        yield choice.delta.content
        except Exception as exc:
            raise self._error(exc) from None
        finally:
            stream.close()

    def _call(self, send):
        """`send()` with retries on transient failures and fallbacks for options a server rejects."""
        import openai

        attempt = 0
        while True:
            try:
                return send()
            except openai.BadRequestError as exc:
                if not self._drop_rejected_option(str(exc)):
                    raise self._error(exc) from None
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                transient = status is None or status in RETRY_STATUS or status >= 500
                if not transient or attempt >= self.max_retries:
                    raise self._error(exc, retried=attempt) from None
                time.sleep(self._delay(attempt, exc))
                attempt += 1

    def _drop_rejected_option(self, message: str) -> bool:
        """Adapt to a server that rejected one of our optional parameters; False when none applies."""
        if self._stream_usage and "stream_options" in message:
            self._stream_usage = False
        elif self._token_limit_key == "max_tokens" and "max_tokens" in message and "max_completion_tokens" in message:
            self._token_limit_key = "max_completion_tokens"
        elif self._send_stop and "'stop'" in message:
            self._send_stop = False
        else:
            return False
        return True

    def _delay(self, attempt: int, exc: Exception) -> float:
        """Exponential backoff with jitter; a server's Retry-After (capped at a minute) wins when longer."""
        delay = self.backoff * 2**attempt * (1 + random.random() / 4)
        response = getattr(exc, "response", None)
        hint = response.headers.get("retry-after") if response is not None else None
        try:
            return max(delay, min(float(hint), 60.0)) if hint else delay
        except ValueError:
            return delay

    def _error(self, exc: Exception, retried: int = 0) -> ModelError:
        """One line a person can act on, with the key scrubbed out."""
        import openai

        after = f" after {retried} {'retry' if retried == 1 else 'retries'}" if retried else ""
        model = self._model or "?"
        if isinstance(exc, openai.APITimeoutError):
            text = f"{self.base_url} did not answer within {self.timeout:g} s{after} — check the server, or raise the timeout"
        elif isinstance(exc, openai.APIConnectionError):
            text = f"cannot reach {self.base_url}: {_root_cause(exc)}{after} — check MAT_BASE_URL"
        elif isinstance(exc, openai.AuthenticationError):
            text = f"{self.base_url} rejected the API key (401) — check MAT_API_KEY or OPENAI_API_KEY"
        elif isinstance(exc, openai.PermissionDeniedError):
            text = f"{self.base_url} refused access to model {model!r} (403) — check the key's permissions"
        elif isinstance(exc, openai.NotFoundError):
            text = f"{self.base_url} has no model {model!r} (404) — check MAT_MODEL, and that MAT_BASE_URL ends in /v1"
        elif isinstance(exc, openai.RateLimitError):
            text = f"{self.base_url} is rate limiting (429){after} — wait, or lower MAT_REMOTE_CONCURRENCY"
        elif isinstance(exc, openai.APIStatusError):
            text = f"{self.base_url} answered {exc.status_code}{after}: {_short(exc)}"
        else:
            text = f"the stream from {self.base_url} broke: {type(exc).__name__}: {exc}"
        return ModelError(self._scrub(" ".join(text.split())))

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if len(self._api_key) > 4 else text


def _short(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return (message or getattr(exc, "message", None) or str(exc))[:300]
