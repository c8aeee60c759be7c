"""Tests that need what a machine may lack, and the block at the end of `make test` that sums up their skips.

A test marked `browser` or `bwrap` needs a system package: where it is absent the test skips with the
command that installs it, except under CI=true (set by `.ci/run`), where a missing package is a failure.
GPU and network tests skip on their own (a machine cannot install those); they are only counted here.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import NoReturn

import pytest


@dataclass(frozen=True)
class Group:
    marker: str
    about: str
    title: str
    enable: str  # the one command that makes the group run


GROUPS = (
    Group("browser", "drives Chromium through Playwright", "browser tests",
          "apt-get install chromium   (or, with internet: playwright install chromium)"),
    Group("bwrap", "runs model code under the bwrap sandbox", "sandbox-isolation tests", "apt-get install bubblewrap"),
    Group("gpu", "needs a CUDA device", "GPU tests",
          "make clean test TORCH='<a CUDA build of torch>'   (on a machine with an NVIDIA GPU)"),
    Group("network", "needs the internet", "network tests", "make test   (on a machine with internet access)"),
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(package: str, install: str) -> NoReturn:
    """Skip the test for a package this machine lacks; under CI=true fail it instead."""
    message = f"{package} is not installed ({install})"
    if in_ci():
        pytest.fail(f"{message}; CI=true allows no skip for a missing package", pytrace=False)
    pytest.skip(message)


def pytest_configure(config: pytest.Config) -> None:
    for group in GROUPS:
        config.addinivalue_line("markers", f"{group.marker}: {group.about}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Look for a browser now, before any test starts Playwright's event loop.
    if any(item.get_closest_marker("browser") for item in items):
        from tests.support.browser import chromium

        chromium()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("browser"):
        from tests.support.browser import require_chromium

        require_chromium()
    if item.get_closest_marker("bwrap"):
        from tests.support.sandbox_levels import require_bwrap

        require_bwrap()


def group_of(report) -> Group | None:
    keywords = getattr(report, "keywords", {})  # a module skipped whole has none
    return next((group for group in GROUPS if group.marker in keywords), None)


def skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def summary_lines(reports: list) -> list[str]:
    """Skips counted per group with the command that enables it; the rest by reason."""
    groups: Counter[Group] = Counter()
    others: Counter[str] = Counter()
    for report in reports:
        group = group_of(report)
        if group:
            groups[group] += 1
        else:
            others[skip_reason(report)] += 1
    lines = [f"{group.title}: {groups[group]} skipped; to run them: {group.enable}" for group in GROUPS if groups[group]]
    lines += [f"other: {count} skipped: {reason}" for reason, count in others.most_common()]
    return lines


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    """After pytest's own summary, so the block is the last thing before the counts."""
    yield
    reports = terminalreporter.stats.get("skipped", [])
    if not reports:
        return
    terminalreporter.section("what was skipped, and how to run it", sep="-")
    for line in summary_lines(reports):
        terminalreporter.line(line)
