"""A machine without Chromium or bubblewrap: tests skip saying how to run them (fail under CI=true), the app runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.app_server import free_port

REPO = Path(__file__).resolve().parents[1]

# A machine's worth of tests that need what this one is made to lack; the conftest hides Debian's Chromium paths.
HIDE_CHROMIUM = "from tests.support import browser\nbrowser.KNOWN_PATHS = ()\n"
NEEDY_TESTS = '''
import pytest

@pytest.mark.browser
def test_page():
    pass

@pytest.mark.bwrap
def test_isolated():
    pass

@pytest.mark.gpu
def test_cuda():
    pytest.skip("needs a CUDA device")

@pytest.mark.network
def test_online():
    pytest.skip("no network: DuckDuckGo is unreachable from this machine")

def test_sample():
    pytest.skip("../shared/data/gta_sample.json is absent")

def test_plain():
    assert 1 + 1 == 2
'''


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a machine without chromium or bwrap on PATH and no browser Playwright installed."""
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "PYTEST_ADDOPTS")}
    env.update(PATH=str(tmp_path / "empty-bin"), PLAYWRIGHT_BROWSERS_PATH=str(tmp_path / "no-playwright-browsers"),
               PYTHONPATH=str(REPO), **extra)
    return env


def run_needy_tests(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(HIDE_CHROMIUM)
    (tmp_path / "test_needy.py").write_text(NEEDY_TESTS)
    argv = [sys.executable, "-m", "pytest", "-p", "tests.support.skips", "-p", "no:cacheprovider", "-q", "-rsE",
            "--rootdir", str(tmp_path), "test_needy.py"]
    return subprocess.run(argv, cwd=tmp_path, env=bare_env(tmp_path, **extra), capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory) -> subprocess.CompletedProcess:
    return run_needy_tests(tmp_path_factory.mktemp("bare"))


def test_without_chromium_browser_tests_skip_naming_the_install_command(bare_run):
    assert bare_run.returncode == 0, bare_run.stdout + bare_run.stderr
    assert ("Chromium is not installed (apt-get install chromium, or with internet: playwright install chromium)"
            in bare_run.stdout)
    assert "bwrap is not installed (apt-get install bubblewrap)" in bare_run.stdout
    assert "1 passed, 5 skipped" in bare_run.stdout


def test_the_last_block_lists_each_skipped_group_and_its_command(bare_run):
    out = bare_run.stdout
    assert "what was skipped, and how to run it" in out
    block = out[out.index("what was skipped, and how to run it"):].splitlines()[1:6]
    assert block == [
        "browser tests: 1 skipped; to run them: apt-get install chromium   "
        "(or, with internet: playwright install chromium)",
        "sandbox-isolation tests: 1 skipped; to run them: apt-get install bubblewrap",
        "GPU tests: 1 skipped; to run them: make clean test TORCH='<a CUDA build of torch>'   "
        "(on a machine with an NVIDIA GPU)",
        "network tests: 1 skipped; to run them: make test   (on a machine with internet access)",
        "other: 1 skipped: ../shared/data/gta_sample.json is absent",
    ]
    assert out.index("short test summary info") < out.index("what was skipped")  # the block comes last


def test_under_ci_a_missing_browser_or_bwrap_is_a_failure(tmp_path):
    done = run_needy_tests(tmp_path, CI="true")
    assert done.returncode == 1
    for name in ("test_page", "test_isolated"):
        assert f"ERROR test_needy.py::{name} - Failed:" in done.stdout
    assert "CI=true allows no skip for a missing package" in done.stdout
    assert "1 passed, 3 skipped, 2 errors" in done.stdout  # GPU and network cannot be installed: still skips


def test_a_chromium_that_playwright_installed_is_found(tmp_path):
    """With Debian's Chromium hidden, the browser `playwright install chromium` would have put in its registry."""
    script = HIDE_CHROMIUM + textwrap.dedent("""
        import os
        from playwright.sync_api import sync_playwright
        with sync_playwright() as playwright:
            expected = playwright.chromium.executable_path
        os.makedirs(os.path.dirname(expected))
        with open(expected, "w") as stub:
            stub.write("#!/bin/sh\\n")
        os.chmod(expected, 0o755)
        print(repr(browser.find_chromium() == expected), expected)
    """)
    done = subprocess.run([sys.executable, "-c", script], env=bare_env(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.startswith("True " + str(tmp_path / "no-playwright-browsers")), done.stdout + done.stderr


def test_the_app_starts_without_bubblewrap_and_says_so(tmp_path):
    port = free_port()
    env = bare_env(tmp_path, GRADIO_SERVER_PORT=str(port), MAT_DATA_DIR=str(tmp_path / "data"))
    env.pop("MAT_SANDBOX", None)
    app = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("Running on" in line for line in lines):
            line = app.stdout.readline()
            assert line, "".join(lines)  # the app exited before serving
            lines.append(line)
        terminal = [line for line in lines if line.startswith("Sandbox: ")]
        assert len(terminal) == 1, "".join(lines)
        assert "weaker fallback" in terminal[0] and "`apt-get install bubblewrap`" in terminal[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as response:
            config = json.load(response)
        notice = next(c["props"]["value"] for c in config["components"] if c["props"].get("elem_id") == "chat-notice")
        assert notice.startswith("**Sandbox:** `fallback` — bubblewrap is not installed")
        assert "weaker fallback" in notice and "`apt-get install bubblewrap`" in notice
    finally:
        app.terminate()
        app.wait(timeout=30)


def test_a_fallback_asked_for_says_how_to_get_bwrap_back(monkeypatch):
    from agent.sandbox import sandbox_notice

    monkeypatch.setenv("MAT_SANDBOX", "fallback")
    notice = sandbox_notice()
    assert notice.startswith("`fallback` (MAT_SANDBOX=fallback)")
    assert "weaker fallback" in notice and "Unset MAT_SANDBOX" in notice
