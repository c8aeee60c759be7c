"""`python -m review decide`: a curator who scripts curates, one trajectory or many by filter (a dry run first);
each decision is a review event like one made on the page. Real subprocesses on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from review.store import Filters, Store
from tests.test_review_cli import review


def _store(tmp_path: Path, mmtraj_path: Path) -> Path:
    db = tmp_path / "mat.db"
    with Store(db) as store:
        store.import_file(mmtraj_path, source="release")
    return db


def test_decide_one_trajectory_by_id(tmp_path, mmtraj_path):
    db = _store(tmp_path, mmtraj_path)
    approved = review("decide", "FQ8cj0s_", "--approve", "--reviewer", "ann", "--db", db)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith("FQ8cj0s_: approved by ann")
    rejected = review("decide", "v7xej1k3", "--reject", "wrong_answer", "hallucination", "--note", "list is short",
                      "--reviewer", "bob", "--db", db, "--request-id", "cli-1")
    assert rejected.returncode == 0, rejected.stderr
    assert review("decide", "v7xej1k3", "--reject", "wrong_answer", "--reviewer", "bob", "--db", db,
                  "--request-id", "cli-1").returncode == 0  # the same id again: nothing new
    with Store(db) as store:
        assert store.detail("FQ8cj0s_").status == "approved"
        (event,) = store.detail("v7xej1k3").events
        assert (event.reviewer, event.decision, event.reasons, event.note) == (
            "bob", "rejected", ["wrong_answer", "hallucination"], "list is short")

    unknown = review("decide", "v7xej1k3", "--reject", "meh", "--reviewer", "bob", "--db", db)
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown reason code 'meh'")


def test_someone_elses_trajectory_needs_an_explicit_take_over(tmp_path, mmtraj_path):
    db = _store(tmp_path, mmtraj_path)
    with Store(db) as store:
        store.claim("FQ8cj0s_", "alice")
    refused = review("decide", "FQ8cj0s_", "--approve", "--reviewer", "bob", "--db", db)
    assert refused.returncode == 2 and "FQ8cj0s_ is held by alice until" in refused.stderr
    assert "Traceback" not in refused.stderr and refused.stderr.count("\n") == 1
    taken = review("decide", "FQ8cj0s_", "--approve", "--reviewer", "bob", "--take-over", "--db", db)
    assert taken.returncode == 0, taken.stderr
    with Store(db) as store:
        events = store.detail("FQ8cj0s_").events
        assert [(e.kind, e.reviewer, e.payload) for e in events] == [
            ("claim", "alice", None), ("claim", "bob", {"taken_from": "alice"}), ("decision", "bob", None)]


def test_bulk_decisions_count_first_then_record_one_event_each(tmp_path, mmtraj_path):
    db = _store(tmp_path, mmtraj_path)
    with Store(db) as store:
        said_yes = [row.id for row in store.query(Filters(verdict="yes"), limit=100).rows]
        reproduced, differed = said_yes[:5], said_yes[5:7]
        for trajectory_id in reproduced:
            store.record_replay(trajectory_id, True)
        for trajectory_id in differed:
            store.record_replay(trajectory_id, False)
        store.record_replay(said_yes[-1], True)
        store.claim(said_yes[-1], "alice")  # held by someone else: left alone
    filters = ("--verdict", "yes", "--replay", "reproduced")

    dry = review("decide", "--approve", "--reviewer", "ann", "--db", db, *filters)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("6 pending trajectories match: they would be approved. Nothing was recorded")
    with Store(db) as store:
        assert store.counts()["approved"] == 0

    done = review("decide", "--approve", "--reviewer", "ann", "--db", db, *filters, "--yes")
    assert done.returncode == 0, done.stderr
    assert "5 approved; 1 left alone because alice holds them" in done.stdout
    with Store(db) as store:
        assert {row.id for row in store.query(Filters(status="approved")).rows} == set(reproduced)
        assert all([(e.kind, e.reviewer) for e in store.detail(t).events] == [("decision", "ann")]
                   for t in reproduced)
        assert {row.id for row in store.query(Filters(replay="differs")).rows} == set(differed)
    assert review("decide", "FQ8cj0s_", "--approve", "--reviewer", "ann", "--db", db, *filters).returncode == 2
