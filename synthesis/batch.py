"""One-shot stages (queries, describe, check, judge) through the OpenAI Batch API.

Requests gathered over `batch_window` seconds become one JSONL file (`files.create`), one batch
(`batches.create`), polled until it ends; each line of its output answers one request by its key
(`custom_id`). A batch is recorded in the store with its keys the moment it is created, so a run
killed while a batch is out picks that batch up again on resume instead of submitting (and paying
for) the same requests twice.
"""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

from core.clock import now
from synthesis.llm import Reply, RequestFailed, reply_from

if TYPE_CHECKING:
    from synthesis.context import Context

OPEN = ("validating", "in_progress", "finalizing", "cancelling")
POLL_SECONDS = 2.0


class Batcher:
    def __init__(self, ctx: Context) -> None:
        self.ctx, self.poll = ctx, min(POLL_SECONDS, ctx.config.batch_window)
        self.client = ctx.llm.client
        self.lock = threading.Lock()
        self.waiting: dict[str, Future] = {}  # key -> future, for every request not answered yet
        self.queued: list[tuple[str, dict]] = []  # (key, body) not yet sent in a batch
        self.sent: dict[str, str] = {}  # key -> batch id, batches created earlier (this start or before)
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="batcher", daemon=True)

    def start(self) -> Batcher:
        for batch_id, keys in self.ctx.store.db.read(
                "SELECT id, keys FROM synthesis_batches WHERE run_id = ? AND status != 'failed'",
                (self.ctx.run_id,)):
            self.sent.update({key: batch_id for key in json.loads(keys)})
        self.ctx.llm.batcher = self.request
        self.thread.start()
        return self

    def close(self) -> None:
        self.closed.set()
        self.thread.join()
        self.ctx.llm.batcher = None

    def request(self, key: str, body: dict, stage: str) -> Reply:
        """Called by LLM.chat from a stage's thread; blocks until the batch holding `key` is answered."""
        future: Future = Future()
        with self.lock:
            self.waiting[key] = future
            if key not in self.sent:
                self.queued.append((key, body))
        return future.result()

    def _loop(self) -> None:
        last_flush = 0.0
        while not self.closed.wait(self.poll):
            if time.monotonic() - last_flush >= self.ctx.config.batch_window:
                self._flush()
                last_flush = time.monotonic()
            self._poll()

    def _flush(self) -> None:
        with self.lock:
            queued, self.queued = self.queued, []
        if not queued:
            return
        lines = [json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body})
                 for key, body in queued]
        try:
            upload = self.client.files.create(file=("requests.jsonl", io.BytesIO("\n".join(lines).encode())),
                                              purpose="batch")
            batch = self.client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                               completion_window="24h", metadata={"mat_run": self.ctx.run_id})
        except Exception as exc:  # any failure to submit fails these requests with the reason; the run goes on
            self._fail([key for key, _ in queued], f"batch not submitted: {exc}")
            return
        keys = [key for key, _ in queued]
        with self.ctx.store.db.transaction() as tx:
            tx.execute(
                "INSERT INTO synthesis_batches (id, run_id, stage, input_file, keys, status, created)"
                " VALUES (?,?,?,?,?,?,?)", (batch.id, self.ctx.run_id, "mixed", upload.id, json.dumps(keys),
                                            batch.status, now()))
        with self.lock:
            self.sent.update({key: batch.id for key in keys})

    def _poll(self) -> None:
        with self.lock:
            open_batches = {batch_id for key, batch_id in self.sent.items() if key in self.waiting}
        for batch_id in open_batches:
            try:
                batch = self.client.batches.retrieve(batch_id)
            except Exception:  # a failed poll is retried at the next tick
                continue
            if batch.status in OPEN:
                continue
            if batch.status == "completed" and batch.output_file_id:
                self._deliver(batch_id, self.client.files.content(batch.output_file_id).text)
            if batch.error_file_id:
                self._deliver(batch_id, self.client.files.content(batch.error_file_id).text)
            keys = [k for k, b in self.sent.items() if b == batch_id]
            self._fail([k for k in keys if k in self.waiting], f"batch {batch_id} ended {batch.status}")
            with self.ctx.store.db.transaction() as tx:
                tx.execute("UPDATE synthesis_batches SET status = ? WHERE id = ?",
                           ("done" if batch.status == "completed" else "failed", batch_id))

    def _deliver(self, batch_id: str, text: str) -> None:
        for line in text.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            response = item.get("response") or {}
            key = item.get("custom_id")
            with self.lock:
                future = self.waiting.pop(key, None)
            if future is None:
                continue
            if response.get("status_code") == 200:
                future.set_result(reply_from(response.get("body") or {}))
            else:
                error = (item.get("error") or {}).get("message") or f"status {response.get('status_code')}"
                future.set_exception(RequestFailed(f"batch {batch_id}: {error}"))

    def _fail(self, keys: list[str], reason: str) -> None:
        for key in keys:
            with self.lock:
                future = self.waiting.pop(key, None)
            if future is not None:
                future.set_exception(RequestFailed(reason))
