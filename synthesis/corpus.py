"""Image–caption corpora and retrieval of an image for a file description.

A corpus is a folder of images plus a JSON or JSONL caption file, ShareGPT4V-style
(`{"image": "rel/path.jpg", "conversations": [{"from": "human", ...}, {"from": "gpt", "value": caption}]}`)
or plain (`{"image": ..., "caption": ...}`). The built-in demo corpus is fourteen public-domain (CC0)
scikit-image photos with captions written here; the files are read from scikit-image's install at run time.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import UserError
from review.formats import json_problem
from synthesis.embed import Embedder, encode_cached

if TYPE_CHECKING:
    from review.store import Store

# File in scikit-image's data folder -> caption (written for MAT Studio; the images are scikit-image's CC0 samples).
DEMO_CAPTIONS: dict[str, str] = {
    "astronaut.png": "Portrait of astronaut Eileen Collins in an orange flight suit in front of the American flag, "
                     "holding a helmet, with a space shuttle model beside her.",
    "camera.png": "Black-and-white photo of a man in a dark coat standing on a lawn operating a camera on a tripod, "
                  "with buildings in the distance.",
    "chelsea.png": "Close-up of a ginger tabby cat with green eyes and white whiskers looking to the side.",
    "coffee.png": "Top view of a cup of coffee on a white saucer with a spoon, on a wooden table.",
    "coins.png": "Grayscale photo of many old coins of different sizes laid out in rows on a dark background.",
    "horse.png": "Black silhouette of a horse walking, on a white background.",
    "rocket.jpg": "A rocket standing on the launch pad with its service tower, under a clear blue sky.",
    "moon.png": "Grayscale close-up photo of the surface of the Moon with craters.",
    "page.png": "Scanned page of printed text in grayscale, slightly uneven lighting, paragraphs of a book.",
    "text.png": "Grayscale photo of printed letters and numbers painted on a rough wall.",
    "hubble_deep_field.jpg": "Hubble deep field image of space with hundreds of small colorful galaxies and stars.",
    "ihc.png": "Microscope image of tissue stained brown and blue (immunohistochemistry), many cells.",
    "motorcycle_left.png": "A red and black motorcycle parked indoors in front of shelves and boxes.",
    "retina.jpg": "Medical fundus photograph of a human retina with blood vessels and the optic disc.",
}


class CorpusError(UserError):
    """The corpus cannot be used; the message says which file and why."""


@dataclass
class CorpusItem:
    image: Path
    caption: str


def load_corpus(path: str | Path) -> list[CorpusItem]:
    """Items of a corpus folder (with one *.json/*.jsonl caption file) or of a caption file itself."""
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.jsonl"), *path.glob("*.json")])
        if not files:
            raise CorpusError(f"{path}: no .json or .jsonl caption file in the folder")
        captions, root = files[0], path
    elif path.is_file():
        captions, root = path, path.parent
    else:
        raise CorpusError(f"{path}: no such folder or caption file")
    items = [_item(record, root, captions) for record in _records(captions)]
    found = [item for item in items if item is not None and item.image.is_file()]
    if not found:
        raise CorpusError(f"{captions}: no captioned image found under {root}")
    return found


def demo_corpus() -> list[CorpusItem]:
    """The built-in corpus: scikit-image's own sample files, used where scikit-image installed them."""
    try:
        import skimage
    except ImportError:
        raise CorpusError("the demo corpus needs scikit-image (pip install scikit-image), or give --images") from None
    folder = Path(skimage.__file__).parent / "data"
    return [CorpusItem(folder / name, caption) for name, caption in DEMO_CAPTIONS.items() if (folder / name).is_file()]


def _records(captions: Path) -> list[dict]:
    text = captions.read_text(encoding="utf-8")
    if captions.suffix == ".jsonl":
        return [_json(line, f"{captions.name}: line {number} is not JSON")
                for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    data = _json(text, captions.name)
    if not isinstance(data, list):
        raise CorpusError(f"{captions}: expected a list of records")
    return data


def _json(text: str, where: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problem = json_problem(exc)
        if "\n" not in text:  # one JSONL line: its own line number says nothing
            problem = problem.removeprefix("line 1, ")
        raise CorpusError(f"{where} ({problem})") from None


def _item(record: object, root: Path, captions: Path) -> CorpusItem | None:
    if not isinstance(record, dict) or not isinstance(record.get("image"), str):
        return None
    caption = record.get("caption")
    if not isinstance(caption, str):
        turns = record.get("conversations") or []
        answers = [t.get("value", "") for t in turns if isinstance(t, dict) and t.get("from") in ("gpt", "assistant")]
        caption = answers[0] if answers else None
    if not caption:
        return None
    return CorpusItem((root / record["image"]).resolve(), caption.strip())


class Retriever:
    """Picks the corpus image whose caption best matches a description, above `threshold`,
    skipping images already used `reuse_limit` times by other tasks of the run."""

    def __init__(self, store: Store, embedder: Embedder, corpus: list[CorpusItem], *, run_id: str,
                 threshold: float = 0.35, reuse_limit: int = 1) -> None:
        self.store, self.embedder, self.corpus = store, embedder, corpus
        self.run_id, self.threshold, self.reuse_limit = run_id, threshold, reuse_limit
        self.vectors = encode_cached(store, embedder, [item.caption for item in corpus])
        self.lock = threading.Lock()

    def pick(self, description: str, task_id: str, taken: set[str] = frozenset()) -> tuple[CorpusItem, float] | None:
        """The best unused match and its similarity, recorded as used by `task_id`; None when none passes."""
        query = encode_cached(self.store, self.embedder, [description])[0]
        scores = self.vectors @ query
        with self.lock:
            uses = self._uses(task_id)
            for index in np.argsort(-scores):
                if scores[index] < self.threshold:
                    return None
                item = self.corpus[index]
                if str(item.image) in taken or uses.get(str(item.image), 0) >= self.reuse_limit:
                    continue
                with self.store.db.transaction() as tx:
                    tx.execute("INSERT OR IGNORE INTO synthesis_image_uses VALUES (?, ?, ?)",
                               (self.run_id, str(item.image), task_id))
                return item, float(scores[index])
        return None

    def release(self, task_id: str) -> None:
        """Forget a task's picks (its files stage is starting again after an interruption)."""
        with self.store.db.transaction() as tx:
            tx.execute("DELETE FROM synthesis_image_uses WHERE run_id = ? AND task_id = ?", (self.run_id, task_id))

    def _uses(self, task_id: str) -> dict[str, int]:
        return dict(self.store.db.read(
            """SELECT image, COUNT(*) FROM synthesis_image_uses WHERE run_id = ? AND task_id != ?
               GROUP BY image""", (self.run_id, task_id)))
