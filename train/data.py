"""MM-Traj records -> token ids and labels, through the one renderer (`agent.render.render_messages`).

A training example is exactly what the agent loop serves: the record's own system prompt, the task turn with the
real images in place of their `Picture i:` tags (resized to the same `max_pixels` budget as serving), then the
assistant and feedback turns, encoded by `agent.models.encode_chat` (control tokens in the text stay text). Only
assistant turns carry labels (their text and the turn-end token); the system prompt, the task and every
observation are masked with -100.

Records are read one at a time and never held all at once. Encoding needs each image's size, not its pixels:
the processor lays out image tokens from a blank stand-in of the same size, so up front only token ids, labels
and image references exist (`train.cache` keeps them on disk); pixels are built per step (`train.stream`).
Every image is still checked here (a corrupt one stops the run with one line that names the record).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.steps import Trajectory
from core.errors import UserError

MAX_LENGTH = 10_240  # the paper's
IGNORE = -100
OVERLONG = ("cut", "skip")


class DataError(UserError):
    """Training data that cannot be used; the message names the record and the problem."""


@dataclass
class Record:
    """A trajectory to train on and where its task images are read, in the order the task shows them."""

    id: str
    trajectory: Trajectory
    images: list[str] = field(default_factory=list)  # names the reader resolves
    reader: Any = None  # .read(name) -> bytes | None

    def image_bytes(self) -> list[bytes]:
        found = [self.reader.read(name) if name and self.reader is not None else None for name in self.images]
        missing = [name for name, data in zip(self.images, found, strict=True) if data is None]
        if missing:
            raise DataError(f"record {self.id!r}: image {missing[0]!r} is no longer readable")
        return found


@dataclass
class Example:
    """One tokenized trajectory: 1-D tensors of one length, plus its pixels and image layout (None without images):
    `image_grid_thw` for Qwen2-VL, `target_sizes` (one row per tile) for MiniCPM-V."""

    id: str
    input_ids: Any
    labels: Any
    mm_token_type_ids: Any
    pixel_values: Any = None
    image_grid_thw: Any = None
    position_ids: Any = None  # (3, L) mRoPE positions, filled in by `packing.add_rope_positions`
    target_sizes: Any = None
    n_images: int = 0
    weight: float = 0.0  # of each of its labelled tokens in its step's loss (`train.loss`)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


# ---------------------------------------------------------------- reading records, one at a time


class FileReader:
    """Reads images by their path (the store keeps them as files)."""

    def read(self, name: str) -> bytes | None:
        path = Path(name)
        return path.read_bytes() if path.is_file() else None


def iter_release(path: str | Path, images: str | Path | None = None) -> Iterator[Record]:
    """Records of a release file (JSON list, JSONL, parquet, `datasets` folder), checked one by one.

    `images` is the folder or zip the release's image paths resolve in. A JSON list or JSONL is read as a stream,
    so a 20K-record release is never in memory at once."""
    from review import formats
    from review.errors import StoreError

    try:
        raw, source = _raw_records(Path(path))
        reader = formats.ImageSource(Path(images)) if images is not None else source
        for index, item in enumerate(raw):
            parsed = formats.check_record(item, index)
            yield Record(parsed.record_id, parsed.trajectory, list(parsed.trajectory.task.images), reader)
    except StoreError as exc:
        raise DataError(str(exc)) from None


def iter_store(db: str | Path) -> Iterator[Record]:
    """Approved trajectories of the store, with reviewers' edits applied, and their stored images."""
    from review.store import Store

    if not Path(db).is_file():
        raise DataError(f"{db}: no such database")
    reader = FileReader()
    with Store(db) as store:
        for detail in store.iter_details(status="approved"):
            by_name = {ref.name: ref for ref in detail.images}
            names = []
            for name in detail.trajectory.task.images:
                ref = by_name.get(name)
                names.append("" if ref is None or ref.missing else str(ref.path))
            yield Record(detail.id, detail.trajectory, names, reader)


def _raw_records(path: Path) -> tuple[Iterator[Any], Any]:
    """(record dicts, where their images are: beside the file, as review import looks); JSON lists and JSONL stream."""
    from review import formats

    suffix = path.suffix.lower()
    if path.is_file() and suffix in (".json", ".jsonl"):
        stream = _json_list(path) if suffix == ".json" else _json_lines(path)
        return _or_reread(stream, path), formats.images_beside(path)
    loaded = formats.load(path)
    return iter(loaded.records), loaded.images


