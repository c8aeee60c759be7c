"""Near-duplicate queries: an index of unit vectors that answers "is this one at least `threshold` similar
(cosine) to any kept so far?" in time that stays near-linear over a run of 20,000 queries.

Comparing every new query with every kept vector in full precision reads all of them each time (30 MB at
20K MiniLM vectors), and growing one array by `vstack` copies them all on every insert. Here each vector
also gets a 256-bit sketch: the signs of its projections on fixed random hyperplanes. Two vectors at angle
θ differ in each bit with probability θ/π, so a pair at the threshold differs in about 256·θ/π bits; only
kept vectors whose sketch is within that many bits plus six standard deviations (a pair at the threshold is
missed with probability below 1e-9) are compared exactly. A check reads 32 bytes per kept query instead of
1,536 (each 64-bit word of the sketches in its own contiguous row, so a batch is compared in four passes),
and the arrays grow by doubling, so adding is amortised constant time.
"""

from __future__ import annotations

import math

import numpy as np

SKETCH_BITS = 256
_MARGIN_SIGMAS = 6.0


class NearDuplicates:
    """Kept unit vectors and their sketches; `novel` checks a batch, `add` keeps it (after it is stored)."""

    def __init__(self, threshold: float, *, seed: int = 0) -> None:
        self.threshold = threshold
        self.count = 0
        self._seed = seed
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._words = np.zeros((SKETCH_BITS // 64, 0), dtype=np.uint64)  # word k of every kept sketch, in row k
        self._planes: np.ndarray | None = None
        angle = math.acos(min(1.0, max(-1.0, threshold))) / math.pi
        self.max_bits = SKETCH_BITS * angle + _MARGIN_SIGMAS * math.sqrt(SKETCH_BITS * angle * (1 - angle))

    def novel(self, vectors: np.ndarray) -> list[bool]:
        """For each row: whether it is below the threshold with every kept vector and every earlier novel row."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) == 0:
            return []
        sketches = self._sketch(vectors)
        near = self._near_kept(vectors, sketches)
        verdicts: list[bool] = []
        for row in range(len(vectors)):
            earlier = [i for i in range(row) if verdicts[i]]
            seen = near[row] or (bool(earlier) and float((vectors[earlier] @ vectors[row]).max()) >= self.threshold)
            verdicts.append(not seen)
        return verdicts

    def add(self, vectors: np.ndarray) -> None:
        """Keep `vectors` (rows of unit length)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) == 0:
            return
        sketches = self._sketch(vectors)
        needed = self.count + len(vectors)
        if needed > len(self._vectors):
            size = max(needed, 2 * len(self._vectors), 1024)
            grown = np.zeros((size, vectors.shape[1]), dtype=np.float32), np.zeros((len(self._words), size), np.uint64)
            if self.count:
                grown[0][:self.count], grown[1][:, :self.count] = self._vectors[:self.count], self._words[:, :self.count]
            self._vectors, self._words = grown
        self._vectors[self.count:needed] = vectors
        self._words[:, self.count:needed] = sketches.T
        self.count = needed

    def _near_kept(self, vectors: np.ndarray, sketches: np.ndarray) -> list[bool]:
        """Per row: whether some kept vector reaches the threshold (sketches first, then exactly)."""
        if self.count == 0:
            return [False] * len(vectors)
        distance = np.zeros((len(vectors), self.count), dtype=np.uint16)  # Hamming distance, row x kept
        for k, words in enumerate(self._words[:, :self.count]):
            distance += np.bitwise_count(words[None, :] ^ sketches[:, k, None])
        near = []
        for row, vector in enumerate(vectors):
            candidates = np.flatnonzero(distance[row] <= self.max_bits)
            near.append(bool(len(candidates)) and
                        float((self._vectors[candidates] @ vector).max()) >= self.threshold)
        return near

    def _sketch(self, vectors: np.ndarray) -> np.ndarray:
        if self._planes is None:
            self._planes = np.random.default_rng(self._seed).standard_normal(
                (vectors.shape[1], SKETCH_BITS)).astype(np.float32)
        bits = np.packbits((vectors @ self._planes) > 0, axis=1)
        return bits.view(np.uint64)
