"""Benchmarks' queries as evaluation met them, kept in the store so that training can refuse a benchmark task,
leave overlapping records out (`train --exclude-benchmark`) and report overlap in its log, without importing
`eval` (which sits beside `train`, not below it)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from review.contamination import Query
from review.store import Store


def remember(store: Store, benchmark: str, queries: Iterable[Query]) -> int:
    """Record (or refresh) `benchmark`'s queries; returns how many are known for it now."""
    rows = [(benchmark, query.id, query.text, json.dumps(list(query.images))) for query in queries]
    with store.db.transaction() as tx:
        tx.executemany("INSERT OR REPLACE INTO benchmark_queries (benchmark, query_id, text, images)"
                       " VALUES (?, ?, ?, ?)", rows)
        return tx.value("SELECT COUNT(*) FROM benchmark_queries WHERE benchmark = ?", (benchmark,))


def known(store: Store, benchmarks: Iterable[str] | None = None) -> dict[str, list[Query]]:
    """The queries of each benchmark evaluation has met in this store (all of them, or those named)."""
    wanted = None if benchmarks is None else set(benchmarks)
    found: dict[str, list[Query]] = {}
    for benchmark, query_id, text, images in store.db.read(
            "SELECT benchmark, query_id, text, images FROM benchmark_queries ORDER BY benchmark, query_id"):
        if wanted is None or benchmark in wanted:
            found.setdefault(benchmark, []).append(Query(query_id, text, tuple(json.loads(images))))
    return found
