"""Shared fixtures: the real MM-Traj and GTA samples from ../shared, offline settings, the browser found."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# Fixtures shared across test modules: the local OpenAI-compatible server, the tiny checkpoint, tool contexts;
# and the plugin that skips (or, under CI=true, fails) tests whose system package is missing and sums them up.
pytest_plugins = ["tests.support.openai_server", "tests.support.tiny", "tests.support.tool_fixtures",
                  "tests.support.train_records", "tests.support.skips"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
for _key in ("OPENAI_API_KEY", "MAT_API_KEY", "MAT_BASE_URL", "OPENAI_BASE_URL", "MAT_MODEL", "MAT_LOCAL_MODEL"):
    os.environ.pop(_key, None)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared samples live beside the checkout in ../shared")
    return path


@pytest.fixture(scope="session")
def mmtraj_path() -> Path:
    return _shared("mmtraj_sample.json")


@pytest.fixture(scope="session")
def mmtraj_records(mmtraj_path: Path) -> list[dict]:
    return json.loads(mmtraj_path.read_text())


@pytest.fixture(scope="session")
def gta_path() -> Path:
    return _shared("gta_sample.json")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright launches the Chromium that tests/support/browser.py found."""
    from tests.support.browser import launch_args

    return {**browser_type_launch_args, **launch_args()}
