"""Every LLM request of a synthesis run: keyed, stored, retried, priced, paid once.

A request's key is a hash of what decides its answer (run, task, purpose, model, messages with
images by content, limits). Before sending, the store is asked for that key; a stored answer is
returned as is, so a run killed at any moment and resumed never pays for an answer it already got.
The key also travels as the `X-MAT-Request-Key` header, so a server's log can be matched to the store.
Transient failures (429, 408, 409, 5xx, timeouts, refused connections) are retried with backoff;
a request that still fails raises `RequestFailed` with a one-line reason, and its item is marked failed.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from core.clock import now
from core.errors import UserError
from synthesis.costs import Prices

if TYPE_CHECKING:
    from review.store import Store

RETRY_STATUS = {408, 409, 429}
IMAGE_PIXELS = 1024 * 28 * 28  # the agent's default max_pixels


class RequestFailed(UserError):
    """A request that kept failing; the message says why, in one line."""


@dataclass
class Reply:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached: bool = False


@dataclass
class Endpoint:
    base_url: str | None
    api_key: str | None
    model: str
    timeout: float = 120.0
    max_retries: int = 5
    backoff: float = 0.5


def request_key(material: dict) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


_FILE_HASHES: dict[tuple[str, int], str] = {}


def file_digest(path: str | Path) -> str:
    """Content hash of an image sent with a request: keys must not depend on where a run put its files."""
    path = Path(path)
    stamp = (str(path), path.stat().st_mtime_ns)
    if stamp not in _FILE_HASHES:
        _FILE_HASHES[stamp] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _FILE_HASHES[stamp]


# When requests queue for a slot, the one furthest down the pipeline goes first: tasks finish in order,
# and the run does not end with a long tail of half-done tasks.
STAGE_PRIORITY = {"judge": 0, "solve": 1, "check": 2, "files": 3, "describe": 4, "queries": 5}


class Slots:
    """At most `n` requests in flight; a freed slot passes straight to the waiter of highest priority."""

    def __init__(self, n: int) -> None:
        self.free = n
        self.lock = threading.Lock()
        self.waiting: list[tuple[int, int, threading.Event]] = []
        self.arrivals = itertools.count()

    @contextmanager
    def hold(self, priority: int) -> Iterator[None]:
        with self.lock:
            if self.free and not self.waiting:
                self.free -= 1
                turn = None
            else:
                turn = threading.Event()
                heapq.heappush(self.waiting, (priority, next(self.arrivals), turn))
        if turn is not None:
            turn.wait()
        try:
            yield
        finally:
            with self.lock:
                if self.waiting:
                    heapq.heappop(self.waiting)[2].set()
                else:
                    self.free += 1


class LLM:
    """The run's one way to reach the model; `concurrency` bounds requests in flight across all stages."""

    def __init__(self, store: Store, run_id: str, endpoint: Endpoint, *, concurrency: int = 8,
                 prices: Prices | None = None) -> None:
        import openai

        self.store, self.run_id, self.endpoint = store, run_id, endpoint
        self.prices = prices or Prices()
        self.slots = Slots(concurrency)
        self.client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or "EMPTY",
                                    timeout=endpoint.timeout, max_retries=0)
        self.batcher: Callable[[str, dict, str], Reply] | None = None  # set when one-shot stages use the Batch API

    # ---------------------------------------------------------------- public

    def chat(self, *, stage: str, task_id: str | None, purpose: str, messages: list[dict],
             max_tokens: int = 1024, stop: list[str] | None = None, one_shot: bool = True) -> Reply:
        """The answer to `messages`: chat dicts whose content is a string or the parts `agent.render` makes
        ({"type": "text", "text"} | {"type": "image", "image": path}); images are sent where they stand.

        `one_shot` requests may go through the Batch API when the run uses it; agent steps never do.
        """
        keyed = [{"role": m["role"], "content": _keyed(m["content"])} for m in messages]
        material = {"run": self.run_id, "task": task_id, "purpose": purpose, "model": self.endpoint.model,
                    "messages": keyed, "max_tokens": max_tokens, "stop": stop or []}
        key = request_key(material)
        stored = self.cached(key)
        if stored is not None:
            return stored
        body = {"model": self.endpoint.model, "messages": [_wire(m) for m in messages], "max_tokens": max_tokens}
        if stop:
            body["stop"] = stop[:4]
        self._remember(key, stage, task_id, material)
        batched = one_shot and self.batcher is not None
        reply = self.batcher(key, body, stage) if batched else self._send(key, body, STAGE_PRIORITY.get(stage, 9))
        self._store_reply(key, reply, via="batch" if batched else "live")
        return reply

    def cached(self, key: str) -> Reply | None:
        row = self.store.db.read_one(
            "SELECT response, input_tokens, output_tokens FROM synthesis_requests WHERE key = ? AND response IS NOT NULL",
            (key,))
        return Reply(row[0], row[1], row[2], cached=True) if row else None

    # ---------------------------------------------------------------- sending

    def _send(self, key: str, body: dict, priority: int) -> Reply:
        import openai

        attempt = 0
        while True:
            try:
                with self.slots.hold(priority):
                    response = self.client.chat.completions.create(
                        **body, extra_headers={"X-MAT-Request-Key": key})
                return reply_from(response.model_dump())
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                transient = status is None or status in RETRY_STATUS or status >= 500
                reason = _reason(exc, self.endpoint)
                self._note_failure(key, reason)
                if not transient or attempt >= self.endpoint.max_retries:
                    tries = f" after {attempt + 1} tries" if attempt else ""
                    raise RequestFailed(f"{reason}{tries}") from None
                time.sleep(self._delay(attempt))
                attempt += 1

    def _delay(self, attempt: int) -> float:
        return min(30.0, self.endpoint.backoff * 2**attempt) * (1 + random.random() / 4)

    # ---------------------------------------------------------------- the store

    def _remember(self, key: str, stage: str, task_id: str | None, material: dict) -> None:
        with self.store.db.transaction() as tx:
            tx.execute(
                """INSERT OR IGNORE INTO synthesis_requests (key, run_id, stage, task_id, model, request, created)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (key, self.run_id, stage, task_id, self.endpoint.model, json.dumps(material), now()))

    def _note_failure(self, key: str, reason: str) -> None:
        with self.store.db.transaction() as tx:
            tx.execute("UPDATE synthesis_requests SET attempts = attempts + 1, error = ? WHERE key = ?", (reason, key))

    def _store_reply(self, key: str, reply: Reply, via: str) -> None:
        cost = self.prices.cost(self.endpoint.model, reply.input_tokens, reply.output_tokens)
        with self.store.db.transaction() as tx:
            tx.execute(
                """UPDATE synthesis_requests SET response = ?, input_tokens = ?, output_tokens = ?, cost = ?, via = ?,
                       attempts = attempts + 1, error = NULL WHERE key = ?""",
                (reply.text, reply.input_tokens, reply.output_tokens, cost, via, key))


def reply_from(completion: dict) -> Reply:
    """A Reply from a chat completion as JSON (live answer or one line of a batch's output)."""
    choices = completion.get("choices") or [{}]
    text = ((choices[0].get("message") or {}).get("content")) or ""
    usage = completion.get("usage") or {}
    return Reply(text, usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)


_DATA_URLS: dict[str, str] = {}
_DATA_URLS_LOCK = threading.Lock()


def _data_url(path: str) -> str:
    """An image as a data URL, encoded once per content: agent steps resend a task's images, and tasks
    that share a corpus image hold their own links to it."""
    from agent.models.images import to_data_url

    digest = file_digest(path)
    with _DATA_URLS_LOCK:
        known = _DATA_URLS.get(digest)
    if known is None:
        known = to_data_url(path, IMAGE_PIXELS)
        with _DATA_URLS_LOCK:
            if len(_DATA_URLS) >= 256:
                _DATA_URLS.clear()
            _DATA_URLS[digest] = known
    return known


def _keyed(content: str | list[dict]) -> str | list[dict]:
    """Content as it enters a request's key: images by their content hash, not their path."""
    if isinstance(content, str):
        return content
    return [{"type": "image", "sha256": file_digest(p["image"])} if p["type"] == "image" else p for p in content]


def _wire(message: dict) -> dict:
    """A message as the API takes it: image parts become data URLs, in place; text-only content a string."""
    content = message["content"]
    if isinstance(content, str) or all(p["type"] == "text" for p in content):
        text = content if isinstance(content, str) else "".join(p["text"] for p in content)
        return {"role": message["role"], "content": text}
    parts = [{"type": "image_url", "image_url": {"url": _data_url(str(p["image"]))}} if p["type"] == "image"
             else {"type": "text", "text": p["text"]} for p in content]
    return {"role": message["role"], "content": parts}


def _reason(exc: Exception, endpoint: Endpoint) -> str:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return f"{endpoint.base_url} did not answer within {endpoint.timeout:g} s"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach {endpoint.base_url} ({type(exc).__name__})"
    status = getattr(exc, "status_code", "?")
    message = str(getattr(exc, "message", "") or exc).splitlines()[0][:200]
    return f"HTTP {status} from {endpoint.base_url}: {message}"
