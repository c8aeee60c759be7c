"""Stage 1: tasks from seed examples and topics, near-duplicates dropped by embedding similarity.

Requests are numbered; request n always shows the same seeds and topic, so its key (and its
stored answer) is the same after a restart. A request's queries become tasks in the same
transaction that marks it done, so a kill leaves either all or none of them; which of them are
near-duplicates is decided before that transaction (synthesis/dedup.py), so the write lock is
held only for the inserts.
"""

from __future__ import annotations

import json
import math
import random
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import numpy as np

from core.clock import now
from core.errors import UserError
from synthesis.context import Context, StageError, parse_json, prompt
from synthesis.dedup import NearDuplicates
from synthesis.embed import encode_cached
from synthesis.llm import RequestFailed, Reply
from synthesis.tasks import STAGES, TaskRow, load_tasks

FILE_TYPES = ("image", "pdf", "docx", "xlsx", "csv", "pptx", "txt")
BUILTIN_SEEDS = Path(__file__).parent / "prompts" / "seeds.json"


def load_seeds(path: str | None) -> tuple[list[str], list[str]]:
    source = Path(path) if path else BUILTIN_SEEDS
    try:
        data = json.loads(source.read_text())
        seeds, topics = [str(s) for s in data["seeds"]], [str(t) for t in data["topics"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{source}: expected JSON {{\"seeds\": [...], \"topics\": [...]}} ({exc})") from None
    if not seeds or not topics:
        raise UserError(f"{source}: needs at least one seed and one topic")
    return seeds, topics


class QueryStage:
    """Asks for queries until the run has `config.tasks` distinct tasks; hands each new task on."""

    def __init__(self, ctx: Context, hand_on: Callable[[TaskRow], None]) -> None:
        self.ctx, self.hand_on = ctx, hand_on
        self.seeds, self.topics = load_seeds(ctx.config.seeds)
        self.lock = threading.Lock()
        existing = load_tasks(ctx.store, ctx.run_id)
        self.count = len(existing)
        self.index = NearDuplicates(ctx.config.dedup)
        # A fresh run sends its first requests while the embedder loads (it is needed once answers arrive).
        if existing:
            self.index.add(encode_cached(ctx.store, ctx.embedder, [t.query for t in existing]))
        self.failures: list[str] = []

    def run(self) -> str:
        """Returns a note when the run ended with fewer distinct queries than asked for."""
        config = self.ctx.config
        done = {n for (n,) in self.ctx.store.db.read(
            "SELECT n FROM synthesis_query_batches WHERE run_id = ? AND done = 1", (self.ctx.run_id,))}
        budget = len(done) + 3 * math.ceil(config.tasks / config.per_request) + 2
        numbers = (n for n in range(10**9) if n not in done)
        issued = len(done)
        running: dict[Future, int] = {}
        with ThreadPoolExecutor(config.concurrency, thread_name_prefix="queries") as pool:
            while not self.ctx.stop.is_set():
                wanted = math.ceil((config.tasks - self.count) / config.per_request) if self.count < config.tasks else 0
                while len(running) < min(wanted, config.concurrency) and issued < budget:
                    n = next(numbers)
                    running[pool.submit(self._ask, n)] = n
                    issued += 1
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    n = running.pop(future)
                    try:
                        self.accept(n, *future.result())
                    except (RequestFailed, StageError) as exc:
                        self.failures.append(f"query request {n}: {exc}")
        if self.count < config.tasks and not self.ctx.stop.is_set():
            why = f" (last failure: {self.failures[-1]})" if self.failures else ""
            return f"only {self.count} distinct queries after {issued} requests{why}"
        return ""

    def _ask(self, n: int) -> tuple[list[tuple[str, list[str]]], np.ndarray]:
        """Request n's usable (query, file types) pairs and their embeddings, made in the pool's thread."""
        reply = self._request(n)
        candidates = [c for c in map(_candidate, parse_json(reply.text, list)) if c is not None]
        return candidates, encode_cached(self.ctx.store, self.ctx.embedder, [c[0] for c in candidates])

    def _request(self, n: int) -> Reply:
        rng = random.Random(n)
        seeds = rng.sample(self.seeds, min(3, len(self.seeds)))
        text = prompt("queries.txt", count=self.ctx.config.per_request, topic=self.topics[n % len(self.topics)],
                      seeds="\n".join(f"- {s}" for s in seeds))
        return self.ctx.llm.chat(stage="queries", task_id=None, purpose=f"queries-{n}",
                                 messages=[{"role": "user", "content": text}], max_tokens=2000)

    def accept(self, n: int, candidates: list[tuple[str, list[str]]], vectors: np.ndarray) -> None:
        """Request n's candidates that are new, up to the run's task count, become tasks and are handed on."""
        with self.lock:
            novel = self.index.novel(vectors)
            kept = [i for i, fresh in enumerate(novel) if fresh][:max(0, self.ctx.config.tasks - self.count)]
            new = [TaskRow(id=f"{self.ctx.run_id}-{self.count + k:05d}", run_id=self.ctx.run_id, n=self.count + k,
                           stage=STAGES[0], status="active", query=candidates[i][0],
                           files=[{"type": t} for t in candidates[i][1]]) for k, i in enumerate(kept)]
            with self.ctx.store.db.transaction() as tx:
                tx.executemany(
                    """INSERT INTO synthesis_tasks (id, run_id, n, stage, status, query, files, updated)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    [(t.id, t.run_id, t.n, t.stage, t.status, t.query, json.dumps(t.files), now()) for t in new])
                tx.execute("INSERT OR REPLACE INTO synthesis_query_batches (run_id, n, done) VALUES (?, ?, 1)",
                           (self.ctx.run_id, n))
            self.index.add(vectors[kept])
            self.count += len(new)
        for task in new:
            self.hand_on(task)


def _candidate(item: object) -> tuple[str, list[str]] | None:
    """(query, file types) of one generated item; None for an item that is not a usable task."""
    if not isinstance(item, dict) or not isinstance(item.get("query"), str) or not item["query"].strip():
        return None
    types = [str(t).lower().lstrip(".") for t in item.get("files") or [] if isinstance(t, str)]
    types = [t if t != "jpg" else "image" for t in types if t in FILE_TYPES or t == "jpg"]
    return (item["query"].strip(), types[:4]) if types else None
