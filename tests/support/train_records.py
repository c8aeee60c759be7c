"""Release records for the training tests: images the sample names but does not ship, and short variants.

The MM-Traj sample carries no image files, so `release_images` draws a small picture at every path the records
name (a stand-in for the release's photos). `short_records` keeps the records as they are but cuts their system
prompt to its last lines, so a tiny model on two CPU cores trains a step in about a second.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from PIL import Image

from agent.steps import Trajectory


def release_images(records: list[dict], folder: Path) -> Path:
    """Draw a 96x64 image (colour from its index) at every task image path of `records`, under `folder`."""
    count = 0
    for record in records:
        for name in Trajectory.from_conversations(record["conversations"]).task.images:
            target = folder / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (96, 64), (40 * count % 256, 90, 160)).save(target, format="PNG")
                count += 1
    return folder


def short_records(records: list[dict], keep_chars: int = 300) -> list[dict]:
    """Copies of `records` whose system prompt is cut to its last `keep_chars` characters."""
    short = copy.deepcopy(records)
    for record in short:
        record["conversations"][0]["value"] = record["conversations"][0]["value"][-keep_chars:]
    return short


def write_records(records: list[dict], path: Path) -> Path:
    path.write_text(json.dumps(records))
    return path


TINY_PIXELS = 64 * 28 * 28  # the image budget of the training tests: a few patches per picture


@pytest.fixture(scope="module")
def tiny_processor(tiny_checkpoint):
    """The tiny checkpoint's processor, as training loads it."""
    from train.trainer import load_processor

    return load_processor(str(tiny_checkpoint))


@pytest.fixture(scope="module")
def release_image_dir(mmtraj_records, tmp_path_factory) -> Path:
    """Stand-in pictures at every path the release sample names."""
    return release_images(mmtraj_records, tmp_path_factory.mktemp("release"))
