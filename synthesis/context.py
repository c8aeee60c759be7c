"""What every stage of one run works with: the store, the run's config, its LLM, embedder and corpus."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from synthesis.tasks import SynthesisConfig

if TYPE_CHECKING:
    from review.store import Store
    from synthesis.corpus import Retriever
    from synthesis.embed import Embedder
    from synthesis.llm import LLM

PROMPTS = Path(__file__).parent / "prompts"
logger = logging.getLogger("synthesis")


class StageError(Exception):
    """A task cannot go on at this stage; the message is the reason stored with it."""


class Stopped(Exception):
    """The run is stopping; the task keeps its stage and continues on resume."""


@dataclass
class Context:
    store: Store
    run_id: str
    config: SynthesisConfig
    llm: LLM
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def source(self) -> str:
        """The Review `source` of this run's trajectories."""
        return f"synthesis:{self.run_id}"

    @property
    def workdir(self) -> Path:
        return self.store.path.parent / "synthesis" / self.run_id

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _corpus_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # embedding a corpus takes long
    _embedder: Embedder | None = field(default=None, repr=False)
    _retriever: Retriever | None = field(default=None, repr=False)
    _loading: tuple[float, float | None] | None = field(default=None, repr=False)  # (started, seconds taken)

    @property
    def embedder(self) -> Embedder:
        """Loaded once, on first use, however many stage threads ask at once."""
        from synthesis.embed import get_embedder

        with self._lock:
            if self._embedder is None:
                started = self._loading[0] if self._loading else time.monotonic()
                self._loading = (started, None)
                self._embedder = get_embedder(self.config.embedder)
                self._loading = (started, time.monotonic() - started)
            return self._embedder

    @property
    def embedder_state(self) -> str:
        """"not loaded", "loading 4 s" or "ready in 12.5 s", for the progress line."""
        if self._loading is None:
            return "not loaded"
        started, took = self._loading
        return f"loading {time.monotonic() - started:.0f} s" if took is None else f"ready in {took:.1f} s"

    def load_in_background(self) -> None:
        """Load the embedder and embed the corpus on a thread of their own, while the first requests are out."""
        self._loading = (time.monotonic(), None)
        threading.Thread(target=self._load, name="embedder", daemon=True).start()

    def _load(self) -> None:
        try:
            self.retriever  # noqa: B018 - building it loads the embedder and embeds the corpus
        except Exception:  # noqa: BLE001 - the stage that needs them meets the same error and fails its task with it
            logger.debug("loading the embedder or the corpus failed", exc_info=True)

    @property
    def retriever(self) -> Retriever:
        from synthesis.corpus import Retriever, demo_corpus, load_corpus

        embedder = self.embedder
        with self._corpus_lock:
            if self._retriever is None:
                corpus = load_corpus(self.config.corpus) if self.config.corpus else demo_corpus()
                self._retriever = Retriever(self.store, embedder, corpus, run_id=self.run_id,
                                            threshold=self.config.threshold, reuse_limit=self.config.reuse_limit)
            return self._retriever


def prompt(template: str, /, **values: object) -> str:
    """A template from synthesis/prompts/ with `$name` fields filled in."""
    return Template((PROMPTS / template).read_text()).substitute({k: str(v) for k, v in values.items()})


def parse_json(text: str, kind: type) -> object:
    """The first JSON value of `kind` (list or dict) in a model's answer, fenced or not."""
    opener = "[" if kind is list else "{"
    cleaned = re.sub(r"```(?:json)?", "", text)
    start = cleaned.find(opener)
    while start != -1:
        try:
            value, _ = json.JSONDecoder().raw_decode(cleaned[start:])
        except json.JSONDecodeError:
            start = cleaned.find(opener, start + 1)
            continue
        if isinstance(value, kind):
            return value
        start = cleaned.find(opener, start + 1)
    raise StageError(f"the model's answer holds no JSON {kind.__name__}: {text[:120]!r}")
