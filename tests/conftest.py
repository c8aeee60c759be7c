"""Shared fixtures: the sample records (tests/support/samples.py), offline settings, the browser found."""

from __future__ import annotations

import gc
import os

import pytest

# Fixtures shared across test modules: the sample records and benchmark (the repository's own, and the real
# release samples as an extra), the local OpenAI-compatible server, the tiny checkpoint, tool contexts;
# and the plugin that skips (or, under CI=true, fails) tests whose system package is missing and sums them up.
pytest_plugins = ["tests.support.samples", "tests.support.openai_server", "tests.support.tiny",
                  "tests.support.tool_fixtures", "tests.support.train_records", "tests.support.skips"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
for _key in ("OPENAI_API_KEY", "MAT_API_KEY", "MAT_BASE_URL", "OPENAI_BASE_URL", "MAT_MODEL", "MAT_LOCAL_MODEL"):
    os.environ.pop(_key, None)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright launches the Chromium that tests/support/browser.py found."""
    from tests.support.browser import launch_args

    return {**browser_type_launch_args, **launch_args()}


@pytest.fixture
def timed_heap():
    """For a test that times our code in this process. By the middle of the suite earlier tests have left over
    a million objects alive here, and one full garbage collection of them took 1.7 s, which the timing would
    count as ours. The app freezes what it built at startup out of collection (core.memory); this freezes what
    is alive now, for the test's length."""
    gc.freeze()
    yield
    gc.unfreeze()
