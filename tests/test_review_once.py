"""Decisions made once: a decision carries its client's id, and sending it again (a retry, also after the process
that recorded it was killed before it could reply) records nothing new and gives back what was recorded."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import Client

from review.store import Store, StoreError
from tests.support.review_app import review_server

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")


def _decisions(store: Store, trajectory_id: str) -> list:
    return [event for event in store.detail(trajectory_id).events if event.kind == "decision"]


def test_a_retried_decision_gives_back_the_first_and_records_nothing(tmp_path, mmtraj_records):
    with Store(tmp_path / "mat.db") as store:
        store.import_records(mmtraj_records[:2], source="release")
        first, second = (row.id for row in store.query().rows)
        recorded = store.decide(first, "ann", "rejected", ["wrong_answer"], "off by one", request_id="r-1")
        again = store.decide(first, "ann", "rejected", ["wrong_answer"], "off by one", request_id="r-1")
        assert again == recorded and len(_decisions(store, first)) == 1
        with pytest.raises(StoreError, match=f"'r-1' was already used for {first}"):
            store.decide(second, "ann", "approved", request_id="r-1")
        assert _decisions(store, second) == []
        store.decide(first, "ann", "approved", request_id="r-2")  # a new id is a new decision
        assert [e.decision for e in _decisions(store, first)] == ["rejected", "approved"]
        # The same decision pressed again (the queue ran dry and the item stayed open) is the one in force.
        repeated = store.decide(first, "ann", "approved", request_id="r-3")
        assert repeated.request_id == "r-2" and len(_decisions(store, first)) == 2
        store.decide(first, "bob", "approved", request_id="r-4")  # someone else's decision is theirs to record
        assert [e.reviewer for e in _decisions(store, first)] == ["ann", "ann", "bob"]


_KILLED_AFTER_COMMIT = """
import os, signal, sys
from review.store import Store
Store(sys.argv[1]).decide(sys.argv[2], "ann", "approved", request_id="kill-1")
os.kill(os.getpid(), signal.SIGKILL)  # committed, and gone before anyone hears of it
"""
_RETRY = """
import sys
from review.store import Store
print(Store(sys.argv[1]).decide(sys.argv[2], "ann", "approved", request_id="kill-1").id)
"""


def test_a_decision_killed_between_commit_and_reply_is_not_recorded_twice_when_retried(tmp_path, mmtraj_records):
    with Store(tmp_path / "mat.db") as store:
        store.import_records(mmtraj_records[:1], source="release")
        trajectory_id = store.query().rows[0].id
    killed = subprocess.run([sys.executable, "-c", _KILLED_AFTER_COMMIT, str(tmp_path / "mat.db"), trajectory_id],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    retried = subprocess.run([sys.executable, "-c", _RETRY, str(tmp_path / "mat.db"), trajectory_id], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert retried.returncode == 0, retried.stderr
    with Store(tmp_path / "mat.db") as store:
        (decision,) = _decisions(store, trajectory_id)
        assert int(retried.stdout) == decision.id and decision.request_id == "kill-1"
        assert store.detail(trajectory_id).status == "approved"


def test_the_page_records_a_resent_decision_once_even_after_moving_on(tmp_path, mmtraj_path):
    with review_server(tmp_path, mmtraj_path) as (url, settings):
        client = Client(url, verbose=False)
        client.predict("any", [], "any", "any", "any", "any", "any", "", api_name="/review_filter")
        *_, header, _viewer = client.predict("ann", api_name="/review_next_pending")
        taken = header.split("<b>", 1)[1].split("</b>", 1)[0]
        first = client.predict("ann", [], "", True, "page-1", api_name="/review_approved")
        again = client.predict("ann", [], "", True, "page-1", api_name="/review_approved")  # the reply was lost
        assert again[3] == first[3]  # the same page: the retry did not decide the item it had moved on to
        client.predict("ann", "page-2", api_name="/review_undo")
        client.predict("ann", "page-2", api_name="/review_undo")
        with Store(settings.db) as store:
            assert len(_decisions(store, taken)) == 1
            assert [e.kind for e in store.detail(taken).events if e.kind != "claim"] == ["decision", "undo"]
            assert store.counts()["approved"] == 0
