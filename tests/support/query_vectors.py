"""Embeddings shaped like a synthesis run's queries, for the de-duplication test and bench (no model needed)."""

from __future__ import annotations

import numpy as np


def queries_like(count: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    """Unit vectors in topics (clusters), every seventh a near-copy of an earlier one: half of those just above
    a 0.9 cosine threshold (0.93, duplicates), half just below it (0.87, new)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((12, dim))
    rows = np.zeros((count, dim), dtype=np.float32)
    for n in range(count):
        if n > 10 and n % 7 == 0:
            earlier = rows[rng.integers(n)]
            noise = rng.standard_normal(dim)
            noise -= (noise @ earlier) * earlier
            angle = np.arccos(rng.choice([0.93, 0.87]))
            rows[n] = np.cos(angle) * earlier + np.sin(angle) * noise / np.linalg.norm(noise)
        else:
            row = topics[rng.integers(len(topics))] + 1.2 * rng.standard_normal(dim)
            rows[n] = row / np.linalg.norm(row)
    return rows
