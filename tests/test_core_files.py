"""Exports and records are written whole or not at all: a failure halfway leaves the previous file as it was."""

from __future__ import annotations

import pytest

from core.files import atomic_folder, atomic_write


def test_a_write_that_fails_halfway_leaves_the_old_file_and_no_litter(tmp_path):
    target = tmp_path / "export.json"
    target.write_text("[the export from yesterday]")
    with pytest.raises(OSError), atomic_write(target) as handle:
        handle.write("[half of tod")
        raise OSError(28, "No space left on device")
    assert target.read_text() == "[the export from yesterday]"
    assert [path.name for path in tmp_path.iterdir()] == ["export.json"]
    with atomic_write(target) as handle:
        handle.write("[today]")
    assert target.read_text() == "[today]"


def test_a_folder_takes_the_old_ones_place_only_when_complete(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "data.arrow").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as partial:
        (partial / "data.arrow").write_text("ne")
        raise RuntimeError("killed")
    assert (target / "data.arrow").read_text() == "old"
    with atomic_folder(target) as partial:
        (partial / "data.arrow").write_text("new")
    assert (target / "data.arrow").read_text() == "new"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dataset"]
