"""MM-Traj records -> model inputs, through the one renderer (`agent.render.render_messages`).

A training example is exactly what the agent loop serves: the record's own system prompt, the task turn with the
real images in place of their `Picture i:` tags (resized to the same `max_pixels` budget as serving), then the
assistant and feedback turns. Only assistant turns carry labels (their text and the turn-end token); the system
prompt, the task and every observation are masked with -100.

Everything is checked before any compute: a broken record, a missing image or an empty set stops the run with one
line that names the record.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.steps import Trajectory

MAX_LENGTH = 10_240  # the paper's
IGNORE = -100
OVERLONG = ("cut", "skip")


class DataError(Exception):
    """Training data that cannot be used; the message names the record and the problem."""


@dataclass
class Record:
    """A trajectory to train on and the bytes of its task images, in the order the task shows them."""

    id: str
    trajectory: Trajectory
    images: list[bytes] = field(default_factory=list)


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

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class Prepared:
    examples: list[Example]
    records: int
    cut: int = 0
    skipped_long: int = 0
    skipped_missing_images: int = 0

    def summary(self) -> str:
        tokens = sum(len(e) for e in self.examples)
        return (f"{len(self.examples)} examples from {self.records} records, {tokens:,} tokens; "
                f"over-long: {self.cut} cut at a turn boundary, {self.skipped_long} skipped; "
                f"{self.skipped_missing_images} skipped for missing images")


# ---------------------------------------------------------------- reading records


def load_release(path: str | Path, images: str | Path | None = None, *, skip_missing_images: bool = False
                 ) -> tuple[list[Record], int]:
    """Records of a release file (JSON list, JSONL, parquet, `datasets` folder) with their images.

    `images` is the folder or zip the release's image paths resolve in. Returns the records and how many were
    dropped for a missing image (only with `skip_missing_images`; otherwise a missing image is an error).
    """
    from review import formats
    from review.errors import StoreError

    try:
        loaded = formats.load(path)
        parsed = formats.check_records(loaded.records)
        source = formats.ImageSource(Path(images)) if images is not None else loaded.images
    except StoreError as exc:
        raise DataError(str(exc)) from None
    records, dropped = [], 0
    for item in parsed:
        names = item.trajectory.task.images
        found = [source.read(name) if source is not None else None for name in names]
        missing = [name for name, data in zip(names, found, strict=True) if data is None]
        if missing:
            if skip_missing_images:
                dropped += 1
                continue
            where = f"in {images}" if images is not None else "(no --images folder or zip given)"
            raise DataError(f"record {item.record_id!r}: image {missing[0]!r} not found {where}")
        records.append(Record(item.record_id, item.trajectory, found))
    return _nonempty(records, path), dropped


def load_store(db: str | Path, *, skip_missing_images: bool = False) -> tuple[list[Record], int]:
    """Approved trajectories of the store, with reviewers' edits applied, and their stored images."""
    from review.store import Store

    if not Path(db).is_file():
        raise DataError(f"{db}: no such database")
    records, dropped = [], 0
    with Store(db) as store:
        for detail in store.iter_details(status="approved"):
            by_name = {ref.name: ref for ref in detail.images}
            refs = [by_name.get(name) for name in detail.trajectory.task.images]
            missing = [name for name, ref in zip(detail.trajectory.task.images, refs, strict=True)
                       if ref is None or ref.missing or not ref.path.is_file()]
            if missing:
                if skip_missing_images:
                    dropped += 1
                    continue
                raise DataError(f"trajectory {detail.id!r}: image {missing[0]!r} is missing from the store")
            records.append(Record(detail.id, detail.trajectory, [ref.path.read_bytes() for ref in refs]))
    return _nonempty(records, f"{db} (approved trajectories)"), dropped


def _nonempty(records: list[Record], where: Any) -> list[Record]:
    if not records:
        raise DataError(f"{where}: no trajectories to train on")
    return records


# ---------------------------------------------------------------- encoding


class Encoder:
    """Turns records into `Example`s with a processor, masking all but the assistant turns."""

    def __init__(self, processor, *, max_pixels: int, max_length: int = MAX_LENGTH, overlong: str = "cut") -> None:
        if overlong not in OVERLONG:
            raise ValueError(f"overlong must be one of {OVERLONG}, not {overlong!r}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.model_max_length = max(self.tokenizer.model_max_length, 10 * max_length)  # we cut, not it
        self.max_pixels = max_pixels
        self.max_length = max_length
        self.overlong = overlong
        ids = self.tokenizer.convert_tokens_to_ids
        self.turn_start, self.turn_end = ids("<|im_start|>"), ids("<|im_end|>")
        self.assistant_header = self.tokenizer("assistant\n", add_special_tokens=False)["input_ids"]
        qwen = "Qwen2VL" in type(processor.image_processor).__name__
        self._image_kwargs = {"size": {"shortest_edge": _min_pixels(), "longest_edge": max_pixels}} if qwen else {}

    def prepare(self, records: Iterable[Record]) -> Prepared:
        """Encode every record; over-long ones are cut or skipped (counted). Raises DataError if none is left."""
        records = list(records)
        prepared = Prepared([], len(records))
        for record in records:
            example, status = self.encode(record)
            if status == "cut":
                prepared.cut += 1
            elif status == "skipped":
                prepared.skipped_long += 1
            if example is not None:
                prepared.examples.append(example)
        if not prepared.examples:
            raise DataError(f"every one of the {len(records)} records is longer than {self.max_length} tokens "
                            "with no assistant turn inside the limit")
        return prepared

    def encode(self, record: Record) -> tuple[Example | None, str]:
        """(example, "ok" | "cut" | "skipped")."""
        from agent.render import render_messages

        try:
            messages = render_messages(record.trajectory, [f"image {i}" for i in range(len(record.images))])
        except ValueError as exc:
            raise DataError(f"record {record.id!r}: {exc}") from None
        text = self.processor.apply_chat_template(messages, tokenize=False)
        images = [_decode_image(data, self.max_pixels, record.id) for data in record.images]
        inputs = self.processor(text=[text], images=images or None, return_tensors="pt",
                                **(self._image_kwargs if images else {}))
        input_ids = inputs["input_ids"][0]
        spans = self.assistant_spans(input_ids.tolist())
        if not spans:
            raise DataError(f"record {record.id!r}: no assistant turn to learn from")
        status, length = "ok", len(input_ids)
        if length > self.max_length:
            fitting = [end for _, end in spans if end <= self.max_length]
            if self.overlong == "skip" or not fitting:
                return None, "skipped"
            status, length = "cut", fitting[-1]
        labels = input_ids.new_full(input_ids.shape, IGNORE)
        for start, end in spans:
            labels[start:end] = input_ids[start:end]
        types = inputs.get("mm_token_type_ids")
        types = types[0] if types is not None else (input_ids * 0)
        return Example(
            id=record.id,
            input_ids=input_ids[:length].clone(),
            labels=labels[:length].clone(),
            mm_token_type_ids=types[:length].clone(),
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
            target_sizes=inputs.get("target_sizes"),
            n_images=len(images),
        ), status

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


def _min_pixels() -> int:
    from agent.models.images import MIN_PIXELS

    return MIN_PIXELS


def _decode_image(data: bytes, max_pixels: int, record_id: str):
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
