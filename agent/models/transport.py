"""The one way to an OpenAI-compatible endpoint, for Chat, the tools, evaluation and synthesis.

A `Transport` sends chat requests and gets back complete replies or a one-line ModelError:

- images travel as data URLs, encoded once per file content and pixel budget;
- 408, 409, 429, 5xx, timeouts and lost connections are retried with one backoff (a server's
  Retry-After wins when longer); an endpoint that cannot be reached is given up within
  defaults.UNREACHABLE_SECONDS, retries included;
- an option a server rejects (`stream_options`, `max_tokens`, `stop`) is dropped once and remembered;
- a run's stop switch (agent.models.cancel) ends backoff sleeps and hung requests at once;
- a reply counts only when it came whole: a stream without `finish_reason` or `[DONE]` is an error;
- errors name the URL and what to fix, with the API key scrubbed out.

The key and the URL are what the caller passes and nothing else: the openai client would fill
what it is not given from OPENAI_* variables, so it is built here with those taken back out.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from agent.models import cancel as cancellation
from agent.models.base import Chunk, ModelError
from agent.models.stopping import cut_at_stop
from agent.parsing import truncate_at_stop
from core import defaults

T = TypeVar("T")
MAX_STOP = 4  # OpenAI rejects more than four stop sequences; the rest are applied here
RETRY_STATUS = frozenset({408, 409, 429})
NO_ENDPOINT = ("no model endpoint: set MAT_BASE_URL to a local server (vLLM, Ollama, SGLang), "
               "or MAT_API_KEY (or OPENAI_API_KEY) for api.openai.com")


@dataclass
class Request:
    """One chat completion: `messages` in the wire shape (`Transport.messages`)."""

    model: str
    messages: list[dict]
    max_tokens: int = 1024
    stop: list[str] = field(default_factory=list)


class Transport:
    """One OpenAI-compatible endpoint; `base_url=None` is api.openai.com, which needs `api_key`."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout: float = defaults.REQUEST_TIMEOUT,
        max_retries: int = defaults.MAX_RETRIES,
        backoff: float = defaults.BACKOFF,
        max_pixels: int = defaults.MAX_PIXELS,
    ) -> None:
        if not base_url and not api_key:
            raise ModelError(NO_ENDPOINT)
        self._api_key = api_key or ""
        self.client = _client(base_url or defaults.OPENAI_URL, api_key or "EMPTY", timeout)  # local servers take any key
        self.base_url = str(self.client.base_url).rstrip("/")
        self.timeout, self.max_retries, self.backoff, self.max_pixels = timeout, max_retries, backoff, max_pixels
        self.connect_timeout = min(defaults.CONNECT_SECONDS, timeout)
        self._reached = False  # the server has answered once: a later refused connection means it went away
        # Options some servers reject; dropped (or renamed) once a server says so, then remembered.
        self._stream_usage = True
        self._token_limit_key = "max_tokens"
        self._send_stop = True

    # ---------------------------------------------------------------- requests

    def messages(self, messages: list[dict]) -> list[dict]:
        """Chat messages (content a string or `agent.render` parts) in the wire shape; images stay in place."""
        return [self._wire(m) for m in messages]

    def body(self, request: Request, *, stream: bool) -> dict:
        """The JSON body of `request`, without the options this server has rejected."""
        body: dict[str, Any] = {"model": request.model, "messages": request.messages}
        body[self._token_limit_key] = request.max_tokens
        if request.stop and self._send_stop:
            body["stop"] = request.stop[:MAX_STOP]
        if stream:
            body["stream"] = True
            if self._stream_usage:
                body["stream_options"] = {"include_usage": True}
        return body

    def models(self) -> list[str]:
        """The model ids the endpoint lists."""
        return [m.id for m in self._retrying(lambda: self.client.models.list(), None).data]

    def check(self) -> None:
        """Refuse (ModelError) an endpoint that cannot be reached or that rejects the key (401); any other
        answer, an error status included, shows that a server is there (some list no models)."""
        import openai

        def attempt() -> None:
            try:
                self.client.models.list()
            except openai.APIStatusError as exc:
                if exc.status_code == 401:
                    raise

        self._retrying(attempt, None)

    def complete(
        self,
        request: Request,
        *,
        headers: dict[str, str] | None = None,
        gate: Callable[[], AbstractContextManager] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> Chunk:
        """The whole reply, cut at `request.stop`, with its token counts.

        `gate()` is held around each try (and released while backing off); `on_failure` hears each failed try.
        """
        def attempt() -> Chunk:
            raw = self.client.chat.completions.with_raw_response.create(
                **self.body(request, stream=False), extra_headers=headers)
            try:
                completion = raw.http_response.json()
            except ValueError:
                raise _Cut() from None
            return completion_chunk(completion)

        reply = self._retrying(attempt, request, gate=gate, on_failure=on_failure)
        reply.text = truncate_at_stop(reply.text, request.stop)[0]
        return reply

    def stream(self, request: Request) -> Iterator[Chunk]:
        """Text as it arrives, cut at `request.stop`, then a chunk with the token counts when the server gave them."""
        usage = Chunk()
        pieces = self._pieces(request, usage)
        try:
            for text in cut_at_stop(pieces, request.stop):
                yield Chunk(text)
        finally:
            pieces.close()  # closes the HTTP stream when we stop early: the server stops generating
        if usage.input_tokens or usage.output_tokens:
            yield usage

    def _pieces(self, request: Request, usage: Chunk) -> Iterator[str]:
        """Text deltas of one streamed completion; ModelError when the stream ends before the reply does."""
        def attempt():
            raw = self.client.chat.completions.with_raw_response.create(**self.body(request, stream=True))
            return raw.http_response

        response = self._retrying(attempt, request)
        events = cancellation.until_cancelled(_events(response), cancellation.current())
        whole = False
        try:
            for event in events:
                if event is None:  # [DONE]
                    whole = True
                    break
                if isinstance(event.get("error"), dict):
                    message = event["error"].get("message") or "error"
                    raise ModelError(self._scrub(f"{self.base_url} failed mid-reply: {_one_line(message)}"))
                if event.get("usage"):
                    usage.input_tokens = event["usage"].get("prompt_tokens") or 0
                    usage.output_tokens = event["usage"].get("completion_tokens") or 0
                for choice in event.get("choices") or []:
                    whole = whole or bool(choice.get("finish_reason"))
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
        except ModelError:
            raise
        except ValueError as exc:
            raise ModelError(self._scrub(f"{self.base_url} sent an event that is not JSON: {_one_line(exc)}")) from None
        except Exception as exc:  # noqa: BLE001 - whatever broke the stream, the reply is incomplete
            raise ModelError(self._describe(exc if _timed_out(exc) else _Cut(), 1, request)) from None
        finally:
            events.close()
        if not whole:
            raise ModelError(self._describe(_Cut(), 1, request))

    # ---------------------------------------------------------------- retries

    def _retrying(
        self,
        attempt: Callable[[], T],
        request: Request | None,
        *,
        gate: Callable[[], AbstractContextManager] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> T:
        """`attempt()` until it succeeds, fails for good, or the run is stopped (ModelCancelled)."""
        import openai

        cancel = cancellation.current()
        started, tries = time.monotonic(), 0
        while True:
            tries += 1
            try:
                with gate() if gate is not None else nullcontext():
                    result = cancellation.interruptible(attempt, cancel)
                self._reached = True
                return result
            except (openai.APIConnectionError, openai.APIStatusError, _Cut) as exc:
                failure = exc
            kind = _kind(failure)
            if kind != "unconnected":
                self._reached = True
            if kind == "status" and failure.status_code in (400, 422) and self._drop_rejected_option(str(failure)):
                tries -= 1
                continue
            message = self._describe(failure, tries, request)
            if on_failure is not None:
                on_failure(message)
            delay = self._delay(tries - 1, failure)
            if not self._worth_retrying(kind, failure, tries, time.monotonic() - started + delay):
                raise ModelError(message) from None
            cancellation.sleep(delay, cancel)

    def _worth_retrying(self, kind: str, failure: Exception, tries: int, next_start: float) -> bool:
        if tries > self.max_retries:
            return False
        if kind == "status":
            return failure.status_code in RETRY_STATUS or failure.status_code >= 500
        if kind == "timeout":
            return True
        # No answer at all: try again only if that try, connect timeout included, ends within the budget.
        return next_start + self.connect_timeout <= defaults.UNREACHABLE_SECONDS

    def _delay(self, retry: int, failure: Exception) -> float:
        """Exponential backoff with jitter; a server's Retry-After (capped at a minute) wins when longer."""
        delay = min(defaults.MAX_BACKOFF, self.backoff * 2**retry) * (1 + random.random() / 4)
        response = getattr(failure, "response", None)
        hint = response.headers.get("retry-after") if response is not None else None
        try:
            return max(delay, min(float(hint), defaults.MAX_RETRY_AFTER)) if hint else delay
        except ValueError:
            return delay

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

    # ---------------------------------------------------------------- wording

    def _describe(self, failure: Exception, tries: int, request: Request | None) -> str:
        """One line a person can act on, with the key scrubbed out."""
        url, model = self.base_url, request.model if request is not None else None
        after = f" after {tries} tries" if tries > 1 else ""
        kind = _kind(failure)
        if kind == "cut":
            text = f"the model server closed the reply early ({url}){after} — check its log"
        elif kind == "status":
            text = f"HTTP {failure.status_code} from {url}{after}: " + _status_hint(failure, model)
        elif kind == "timeout":
            text = f"{url} did not answer within {self.timeout:g} s{after} — check the server, or raise the timeout"
        elif kind == "lost":
            text = f"the model server at {url} dropped the connection before its reply was whole{after} — is it still running?"
        elif self._reached:
            cause = _cause(failure, self)
            text = f"the model server at {url} stopped answering ({cause}){after}; it answered before — is it still running?"
        else:
            text = f"cannot reach {url}: {_cause(failure, self)}{after} — check MAT_BASE_URL"
        return self._scrub(_one_line(text))

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if len(self._api_key) > 4 else text

    def _wire(self, message: dict) -> dict:
        content = message["content"]
        if isinstance(content, str) or all(part["type"] == "text" for part in content):
            text = content if isinstance(content, str) else "".join(part["text"] for part in content)
            return {"role": message["role"], "content": text}
        parts = [
            {"type": "image_url", "image_url": {"url": data_url(part["image"], self.max_pixels)}}
            if part["type"] == "image" else {"type": "text", "text": part["text"]}
            for part in content
        ]
        return {"role": message["role"], "content": parts}


def completion_chunk(completion: dict) -> Chunk:
    """The text and token counts of a chat completion as JSON (a live answer, or a line of a batch's output)."""
    choices = completion.get("choices") or [{}]
    text = ((choices[0].get("message") or {}).get("content")) or ""
    usage = completion.get("usage") or {}
    return Chunk(text, usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)


# ---------------------------------------------------------------- images


@functools.lru_cache(maxsize=4096)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_digest(path: str | Path) -> str:
    """Content hash of a file, read once per file version."""
    try:
        stat = os.stat(path)
    except OSError:
        raise ModelError(f"image not found: {path}") from None
    return _digest(str(path), stat.st_mtime_ns, stat.st_size)


_DATA_URLS: OrderedDict[tuple[str, int], str] = OrderedDict()
_DATA_URLS_LOCK = threading.Lock()
DATA_URL_CACHE = 128


def data_url(path: str | Path, max_pixels: int) -> str:
    """The image as a data URL, encoded once per content: the loop resends a task's images every step,
    and synthesis tasks that share a corpus image hold their own links to it."""
    from agent.models.images import to_data_url

    key = (file_digest(path), max_pixels)
    with _DATA_URLS_LOCK:
        known = _DATA_URLS.get(key)
        if known is not None:
            _DATA_URLS.move_to_end(key)
            return known
    encoded = to_data_url(path, max_pixels)
    with _DATA_URLS_LOCK:
        _DATA_URLS[key] = encoded
        while len(_DATA_URLS) > DATA_URL_CACHE:
            _DATA_URLS.popitem(last=False)
    return encoded


# ---------------------------------------------------------------- the wire


def _client(base_url: str, api_key: str, timeout: float):
    """An openai client that sends only what it is given: no key, URL, organisation or header from the environment."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                           timeout=openai.Timeout(timeout, connect=min(defaults.CONNECT_SECONDS, timeout)))
    for filled_from_environment in ("organization", "project", "admin_api_key", "webhook_secret"):
        if hasattr(client, filled_from_environment):
            setattr(client, filled_from_environment, None)
    if hasattr(client, "_custom_headers"):  # OPENAI_CUSTOM_HEADERS, which may carry another Authorization
        client._custom_headers = {}
    return client


class _Cut(Exception):
    """The server closed the reply before its end."""


def _events(response) -> Iterator[dict | None]:
    """The JSON of each server-sent event, None for `[DONE]`; an event cut off by the end of the stream is dropped."""
    try:
        data: list[str] = []
        for line in response.iter_lines():
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line and data:
                payload, data = "\n".join(data), []
                if payload.strip() == "[DONE]":
                    yield None
                    return
                yield json.loads(payload)
    finally:
        response.close()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def _timed_out(exc: BaseException) -> bool:
    return any(isinstance(e, TimeoutError) or type(e).__name__.endswith("Timeout") for e in _chain(exc))


def _kind(failure: Exception) -> str:
    """status | cut | timeout (no answer in time) | unconnected (no connection made) | lost (connected, no answer)."""
    import openai

    if isinstance(failure, openai.APIStatusError):
        return "status"
    if isinstance(failure, _Cut):
        return "cut"
    names = {type(e).__name__ for e in _chain(failure)}
    if names & {"ConnectTimeout", "ConnectError", "ConnectionRefusedError"}:
        return "unconnected"
    return "timeout" if _timed_out(failure) else "lost"


def _cause(failure: Exception, transport: Transport) -> str:
    """Why no connection was made, in a few words."""
    *_, innermost = _chain(failure)
    if any(isinstance(e, ConnectionRefusedError) or "refused" in str(e).lower() for e in _chain(failure)):
        return "connection refused"
    if _timed_out(failure):
        return f"no connection within {transport.connect_timeout:g} s"
    return _one_line(str(innermost)) or type(innermost).__name__


def _status_hint(failure: Exception, model: str | None) -> str:
    """What the status means for this request (`model` None: the model list)."""
    status = failure.status_code
    if status == 401:
        return "the API key was rejected — check MAT_API_KEY or OPENAI_API_KEY"
    if status == 403:
        return f"no access to model {model!r} — check the key's permissions"
    if status == 404 and model is None:
        return "no model list there — check that MAT_BASE_URL ends in /v1"
    if status == 404:
        return f"no model {model!r} — check MAT_MODEL, and that MAT_BASE_URL ends in /v1"
    if status == 429:
        return "rate limited — wait, or send fewer requests at once (MAT_REMOTE_CONCURRENCY, synthesis --concurrency)"
    body = getattr(failure, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return _one_line(message or getattr(failure, "message", None) or str(failure))[:300]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
