"""Every LLM request of a synthesis run: keyed, stored, retried, priced, paid once.

A request's key is a hash of what decides its answer (run, task and its attempt, purpose, model,
messages with images by content, limits). Before sending, the store is asked for that key; a stored answer is
returned as is, so a run killed at any moment and resumed never pays for an answer it already got.
The key also travels as the `X-MAT-Request-Key` header, so a server's log can be matched to the store.
Sending is agent.models.transport's, as for Chat: images by content, retries with backoff, complete
replies only; a request that still fails raises `RequestFailed` with the transport's one-line reason,
and its item is marked failed.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from agent.models.base import ModelError
from agent.models.cancel import ModelCancelled
from agent.models.transport import Request, Transport, completion_chunk, file_digest
from core import defaults
from core.clock import now
from core.errors import UserError
from synthesis.costs import Prices

if TYPE_CHECKING:
    from review.store import Store


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
    timeout: float = defaults.SYNTHESIS_TIMEOUT
    max_retries: int = defaults.SYNTHESIS_RETRIES
    backoff: float = defaults.BACKOFF


def check_endpoint(endpoint: Endpoint) -> None:
    """Refuse, in one line naming its URL, an endpoint that cannot be reached or that rejects the key: one try,
    given up within defaults.UNREACHABLE_SECONDS, before anything of a run is stored or paid for."""
    timeout = min(endpoint.timeout, defaults.UNREACHABLE_SECONDS)
    Transport(endpoint.base_url, endpoint.api_key, timeout=timeout, max_retries=0).check()


def request_key(material: dict) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# When requests queue for a slot, the one furthest down the pipeline goes first: tasks finish in order,
# and the run does not end with a long tail of half-done tasks.
STAGE_PRIORITY = {"judge": 0, "solve": 1, "check": 2, "files": 3, "describe": 4, "queries": 5}


class Slots:
    """At most `n` requests in flight; a freed slot passes straight to the waiter of highest priority."""

    def __init__(self, n: int) -> None:
        self.n = self.free = n
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

    @property
    def busy(self) -> int:
        """Slots held now: requests on the wire."""
        return self.n - self.free


class LLM:
    """The run's one way to reach the model; `concurrency` bounds requests in flight across all stages."""

    def __init__(self, store: Store, run_id: str, endpoint: Endpoint, *, concurrency: int = 8,
                 prices: Prices | None = None) -> None:
        self.store, self.run_id, self.endpoint = store, run_id, endpoint
        self.prices = prices or Prices()
        self.slots = Slots(concurrency)
        self.transport = Transport(endpoint.base_url, endpoint.api_key, timeout=endpoint.timeout,
                                   max_retries=endpoint.max_retries, backoff=endpoint.backoff)
        self.client = self.transport.client  # the Batch API's
        self.batcher: Callable[[str, dict, str], Reply] | None = None  # set when one-shot stages use the Batch API

    # ---------------------------------------------------------------- public

    def chat(self, *, stage: str, task_id: str | None, purpose: str, messages: list[dict],
             max_tokens: int = 1024, stop: list[str] | None = None, one_shot: bool = True, attempt: int = 0) -> Reply:
        """The answer to `messages`: chat dicts whose content is a string or the parts `agent.render` makes
        ({"type": "text", "text"} | {"type": "image", "image": path}); images are sent where they stand.

        `one_shot` requests may go through the Batch API when the run uses it; agent steps never do.
        A task's later `attempt` (a retry of a failed task) asks afresh instead of reading back the answer it
        failed on; the first attempt's key leaves it out, so runs stored before attempts existed keep theirs.
        """
        try:
            keyed = [{"role": m["role"], "content": _keyed(m["content"])} for m in messages]
            material = {"run": self.run_id, "task": task_id, "purpose": purpose, "model": self.endpoint.model,
                        "messages": keyed, "max_tokens": max_tokens, "stop": stop or [],
                        **({"attempt": attempt} if attempt else {})}
            key = request_key(material)
            stored = self.cached(key)
            if stored is not None:
                return stored
            request = Request(self.endpoint.model, self.transport.messages(messages), max_tokens, stop or [])
        except ModelError as exc:  # an image that is gone or unreadable
            raise RequestFailed(str(exc)) from None
        self._remember(key, stage, task_id, material)
        batched = one_shot and self.batcher is not None
        if batched:
            reply = self.batcher(key, self.transport.body(request, stream=False), stage)
        else:
            reply = self._send(key, request, STAGE_PRIORITY.get(stage, 9))
        self._store_reply(key, reply, via="batch" if batched else "live")
        return reply

    def cached(self, key: str) -> Reply | None:
        row = self.store.db.read_one(
            "SELECT response, input_tokens, output_tokens FROM synthesis_requests WHERE key = ? AND response IS NOT NULL",
            (key,))
        return Reply(row[0], row[1], row[2], cached=True) if row else None

    # ---------------------------------------------------------------- sending

    def _send(self, key: str, request: Request, priority: int) -> Reply:
        """A live answer; each try holds a slot, given up while backing off, and each failure is noted."""
        try:
            chunk = self.transport.complete(request, headers={"X-MAT-Request-Key": key},
                                            gate=lambda: self.slots.hold(priority),
                                            on_failure=lambda reason: self._note_failure(key, reason))
        except ModelCancelled:
            raise  # the agent run was stopped: not a failure of this request
        except ModelError as exc:
            raise RequestFailed(str(exc)) from None
        return Reply(chunk.text, chunk.input_tokens, chunk.output_tokens)

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
        cost = self.prices.cost(self.endpoint.model, reply.input_tokens, reply.output_tokens, batch=via == "batch")
        with self.store.db.transaction() as tx:
            tx.execute(
                """UPDATE synthesis_requests SET response = ?, input_tokens = ?, output_tokens = ?, cost = ?,
                       priced = ?, via = ?, attempts = attempts + 1, error = NULL WHERE key = ?""",
                (reply.text, reply.input_tokens, reply.output_tokens, cost or 0.0, cost is not None, via, key))


def reply_from(completion: dict) -> Reply:
    """A Reply from a chat completion as JSON (a line of a batch's output)."""
    chunk = completion_chunk(completion)
    return Reply(chunk.text, chunk.input_tokens, chunk.output_tokens)


def _keyed(content: str | list[dict]) -> str | list[dict]:
    """Content as it enters a request's key: images by their content hash, not their path."""
    if isinstance(content, str):
        return content
    return [{"type": "image", "sha256": file_digest(p["image"])} if p["type"] == "image" else p for p in content]
