"""Query de-duplication: the sketch index drops exactly what a full comparison drops, and the write lock is
not held while it decides (other writers of the store go on)."""

from __future__ import annotations

import threading
import time

import pytest

from review.store import Store
from synthesis.context import Context
from synthesis.dedup import NearDuplicates
from synthesis.queries import QueryStage
from synthesis.tasks import SynthesisConfig, new_run
from tests.support.query_vectors import queries_like


def test_the_index_drops_exactly_what_a_full_comparison_drops():
    vectors = queries_like(3000)
    index = NearDuplicates(0.9)
    kept: list[int] = []
    for start in range(0, len(vectors), 5):  # five candidates per request, as a run asks for them
        batch = vectors[start:start + 5]
        novel = index.novel(batch)
        index.add(batch[novel])
        kept += [start + i for i, fresh in enumerate(novel) if fresh]
    similarity, expected = vectors @ vectors.T, []
    for n in range(len(vectors)):
        if not expected or float(similarity[n, expected].max()) < 0.9:
            expected.append(n)
    assert kept == expected
    assert 150 < len(vectors) - len(kept) < 300  # about half the planted copies are above the threshold


@pytest.mark.usefixtures("timed_heap")
def test_deciding_what_is_new_holds_no_write_lock(tmp_path, monkeypatch):
    store = Store(tmp_path / "mat.db")
    config = SynthesisConfig(tasks=10, embedder="hash")
    run_id = new_run(store, config)
    stage = QueryStage(Context(store, run_id, config, llm=None), hand_on=lambda task: None)
    deciding = threading.Event()

    def slow_novel(vectors):
        deciding.set()
        time.sleep(1.5)
        return [True] * len(vectors)

    monkeypatch.setattr(stage.index, "novel", slow_novel)
    accepting = threading.Thread(target=stage.accept, args=(0, [("What is 2+2?", ["csv"])], queries_like(1)))
    accepting.start()
    assert deciding.wait(10)
    started = time.monotonic()
    with store.db.transaction() as tx:  # another writer (a stage saving its task) while the queries are compared
        tx.execute("UPDATE runs SET message = 'still writable' WHERE id = ?", (run_id,))
    waited = time.monotonic() - started
    accepting.join()
    assert waited < 1.0, f"a writer waited {waited:.1f} s for de-duplication"
    assert store.db.value("SELECT COUNT(*) FROM synthesis_tasks") == 1
