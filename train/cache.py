"""The encoded data set on disk: token ids, label masks and modality types of every example, no pixels.

A folder per key (the content of every record, its images included, and the processor, renderer and encoding
settings), so a second run over the same data starts at once and a change anywhere encodes afresh. Arrays are
flat files read through memory maps: a step touches only the pages of its own rows, and memory does not grow
with the data set. The folder appears whole or not at all (written under a temporary name, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.data import IGNORE, DataError, Encoded, Record, record_digest

FORMAT = 1  # bump when the files change shape
COMPLETE = "complete"


def default_root() -> Path:
    """$MAT_TRAIN_CACHE, else ~/.cache/mat-studio/train-tokens."""
    if os.environ.get("MAT_TRAIN_CACHE"):
        return Path(os.environ["MAT_TRAIN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mat-studio" / "train-tokens"


def settings_key(base: str | Path, **settings: Any) -> str:
    """Hash of what encoding depends on besides the records: the processor's files (tokenizer, chat template,
    image processor), the renderer and encoder code, transformers' version and `settings` (max pixels, ...)."""
    import transformers

    import agent.models.vlm
    import agent.render
    import train.data

    digest = hashlib.sha256(json.dumps({"format": FORMAT, "transformers": transformers.__version__, **settings},
                                       sort_keys=True).encode())
    for path in sorted(Path(base).iterdir()):
        if path.is_file() and path.suffix in (".json", ".jinja", ".txt", ".model", ".tiktoken") \
                and not path.name.endswith(".index.json") and path.name != "config.json":
            digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    for module in (agent.render, agent.models.vlm, train.data):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


@dataclass
class Scan:
    """Pass one over the records: their content key (the data's identity), and how many were dropped for a
    missing image."""

    key: str
    records: int
    dropped: int
    digests: list[str]

    def folder(self, root: Path, settings: str) -> Path:
        """The cache folder of these records encoded under `settings` (`settings_key`)."""
        return Path(root) / hashlib.sha256(f"{settings}:{self.key}".encode()).hexdigest()[:32]


def scan(records: Iterable[Record], *, skip_missing_images: bool, where: str) -> Scan:
    """Read every record and its image bytes once, for the key; a missing image stops here (or is skipped)."""
    digest = hashlib.sha256(f"skip_missing_images={skip_missing_images}".encode())
    digests, dropped, count = [], 0, 0
    for record in records:
        count += 1
        images = _images_or_none(record, skip_missing_images)
        if images is None:
            dropped += 1
            digests.append("")
            continue
        digests.append(record_digest(record, images))
        digest.update(digests[-1].encode())
    if count == dropped:
        raise DataError(f"{where}: no trajectories to train on")
    return Scan(digest.hexdigest(), count, dropped, digests)


def _images_or_none(record: Record, skip_missing_images: bool) -> list[bytes] | None:
    found = [record.reader.read(name) if name and record.reader is not None else None for name in record.images]
    missing = [name for name, data in zip(record.images, found, strict=True) if data is None]
    if not missing:
        return found
    if skip_missing_images:
        return None
    raise DataError(f"record {record.id!r}: image {missing[0] or '(not in the store)'!r} not found")


class TokenCache:
    """One encoded data set: `index` (per example: id, start, length, labelled tokens, image names) and the
    memory-mapped `input_ids`, `labelled` and `types` arrays."""

    def __init__(self, folder: Path) -> None:
        import numpy as np

        self.folder = folder
        self.summary = json.loads((folder / "summary.json").read_text())
        self.index: list[dict[str, Any]] = json.loads((folder / "index.json").read_text())
        total = self.summary["tokens"]
        self.input_ids = np.memmap(folder / "input_ids.bin", dtype=np.int32, mode="r", shape=(total,))
        self.labelled = np.memmap(folder / "labelled.bin", dtype=np.bool_, mode="r", shape=(total,))
        self.types = np.memmap(folder / "types.bin", dtype=np.int8, mode="r", shape=(total,))

    def __len__(self) -> int:
        return len(self.index)

    @property
    def lengths(self) -> list[int]:
        return [entry["length"] for entry in self.index]

    @property
    def label_tokens(self) -> list[int]:
        return [entry["labels"] for entry in self.index]

    def tokens(self, position: int) -> dict[str, Any]:
        """input_ids, labels (IGNORE where masked) and mm_token_type_ids of one example, as tensors."""
        import torch

        entry = self.index[position]
        window = slice(entry["start"], entry["start"] + entry["length"])
        ids = torch.from_numpy(self.input_ids[window].astype("int64"))
        labels = torch.where(torch.from_numpy(self.labelled[window].copy()), ids, IGNORE)
        return {"input_ids": ids, "labels": labels, "mm_token_type_ids": torch.from_numpy(self.types[window].astype("int64"))}

    def description(self) -> str:
        s = self.summary
        return (f"{len(self.index)} examples from {s['records']} records, {s['tokens']:,} tokens; over-long: "
                f"{s['cut']} cut at a turn boundary, {s['skipped_long']} skipped; {s['dropped']} skipped for missing "
                f"images")


def build(folder: Path, records: Iterable[Record], encode: Callable[[Record, list[bytes]], tuple[Encoded | None, str]],
          found: Scan, *, max_length: int, progress: Callable[[int], None] = lambda n: None) -> TokenCache:
    """Encode `records` (the same sequence `found` scanned) into `folder`; returns it opened."""

    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        return _build(folder, temporary, records, encode, found, max_length, progress)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)  # gone already when it became `folder`


def _build(folder: Path, temporary: Path, records: Iterable[Record], encode, found: Scan, max_length: int,
           progress: Callable[[int], None]) -> TokenCache:
    import numpy as np

    index, counts, start = [], {"cut": 0, "skipped_long": 0}, 0
    with open(temporary / "input_ids.bin", "wb") as ids_file, open(temporary / "labelled.bin", "wb") as label_file, \
            open(temporary / "types.bin", "wb") as types_file:
        for number, (record, digest) in enumerate(zip(records, found.digests, strict=True)):
            progress(number)
            if not digest:
                continue  # dropped for a missing image in the scan
            encoded, status = encode(record, record.image_bytes())
            if status != "ok":
                counts["cut" if status == "cut" else "skipped_long"] += 1
            if encoded is None:
                continue
            ids_file.write(encoded.input_ids.astype(np.int32).tobytes())
            label_file.write(encoded.labelled.astype(np.bool_).tobytes())
            types_file.write(encoded.types.astype(np.int8).tobytes())
            length = len(encoded.input_ids)
            index.append({"id": encoded.id, "start": start, "length": length,
                          "labels": int(encoded.labelled.sum()), "images": encoded.images})
            start += length
    if not index:
        raise DataError(f"every one of the {found.records - found.dropped} records is longer than {max_length} "
                        "tokens with no assistant turn inside the limit")
    (temporary / "index.json").write_text(json.dumps(index))
    (temporary / "summary.json").write_text(json.dumps({"records": found.records, "dropped": found.dropped,
                                                        "tokens": start, **counts}))
    (temporary / COMPLETE).write_text("")
    try:
        os.replace(temporary, folder)
    except OSError:  # another process built the same key meanwhile; theirs is as good as ours
        if not (folder / COMPLETE).is_file():
            raise
    return TokenCache(folder)


def find(folder: Path) -> TokenCache | None:
    return TokenCache(folder) if (folder / COMPLETE).is_file() else None
