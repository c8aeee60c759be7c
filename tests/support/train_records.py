"""Release records for the training tests: the pictures the records name, and short variants.

Release records ship without their image files, so `release_images` draws each picture at the path the records
name (tests/support/pictures.py: real-photo sizes). `short_records` keeps the records as they are but cuts their
system prompt to its last lines, so a tiny model on two CPU cores trains a step in about a second.
`sample_records` gives the benches their records: a release file named on their command line, else the
repository's own fixture records.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from agent.steps import Trajectory
from tests.support.pictures import save_picture


def sample_records(path: Path | None = None) -> list[dict]:
    """Release records to measure on: the file at `path` (the MM-Traj sample, the release), else the repository's
    own 30 release-shaped fixture records (tests/support/samples.py), which every clone has."""
    if path is not None:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    from tests.support.samples import fixture_records

    return fixture_records()


def release_images(records: list[dict], folder: Path) -> Path:
    """Draw every task picture of `records` at its path under `folder`."""
    for record in records:
        for name in Trajectory.from_conversations(record["conversations"]).task.images:
            if not (folder / name).exists():
                save_picture(name, folder / name)
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


def short_release(records: list[dict], folder: Path, count: int) -> tuple[Path, Path]:
    """The first `count` of `records`, shortened, as a release file in `folder`; and the folder of their pictures."""
    images = release_images(records, folder / "images")
    return write_records(short_records(records[:count]), folder / "short.json"), images


TINY_PIXELS = 64 * 28 * 28  # the image budget of the training tests: a few patches per picture


@pytest.fixture(scope="module")
def tiny_processor(tiny_checkpoint):
    """The tiny checkpoint's processor, as training loads it."""
    from train.trainer import load_processor

    return load_processor(str(tiny_checkpoint))


@pytest.fixture(scope="module")
def release_image_dir(mmtraj_records, tmp_path_factory) -> Path:
    """The pictures the fixture records name, at their release paths."""
    return release_images(mmtraj_records, tmp_path_factory.mktemp("release"))
