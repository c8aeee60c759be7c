"""The samples tests run on, as session fixtures (registered in tests/conftest.py).

The repository's own fixtures, written for this project in the release's shapes (tests/fixtures/README.md):

- `mmtraj_path` / `mmtraj_records`: 30 MM-Traj release records. The committed file leaves each system turn as
  `{"from": "system", "render": "mat", "imports": [...]}`; here it becomes the prompt agent/prompt.py renders,
  so it is byte for byte the text the code expects, and the file is written out as a release file.
- `gta_path`: a GTA `dataset.json` of 12 queries; `gta_folder()` lays it out with its pictures.
- `release_image_dir` (tests/support/train_records.py): the records' pictures, drawn by
  tests/support/pictures.py.

The real release samples in ../shared/data (or $MAT_SHARED_DATA) are an extra: `release_mmtraj_records`,
`release_mmtraj_path` and `release_gta_path` give them, and a test that takes `fidelity_records`,
`fidelity_mmtraj_path` or `fidelity_gta_path` runs on the fixtures and, as `[release]`, on the real sample.
Where the sample is absent those tests are deselected (not skipped), with one line saying how many and why.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.pictures import save_picture

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = Path(__file__).resolve().parents[2]
MMTRAJ_SAMPLE, GTA_SAMPLE = "mmtraj_sample.json", "gta_sample.json"
# Fixtures that read the real sample, and the file each needs; `fidelity_*` only for their `release` parameter.
RELEASE_FILES = {
    "release_mmtraj_path": MMTRAJ_SAMPLE, "release_mmtraj_records": MMTRAJ_SAMPLE,
    "fidelity_mmtraj_path": MMTRAJ_SAMPLE, "fidelity_records": MMTRAJ_SAMPLE,
    "release_gta_path": GTA_SAMPLE, "fidelity_gta_path": GTA_SAMPLE,
}
_DESELECTED = pytest.StashKey[str]()


def shared_data() -> Path:
    """Where the real release samples live: $MAT_SHARED_DATA, else ../shared/data beside the checkout."""
    configured = os.environ.get("MAT_SHARED_DATA")
    return Path(configured) if configured else REPO.parent / "shared" / "data"


# ------------------------------------------------------------------ the repository's fixtures


def fixture_records() -> list[dict]:
    """The committed MM-Traj fixture records, each system turn rendered by agent/prompt.py."""
    from agent.prompt import AUTHORIZED_IMPORTS, render_system_prompt
    from agent.tools import profile_tools

    records = json.loads((FIXTURES / "mmtraj_records.json").read_text(encoding="utf-8"))
    for record in records:
        system = record["conversations"][0]
        prompt = render_system_prompt(profile_tools(system["render"]), system.get("imports", AUTHORIZED_IMPORTS))
        record["conversations"][0] = {"from": "system", "value": prompt}
    return records


def gta_folder(sample: Path, root: Path) -> Path:
    """A GTA dataset.json laid out like the release: the file and image/ with every picture it names, drawn."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(sample, root / "dataset.json")
    for item in json.loads(sample.read_text()).values():
        for file in item["files"]:
            save_picture(file["path"], root / file["path"])
    return root


@pytest.fixture(scope="session")
def mmtraj_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture records as a release file (a JSON list, one key per line like the release)."""
    path = tmp_path_factory.mktemp("mmtraj") / "mmtraj.json"
    path.write_text(json.dumps(fixture_records(), indent=1, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def mmtraj_records(mmtraj_path: Path) -> list[dict]:
    return json.loads(mmtraj_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def gta_path() -> Path:
    return FIXTURES / "gta_dataset.json"


# ------------------------------------------------------------------ the real release samples (an extra)


def _shared(name: str) -> Path:
    path = shared_data() / name
    if not path.exists():  # deselected before this in a normal run; here for a test picked by hand
        pytest.skip(f"{path} is absent: the real release samples live in ../shared/data or $MAT_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def release_mmtraj_path() -> Path:
    return _shared(MMTRAJ_SAMPLE)


@pytest.fixture(scope="session")
def release_mmtraj_records(release_mmtraj_path: Path) -> list[dict]:
    return json.loads(release_mmtraj_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def release_gta_path() -> Path:
    return _shared(GTA_SAMPLE)


@pytest.fixture(params=["fixtures", "release"])
def fidelity_records(request: pytest.FixtureRequest) -> list[dict]:
    """The fixture records, then the real release sample's: for the checks that the release itself must pass."""
    name = "mmtraj_records" if request.param == "fixtures" else "release_mmtraj_records"
    return request.getfixturevalue(name)


@pytest.fixture(params=["fixtures", "release"])
def fidelity_mmtraj_path(request: pytest.FixtureRequest) -> Path:
    """The fixture records' release file, then the real release sample file."""
    return request.getfixturevalue("mmtraj_path" if request.param == "fixtures" else "release_mmtraj_path")


@pytest.fixture(params=["fixtures", "release"])
def fidelity_gta_path(request: pytest.FixtureRequest) -> Path:
    """The fixture GTA file, then the real GTA sample."""
    return request.getfixturevalue("gta_path" if request.param == "fixtures" else "release_gta_path")


def _release_files(item: pytest.Item) -> set[str]:
    """The release sample files `item` reads."""
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec else {}
    return {file for name, file in RELEASE_FILES.items()
            if name in item.fixturenames and (not name.startswith("fidelity_") or params.get(name) == "release")}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    folder = shared_data()
    absent = {name for name in (MMTRAJ_SAMPLE, GTA_SAMPLE) if not (folder / name).is_file()}
    if not absent:
        return
    deselected = [item for item in items if _release_files(item) & absent]
    if not deselected:
        return
    dropped = set(deselected)
    items[:] = [item for item in items if item not in dropped]
    config.hook.pytest_deselected(items=deselected)
    config.stash[_DESELECTED] = (
        f"release sample: {len(deselected)} tests deselected: {folder} has no {' or '.join(sorted(absent))} "
        "(the real GTA/MM-Traj samples, an extra CI runs; MAT_SHARED_DATA names a folder that has them)"
    )


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    return config.stash.get(_DESELECTED, None)