def _or_reread(stream: Iterator[Any], path: Path) -> Iterator[Any]:
    """The stream; on broken JSON, the review package's own one-line message for the file."""
    from review import formats

    try:
        yield from stream
    except (json.JSONDecodeError, UnicodeDecodeError, _NotAList):
        formats.load(path)  # raises StoreError with the file's problem in the review package's words
        raise


class _NotAList(ValueError):
    pass


def _json_lines(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _json_list(path: Path, chunk: int = 1 << 20) -> Iterator[Any]:
    """The items of a top-level JSON list, decoded one at a time from 1 MiB reads."""
    decoder = json.JSONDecoder()
    with path.open(encoding="utf-8") as handle:
        buffer, position = handle.read(chunk).lstrip(), 0
        if not buffer.startswith("["):
            raise _NotAList(path)
        position = 1
        while True:
            while True:  # skip whitespace and one comma between items
                stripped = buffer[position:].lstrip().removeprefix(",").lstrip()
                position = len(buffer) - len(stripped)
                if stripped or not (more := handle.read(chunk)):
                    break
                buffer, position = buffer[position:] + more, 0
            if buffer[position:position + 1] == "]":
                return
            while True:
                try:
                    item, end = decoder.raw_decode(buffer, position)
                    break
                except json.JSONDecodeError:
                    more = handle.read(chunk)
                    if not more:
                        raise
                    buffer, position = buffer[position:] + more, 0
            yield item
            buffer, position = buffer[end:], 0


# ---------------------------------------------------------------- checking images cheaply


def image_size(data: bytes, record_id: str) -> tuple[int, int]:
    """(width, height) of an image, checked without decoding it in full: a JPEG decodes at 1/8 scale, a PNG
    verifies its chunks; anything else decodes. A corrupt image is a DataError naming the record."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            if image.format == "PNG":
                image.verify()
            else:
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"record {record_id!r}: an image cannot be read ({type(exc).__name__}: {exc})") from None
    return size


def decode_image(data: bytes, max_pixels: int, record_id: str):
    """The image resized exactly as serving resizes it (`agent.models.images.fit_size`)."""
    from PIL import Image, UnidentifiedImageError

    from agent.models.images import fit_size

    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataError(f"record {record_id!r}: an image cannot be read ({type(exc).__name__})") from None
    size = fit_size(*image.size, max_pixels)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


def record_digest(record: Record, images: list[bytes]) -> str:
    """Content hash of one record: its conversations and its image bytes (the cache and run identity key)."""
    digest = hashlib.sha256(json.dumps([record.id, record.trajectory.to_conversations()], sort_keys=True).encode())
    for data in images:
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


# ---------------------------------------------------------------- encoding


@dataclass
class Encoded:
    """Token ids, label mask and modality types of one record (numpy arrays, no pixels)."""

    id: str
    input_ids: Any
    labelled: Any  # bool per token
    types: Any
    images: list[str]


class Encoder:
    """Turns records into token ids and labels with a processor, masking all but the assistant turns.

    Image tokens are laid out from each image's size: the processor sees a blank image of the served size, and
    its image processor is asked once per distinct size (`_SizeOnly`), so no pixels are computed here."""

    def __init__(self, processor, *, max_pixels: int, max_length: int = MAX_LENGTH, overlong: str = "cut") -> None:
        from agent.models import image_kwargs

        if overlong not in OVERLONG:
            raise UserError(f"overlong must be one of {OVERLONG}, not {overlong!r}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.model_max_length = max(self.tokenizer.model_max_length, 10 * max_length)  # we cut, not it
        self.max_pixels = max_pixels
        self.max_length = max_length
        self.overlong = overlong
        ids = self.tokenizer.convert_tokens_to_ids
        self.turn_start, self.turn_end = ids("<|im_start|>"), ids("<|im_end|>")
        self.assistant_header = self.tokenizer("assistant\n", add_special_tokens=False)["input_ids"]
        self.image_kwargs = image_kwargs(processor, max_pixels)
        self._layout = copy.copy(processor)
        self._layout.image_processor = _SizeOnly(processor.image_processor, self.image_kwargs)

    def encode(self, record: Record, images: list[bytes]) -> tuple[Encoded | None, str]:
        """(encoded, "ok" | "cut" | "skipped") for a record and its image bytes."""
        import numpy as np
        from PIL import Image

        from agent.models import encode_chat
        from agent.models.images import fit_size
        from agent.render import render_messages

        try:
            messages = render_messages(record.trajectory, [f"image {i}" for i in range(len(images))])
        except ValueError as exc:
            raise DataError(f"record {record.id!r}: {exc}") from None
        stand_ins = iter([Image.new("RGB", fit_size(*image_size(data, record.id), self.max_pixels))
                          for data in images])
        for message in messages:
            message["content"] = [dict(part, image=next(stand_ins)) if part["type"] == "image" else part
                                  for part in message["content"]]
        inputs = encode_chat(self._layout, messages, max_pixels=self.max_pixels, return_tensors=None)
        input_ids = np.asarray(inputs["input_ids"], dtype=np.int64).reshape(-1)
        spans = self.assistant_spans(input_ids.tolist())
        if not spans:
            raise DataError(f"record {record.id!r}: no assistant turn to learn from")
        status, length = "ok", len(input_ids)
        if length > self.max_length:
            fitting = [end for _, end in spans if end <= self.max_length]
            if self.overlong == "skip" or not fitting:
                return None, "skipped"
            status, length = "cut", fitting[-1]
        labelled = np.zeros(len(input_ids), dtype=bool)
        for start, end in spans:
            labelled[start:end] = True
        types = inputs.get("mm_token_type_ids")
        types = np.zeros_like(input_ids) if types is None else np.asarray(types, dtype=np.int64).reshape(-1)
        return Encoded(record.id, input_ids[:length], labelled[:length], types[:length], list(record.images)), status

    def assistant_spans(self, ids: list[int]) -> list[tuple[int, int]]:
        """[start, end) token ranges of each assistant turn's content plus its turn-end token."""
        header, spans = self.assistant_header, []
        for position, token in enumerate(ids):
            if token != self.turn_start or ids[position + 1:position + 1 + len(header)] != header:
                continue
            start = position + 1 + len(header)
            try:
                end = ids.index(self.turn_end, start) + 1
            except ValueError:  # an unterminated turn cannot be learned to stop
                break
            spans.append((start, end))
        return spans

    def example(self, record: Record) -> tuple[Example | None, str]:
        """The record as one in-memory Example with its pixels, for tests and benchmarks of a few records
        (training builds the same thing per step from the cache, `train.stream`)."""
        import torch

        images = record.image_bytes()
        encoded, status = self.encode(record, images)
        if encoded is None:
            return None, status
        ids = torch.from_numpy(encoded.input_ids)
        example = Example(encoded.id, ids, torch.where(torch.from_numpy(encoded.labelled), ids, IGNORE),
                          torch.from_numpy(encoded.types), n_images=len(images))
        add_pixels(example, self.processor, images, self.max_pixels)
        return example, status

    def examples(self, records) -> list[Example]:
        """Every record that fits, as in-memory Examples (`example`)."""
        return [example for example, _ in map(self.example, records) if example is not None]


def add_pixels(example: Example, processor, images: list[bytes], max_pixels: int) -> None:
    """Fill in the example's pixels and image layout from its image bytes, as serving computes them."""
    from agent.models import image_kwargs

    if not images:
        return
    decoded = [decode_image(data, max_pixels, example.id) for data in images]
    pixels = processor.image_processor(decoded, return_tensors="pt", **image_kwargs(processor, max_pixels))
    example.pixel_values = pixels["pixel_values"]
    example.image_grid_thw = pixels.get("image_grid_thw")
    example.target_sizes = pixels.get("target_sizes")


class _SizeOnly:
    """Stands in for an image processor when only the layout of image tokens matters: the layout of each size is
    computed once from a blank image, and the pixels returned are empty."""

    def __init__(self, real, kwargs: dict[str, Any]) -> None:
        self._real, self._kwargs, self._by_size = real, kwargs, {}

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def __call__(self, images, **ignored):
        import numpy as np
        import torch
        from PIL import Image
        from transformers import BatchFeature
        from transformers.image_utils import make_flat_list_of_images

        parts = []
        for image in make_flat_list_of_images(images):
            if image.size not in self._by_size:
                layout = self._real([Image.new("RGB", image.size)], **self._kwargs)
                self._by_size[image.size] = {k: v for k, v in layout.items() if k != "pixel_values"}
            parts.append(self._by_size[image.size])
        merged: dict[str, Any] = {"pixel_values": torch.zeros(0)}
        for key in parts[0]:
            values = [part[key] for part in parts]
            if isinstance(values[0], torch.Tensor):
                merged[key] = torch.cat(values)
            elif isinstance(values[0], np.ndarray):
                merged[key] = np.concatenate(values)
            else:
                merged[key] = [item for value in values for item in value]
        return BatchFeature(merged)
