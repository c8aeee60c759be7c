"""Overlap between a training set and a benchmark: shared 13-grams, exact and near-duplicate queries, same images.

MAT's query generation showed GAIA validation questions to the generator as examples while T3-Agent is
scored on GAIA validation, so a training set can hold a benchmark's questions, or close copies of them.
This module measures that, on plain data (query texts and image content hashes), so that evaluation
(`python -m eval contamination`, the Evaluate tab) and training (its log, `--exclude-benchmark`) run one check.

The rules, per (training query, benchmark query) pair:

- texts are compared normalised: NFKC, lower case, every run of characters other than letters and digits
  read as one space;
- `ngram`: the two share a run of `n` words (13, the size GPT-3's contamination study and later LLM papers
  use). A benchmark query shorter than `n` words counts when all of it appears in a row in the training
  query, provided it has at least `MIN_WORDS` words (GPT-3's smallest n); shorter ones are left to:
- `exact`: the normalised texts are equal;
- `near`: the Jaccard similarity of their sets of character 5-grams is at least `near` (0.8 by default),
  which catches a question copied with a few words changed;
- `image`: a training image and a benchmark file have the same SHA-256.

The benchmark side is indexed (a few hundred queries); the training side streams through once, so memory
does not grow with the training set.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

KINDS = ("exact", "near", "ngram", "image")
NGRAM = 13
MIN_WORDS = 8
NEAR = 0.8
SHINGLE = 5
_NOT_WORD = re.compile(r"[\W_]+")  # letters and digits of any script stay


@dataclass(frozen=True)
class Query:
    """One query of either side: its id, its text, the content hashes of its images, and images not found."""

    id: str
    text: str
    images: tuple[str, ...] = ()
    missing_images: int = 0


@dataclass
class Pair:
    """A training query and a benchmark query that overlap, how, and the evidence (a shared n-gram or hash)."""

    train_id: str
    benchmark_id: str
    kinds: tuple[str, ...]
    similarity: float
    evidence: str


@dataclass
class Overlap:
    """The result of one check: the overlapping pairs and what was compared."""

    benchmark: str
    n: int = NGRAM
    near: float = NEAR
    train_queries: int = 0
    benchmark_queries: int = 0
    train_images: int = 0
    train_missing_images: int = 0
    benchmark_images: int = 0
    benchmark_missing_images: int = 0
    pairs: list[Pair] = field(default_factory=list)

    def benchmark_ids(self, kind: str | None = None) -> set[str]:
        """Benchmark queries that overlap the training set (in any way, or in `kind`)."""
        return {p.benchmark_id for p in self.pairs if kind is None or kind in p.kinds}

    def train_ids(self, kind: str | None = None) -> set[str]:
        """Training queries that overlap the benchmark: those `--exclude-benchmark` leaves out."""
        return {p.train_id for p in self.pairs if kind is None or kind in p.kinds}

    def summary(self) -> str:
        """One line, for a terminal, a page or a training log."""
        hit = self.benchmark_ids()
        share = f"{100 * len(hit) / self.benchmark_queries:.1f}%" if self.benchmark_queries else "n/a"
        kinds = ", ".join(f"{_LABELS[k].format(n=self.n, near=self.near)} {len(self.benchmark_ids(k))}"
                          for k in KINDS)
        images = (f"images compared: {self.train_images} training, {self.benchmark_images} benchmark"
                  + (f" ({self.train_missing_images + self.benchmark_missing_images} not found, not compared)"
                     if self.train_missing_images + self.benchmark_missing_images else ""))
        return (f"{self.benchmark}: {len(hit)} of {self.benchmark_queries} benchmark queries ({share}) overlap "
                f"{len(self.train_ids())} of {self.train_queries} training queries ({kinds}); {images}")


_LABELS = {"exact": "exact", "near": "near-duplicate ≥{near:g}", "ngram": "{n}-gram", "image": "same image"}


def normalize(text: str) -> str:
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _shingles(normal: str) -> set[str]:
    if len(normal) <= SHINGLE:
        return {normal} if normal else set()
    return {normal[i:i + SHINGLE] for i in range(len(normal) - SHINGLE + 1)}


class BenchmarkIndex:
    """A benchmark's queries indexed by word n-gram, normalised text, character shingle and image hash."""

    def __init__(self, queries: Sequence[Query], n: int = NGRAM, near: float = NEAR) -> None:
        self.queries = list(queries)
        self.n, self.near = n, near
        self.grams: dict[int, dict[tuple[str, ...], set[int]]] = defaultdict(lambda: defaultdict(set))
        self.texts: dict[str, set[int]] = defaultdict(set)
        self.shingles: list[set[str]] = []
        self.by_shingle: dict[str, set[int]] = defaultdict(set)
        self.images: dict[str, set[int]] = defaultdict(set)
        for index, query in enumerate(self.queries):
            normal = normalize(query.text)
            words = tuple(normal.split())
            if len(words) >= n:
                for gram in _windows(words, n):
                    self.grams[n][gram].add(index)
            elif len(words) >= MIN_WORDS:
                self.grams[len(words)][words].add(index)
            if normal:
                self.texts[normal].add(index)
            shingles = _shingles(normal)
            self.shingles.append(shingles)
            for shingle in shingles:
                self.by_shingle[shingle].add(index)
            for digest in query.images:
                self.images[digest].add(index)

    def match(self, query: Query) -> list[Pair]:
        """The benchmark queries `query` overlaps, one Pair each."""
        normal = normalize(query.text)
        words = tuple(normal.split())
        kinds: dict[int, list[str]] = defaultdict(list)
        evidence: dict[int, str] = {}
        for index in self.texts.get(normal, ()):
            kinds[index].append("exact")
        shingles = _shingles(normal)
        shared = Counter(i for s in shingles for i in self.by_shingle.get(s, ()))
        similarity = {i: count / (len(shingles) + len(self.shingles[i]) - count) for i, count in shared.items()}
        for index, value in similarity.items():
            if value >= self.near:
                kinds[index].append("near")
        for length, grams in self.grams.items():
            for gram in _windows(words, length):
                for index in grams.get(gram, ()):
                    if "ngram" not in kinds[index]:
                        kinds[index].append("ngram")
                        evidence[index] = " ".join(gram)
        for digest in query.images:
            for index in self.images.get(digest, ()):
                if "image" not in kinds[index]:
                    kinds[index].append("image")
                    evidence.setdefault(index, f"sha256 {digest[:16]}…")
        return [Pair(query.id, self.queries[i].id, tuple(k for k in KINDS if k in found),
                     round(similarity.get(i, 0.0), 3), evidence.get(i, ""))
                for i, found in sorted(kinds.items()) if found]


def _windows(words: tuple[str, ...], length: int) -> Iterable[tuple[str, ...]]:
    return (words[i:i + length] for i in range(len(words) - length + 1))


def overlap(train: Iterable[Query], benchmark: Sequence[Query], *, name: str = "benchmark", n: int = NGRAM,
            near: float = NEAR) -> Overlap:
    """Check every training query against the benchmark; the training side is read once, as a stream."""
    index = BenchmarkIndex(benchmark, n, near)
    result = Overlap(name, n, near, benchmark_queries=len(index.queries),
                     benchmark_images=sum(len(q.images) for q in index.queries),
                     benchmark_missing_images=sum(q.missing_images for q in index.queries))
    for query in train:
        result.train_queries += 1
        result.train_images += len(query.images)
        result.train_missing_images += query.missing_images
        result.pairs += index.match(query)
    return result
