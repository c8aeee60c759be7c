"""Benchmark tasks never reach training: a record that is a benchmark query evaluation met (the same or a near
copy) is refused in one line; `--exclude-benchmark` leaves out every overlapping record (same query, near
duplicate, a shared 13-gram, the same image) and says how many; every run's log has one line per benchmark."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from review.contamination import Query
from tests.support.train_records import short_release
from train.contamination import Guard
from train.data import DataError, iter_release

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(mmtraj_records, tmp_path_factory) -> tuple[Path, Path]:
    return short_release(mmtraj_records, tmp_path_factory.mktemp("data"), 6)


@pytest.fixture(scope="module")
def gta(dataset) -> list[Query]:
    """Benchmark queries as evaluation remembers them, each overlapping one training record in one way."""
    data, images = dataset
    records = list(iter_release(data, images))
    texts = {record.id: record.trajectory.task.text for record in records}
    poster = next(record for record in records if record.images)
    digest = hashlib.sha256(poster.image_bytes()[0]).hexdigest()
    return [
        Query("q-exact", texts[records[1].id].upper()),  # the same question, in capitals
        Query("q-near", texts[records[2].id].replace("each month", "every month")),
        Query("q-ngram", "A nutrition quiz, part three. I wonder how many calories are in an 80-gram bowl of plain "
                         "granola? Look it up and compare it with muesli and porridge oats of the same weight."),
        Query("q-image", "Design a flyer for a lemonade stand from this photo.", (digest,)),
        Query("q-apart", "Which river flows through the capital shown on this map?"),
    ]


def test_a_benchmark_task_is_refused_naming_the_record_and_the_task(dataset, gta):
    data, images = dataset
    records = list(iter_release(data, images))
    guard = Guard({"gta": gta})
    with pytest.raises(DataError) as refused:
        list(guard.filter(records))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"record {records[1].id!r} is GTA task 'q-exact' (the same query)")
    assert "--exclude-benchmark gta" in message


def test_exclude_benchmark_leaves_out_every_kind_of_overlap_and_counts_it(dataset, gta):
    data, images = dataset
    records = list(iter_release(data, images))
    guard = Guard({"gta": gta, "gaia": [Query("g1", "What is the airspeed of an unladen swallow?")]}, ["gta"])
    kept = [record.id for record in guard.filter(records)]
    poster = next(record for record in records if record.images)
    assert set(kept) == {r.id for r in records} - {records[0].id, records[1].id, records[2].id, poster.id}
    assert [record.id for record in guard.filter(records)] == kept  # a second pass (encoding) leaves out the same
    first, *summaries = guard.report()
    assert first == ("--exclude-benchmark gta: left out 4 of 6 records (GTA: same query 1, near duplicate 2, "
                     "shared 13-gram 3, same image 1)")
    assert summaries == [
        "contamination: GAIA: 0 of 1 benchmark queries (0.0%) overlap 0 of 2 training queries (exact 0, "
        "near-duplicate ≥0.8 0, 13-gram 0, same image 0); images compared: 3 training, 0 benchmark",
        "contamination: GTA: 0 of 5 benchmark queries (0.0%) overlap 0 of 2 training queries (exact 0, "
        "near-duplicate ≥0.8 0, 13-gram 0, same image 0); images compared: 3 training, 1 benchmark",
    ]


def test_overlap_short_of_a_copy_is_kept_and_reported(dataset, gta):
    data, images = dataset
    records = list(iter_release(data, images))
    kept = Guard({"gta": gta[2:]}).filter(records)  # a shared 13-gram and a shared image only
    guard = Guard({"gta": gta[2:]})
    assert len(list(guard.filter(records))) == len(records) == len(list(kept))
    (line,) = guard.report()
    assert line.startswith("contamination: GTA: 2 of 3 benchmark queries (66.7%) overlap 2 of 6 training queries "
                           "(exact 0, near-duplicate ≥0.8 0, 13-gram 1, same image 1)")


def test_a_store_that_knows_no_benchmark_says_so_and_how_to_check_one(tmp_path):
    (line,) = Guard({}, where=f"the store {tmp_path / 'mat.db'}").report()
    assert line.startswith(f"contamination: no benchmark is known to the store {tmp_path / 'mat.db'}")
    assert "python -m eval contamination" in line
    with pytest.raises(DataError, match=r"^--exclude-benchmark gaia: the store .* holds no GAIA queries "
                                        r"\(it knows gta\)"):
        Guard({"gta": []}, ["gaia"], "the store x")


def _train(dataset, db: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    data, images = dataset
    argv = [sys.executable, "-m", "train", "--data", str(data), "--images", str(images), "--tiny", "--db", str(db),
            "--out", str(out), "--cache-dir", str(out.parent / "cache"), "--max-length", "2048", "--row-tokens",
            "2048", "--token-budget", "2048", "--max-steps", "1", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=ROOT,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_the_cli_refuses_a_benchmark_task_and_trains_without_the_excluded_ones(dataset, gta, tmp_path):
    from review.benchmarks import remember
    from review.store import Store

    db = tmp_path / "mat.db"
    with Store(db) as store:
        remember(store, "gta", gta)
    refused = _train(dataset, db, tmp_path / "refused")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines()[-1].startswith("error: record ")
    assert "is GTA task 'q-exact' (the same query)" in refused.stderr
    assert not (tmp_path / "refused" / "run.json").exists()  # refused before the run took its folder

    excluded = _train(dataset, db, tmp_path / "clean", "--exclude-benchmark", "gta")
    assert excluded.returncode == 0, excluded.stderr[-2000:]
    log = excluded.stderr.splitlines()
    assert "--exclude-benchmark gta: left out 4 of 6 records (GTA: same query 1, near duplicate 2, shared 13-gram 3, " \
           "same image 1)" in log
    assert any(line.startswith("contamination: GTA: 0 of 5 benchmark queries (0.0%) overlap 0 of 2 training")
               for line in log)
