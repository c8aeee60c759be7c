"""What `python -m train --help` and the training benches name works in a user's clone, which has no ../shared:
the help names only paths a user has, and the benches run on records the repository ships (../shared hidden
with bubblewrap where this checkout has one)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.support.jail import ROOT, jailed
from train.cli import parser

SHARED = (ROOT.parent / "shared").resolve()  # a link, in this checkout


def test_the_help_names_no_path_a_clone_lacks():
    text = parser().format_help()
    assert "shared/" not in text and "mmtraj_sample" not in text
    assert "--db data/mat.db --tiny --out runs/tiny" in text and "--exclude-benchmark" in text


def _in_a_clone(*args: str) -> dict:
    """`python ARGS` with ../shared hidden; the last line of its output, as JSON."""
    result = jailed([sys.executable, *args], small=SHARED if SHARED.exists() else None, size=1 << 20, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.bwrap
def test_the_data_pipeline_bench_runs_on_the_repositorys_records():
    summary = _in_a_clone("bench/train_data.py", "--sizes", "40")
    assert summary["peak_rss_gib_40"] > 0 and summary["cold_records_per_s_40"] > 0


@pytest.mark.bwrap
def test_the_padding_bench_runs_on_the_repositorys_records():
    summary = _in_a_clone("bench/train_padding.py")
    assert 0 < summary["padding_3000_20480"] < summary["padding_30_20480"] < 1
