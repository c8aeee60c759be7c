"""The review store on a real SQLite file: events, edits, undo, claims, paging, search, concurrency."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from agent.steps import Step, Task, Trajectory
from review.store import REJECT_REASONS, Filters, Store, StoreError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path, mmtraj_records: list[dict]) -> Store:
    opened = Store(tmp_path / "mat.db")
    opened.import_records(mmtraj_records, source="release")
    yield opened
    opened.close()


def test_sample_imports_with_verdicts_tools_and_missing_images(store: Store):
    assert store.counts() == {"pending": 30, "approved": 0, "rejected": 0, "skipped": 0, "total": 30}
    detail = store.detail("v7xej1k3")
    assert detail.verdict == "yes"
    assert "calendar" in detail.verdict_reason
    assert detail.reference_answer.startswith("['9:30 AM - Dentist check-up'")
    assert [ref.missing for ref in detail.images] == [True, True]
    assert detail.images[0].name.endswith("00023/000235843.jpg")
    assert set(store.facets()["tools"]) >= {"visualizer", "ask_search_agent", "final_answer"}
    with pytest.raises(KeyError):
        store.detail("no-such-id")


def test_reimport_adds_nothing_and_a_changed_record_gets_its_own_id(store: Store, mmtraj_records):
    again = store.import_records(mmtraj_records, source="release")
    assert (again.added, again.skipped) == (0, 30)
    changed = json.loads(json.dumps(mmtraj_records[0]))
    changed["answer"] = "321"
    report = store.import_records([changed], source="fixed")
    assert report.added == 1
    assert report.ids[0] != changed["id"] and report.ids[0].startswith(changed["id"])
    assert store.detail(changed["id"]).record["answer"] == "320"
    assert store.counts()["total"] == 31


def test_decisions_undo_and_status_follow_the_latest_event(store: Store):
    store.decide("v7xej1k3", "ann", "approved")
    store.decide("v7xej1k3", "bob", "rejected", ["wrong_answer", "other"], "the list is incomplete")
    assert store.detail("v7xej1k3").status == "rejected"
    assert store.counts()["rejected"] == 1
    undo = store.undo("v7xej1k3", "bob")
    assert undo.kind == "undo"
    assert store.detail("v7xej1k3").status == "approved"
    store.undo("v7xej1k3", "ann")
    detail = store.detail("v7xej1k3")
    assert detail.status == "pending"
    assert [e.kind for e in detail.events] == ["decision", "decision", "undo", "undo"]
    assert detail.events[1].reasons == ["wrong_answer", "other"] and detail.events[1].note.startswith("the list")
    with pytest.raises(StoreError, match="nothing of yours to undo"):
        store.undo("v7xej1k3", "ann")


def test_bad_decisions_are_refused_with_one_line(store: Store):
    with pytest.raises(StoreError, match="unknown status 'great'"):
        store.decide("v7xej1k3", "ann", "great")
    with pytest.raises(StoreError, match="unknown reason code 'meh'"):
        store.decide("v7xej1k3", "ann", "rejected", ["meh"])
    with pytest.raises(StoreError, match="no trajectory 'nope'"):
        store.decide("nope", "ann", "approved")
    with pytest.raises(StoreError, match="reviewer"):
        store.decide("v7xej1k3", " ", "approved")
    assert store.detail("v7xej1k3").events == []
    assert "unsafe" in REJECT_REASONS and "other" in REJECT_REASONS and len(REJECT_REASONS) == 8


def test_edits_keep_the_original_show_in_export_and_undo_restores(store: Store, tmp_path: Path, mmtraj_records):
    store.edit("eUhXIcXJ", "ann", step=1, field="code", value='print("fixed")')
    store.edit("eUhXIcXJ", "ann", step=1, field="observation", value="no error now")
    store.edit("eUhXIcXJ", "ann", step=0, field="thought", value="Look at the flowers first.")
    store.edit("eUhXIcXJ", "ann", step=None, field="answer", value="Two kinds of flowers.")
    detail = store.detail("eUhXIcXJ")
    assert detail.edited_fields == ["1.code", "1.observation", "0.thought", "answer"]
    assert detail.trajectory.steps[1].code == 'print("fixed")'
    assert detail.trajectory.steps[0].model_output.startswith("Thought: Look at the flowers first.\n")
    assert detail.original.steps[1].code != 'print("fixed")'
    assert detail.events[0].payload["previous"] == detail.original.steps[1].code
    assert store.query(Filters(search="Two kinds")).rows[0].id == "eUhXIcXJ"

    out = tmp_path / "edited.json"
    store.export("mmtraj", out)
    exported = {r["id"]: r for r in json.loads(out.read_text())}
    original = next(r for r in mmtraj_records if r["id"] == "eUhXIcXJ")
    edited = exported["eUhXIcXJ"]
    assert edited["answer"] == "Two kinds of flowers."
    assert 'print("fixed")' in edited["conversations"][4]["value"]
    assert edited["conversations"][5]["value"] == "[OUTPUT OF STEP 1] Error: no error now"
    assert edited["conversations"][6:] == original["conversations"][6:]

    for _ in range(4):
        store.undo("eUhXIcXJ", "ann")
    store.export("mmtraj", out)
    assert {r["id"]: r for r in json.loads(out.read_text())}["eUhXIcXJ"] == original
    assert store.query(Filters(search="Two kinds")).rows == []


def test_impossible_edits_are_refused(store: Store):
    with pytest.raises(StoreError, match=r"has no step 10 \(it has steps 1 to \d+\)"):
        store.edit("v7xej1k3", "ann", step=9, field="code", value="x")
    with pytest.raises(StoreError, match="final answer"):
        store.edit("v7xej1k3", "ann", step=1, field="observation", value="x")
    with pytest.raises(StoreError, match="cannot edit 'task'"):
        store.edit("v7xej1k3", "ann", step=0, field="task", value="x")
    assert store.detail("v7xej1k3").events == []


def test_events_are_append_only(store: Store):
    store.decide("v7xej1k3", "ann", "approved")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"), store.db.transaction() as tx:
        tx.execute("UPDATE events SET decision = 'rejected'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"), store.db.transaction() as tx:
        tx.execute("DELETE FROM events")


def test_filters_and_keyset_paging_visit_every_row_once(store: Store):
    all_ids = [row.id for row in store.query(limit=100).rows]
    assert len(all_ids) == 30
    seen, cursor = [], None
    while True:
        page = store.query(cursor=cursor, limit=7)
        seen += [row.id for row in page.rows]
        store.decide(page.rows[0].id, "ann", "approved")  # decisions between pages do not shift the order
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == all_ids

    visual = store.query(Filters(tools=["visualizer"], min_steps=3, has_error=True), limit=100).rows
    assert {row.id for row in visual} == {"GGLn7Jma", "eUhXIcXJ"}
    assert store.query(Filters(status="approved"), limit=100).rows and all(
        r.status == "approved" for r in store.query(Filters(status="approved"), limit=100).rows)
    assert store.counts(Filters(tools=["facedetection"]))["total"] == 2
    assert store.query(Filters(source="elsewhere")).rows == []
    with pytest.raises(StoreError, match="cursor"):
        store.query(cursor="not-a-cursor")


def test_full_text_search_over_task_and_answer(store: Store):
    assert [r.id for r in store.query(Filters(search="calendar Sunday")).rows] == ["v7xej1k3"]
    assert "FQ8cj0s_" in [r.id for r in store.query(Filters(search="320")).rows]  # the answer
    assert store.query(Filters(search='flowers AND (" NOT')).rows is not None  # query syntax is escaped
    assert store.counts(Filters(search="zzzzqqq"))["total"] == 0


def test_claims_steer_the_pending_queue(store: Store):
    first = store.take_next("ann")
    assert first == store.query(limit=1).rows[0].id and store.query(limit=1).rows[0].holder == "ann"
    second = store.take_next("bob")
    assert second != first and store.detail(second).holder == "bob"
    assert store.take_next("ann") == first  # her own claim does not hide it from her
    with pytest.raises(StoreError, match="held by ann"):
        store.claim(first, "bob")
    store.decide(first, "ann", "approved")
    assert store.detail(first).holder is None
    third = store.take_next("cy")
    assert third not in (first, second)
    last = store.query(limit=100).rows[-1].id
    pending = [row.id for row in store.query(Filters(status="pending"), limit=100).rows]
    assert store.take_next("dee", after=last) == next(p for p in pending if p not in (second, third))  # wraps


def test_stats_group_decisions_by_reason_source_and_reviewer(store: Store):
    store.decide("v7xej1k3", "ann", "rejected", ["wrong_answer"])
    store.decide("FQ8cj0s_", "bob", "approved")
    store.decide("hkzm_ewM", "bob", "approved")
    store.undo("hkzm_ewM", "bob")
    stats = store.stats()
    assert stats["counts"]["approved"] == 1 and stats["counts"]["rejected"] == 1
    assert stats["tools"]["final_answer"] == 30
    assert sum(stats["steps"].values()) == 30
    assert {"source": "release", "decision": "rejected", "reason": "wrong_answer", "count": 1} in stats["by_source"]
    assert {"reviewer": "bob", "decision": "approved", "reason": "", "count": 1} in stats["by_reviewer"]
    assert sum(day["count"] for day in stats["per_day"]) == 2


def test_agent_runs_are_added_with_their_images(tmp_path: Path):
    picture = tmp_path / "cat.png"
    Image.new("RGB", (8, 8), "red").save(picture)
    trajectory = Trajectory(
        task=Task(text="What colour is the cat?", images=["cat.png"]),
        system_prompt="You are an agent.",
        steps=[Step(index=0, model_output='Thought: Red.\nCode:\n```py\nfinal_answer("red")\n```',
                    thought="Red.", code='final_answer("red")', is_final=True, final_answer='"red"')],
    )
    with Store(tmp_path / "db" / "mat.db") as store:
        trajectory_id = store.add_trajectory(trajectory, source="gta-run", answer="red",
                                             image_files={"cat.png": picture})
        assert store.add_trajectory(trajectory, source="gta-run", answer="red", record_id=trajectory_id,
                                    image_files={"cat.png": picture}) == trajectory_id
        detail = store.detail(trajectory_id)
        assert detail.reference_answer == "red" and detail.source == "gta-run"
        assert detail.images[0].path.read_bytes() == picture.read_bytes()
        assert detail.images[0].path.is_relative_to(tmp_path / "db" / "files")
        assert store.query(Filters(source="gta-run")).rows[0].tools == ["final_answer"]


_DECIDER = """
import sys
from review.store import Store
store = Store(sys.argv[1])
ids = sys.argv[3].split(",")
for n in range(int(sys.argv[4])):
    store.decide(ids[n % len(ids)], sys.argv[2], "approved" if n % 2 else "rejected", ["other"] if n % 2 == 0 else [],
                 f"round {n}")  # each differs from the one in force, which a repeat would be
"""


def test_two_processes_and_two_threads_deciding_at_once_lose_no_event(store: Store):
    ids = ",".join(row.id for row in store.query(limit=5).rows)
    workers = [subprocess.Popen([sys.executable, "-c", _DECIDER, str(store.path), name, ids, "40"], cwd=ROOT)
               for name in ("ann", "bob")]
    thread_errors: list[Exception] = []

    def decide_in_thread(name: str) -> None:
        try:
            for n in range(40):
                store.decide(ids.split(",")[n % 5], name, "skipped", note=f"round {n}")
        except Exception as exc:  # surfaced below
            thread_errors.append(exc)

    threads = [threading.Thread(target=decide_in_thread, args=(name,)) for name in ("cy", "dee")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    assert thread_errors == []
    per_reviewer = dict(store.db.read("SELECT reviewer, COUNT(*) FROM events GROUP BY reviewer"))
    assert per_reviewer == {"ann": 40, "bob": 40, "cy": 40, "dee": 40}
    for trajectory_id in ids.split(","):
        events = store.detail(trajectory_id).events
        assert store.detail(trajectory_id).status == events[-1].decision


def test_evaluation_trajectories_stay_out_of_curation(tmp_path):
    """A benchmark task's trajectory is kept for the viewer, but never listed, counted, queued or exported."""
    with Store(tmp_path / "mat.db") as store:
        task = Task("What is 17 * 23?")
        step = Step(index=0, model_output="Thought: x\nCode:\n```py\nfinal_answer(391)\n```", thought="x",
                    code="final_answer(391)", is_final=True, final_answer="391")
        kept = store.add_trajectory(Trajectory(task, "system", [step]), source="chat")
        benchmark = store.add_trajectory(Trajectory(Task("GTA query 7"), "system", [step]), source="eval/gta-1",
                                         purpose="evaluation")
        assert [row.id for row in store.query().rows] == [kept]
        assert store.counts()["total"] == 1 and store.take_next("ann") == kept and store.take_next("bob") is None
        assert store.facets()["sources"] == ["chat"]
        assert [detail.id for detail in store.iter_details()] == [kept]
        assert store.detail(benchmark).trajectory.task.text == "GTA query 7"  # still there for the viewer


def test_a_stored_run_reads_only_the_images_it_was_given(tmp_path, monkeypatch):
    """A step image not handed over is missing, never a file of the same name found in the working directory."""
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "plot.png")
    red = tmp_path / "kept-plot.png"
    Image.new("RGB", (32, 32), "red").save(red)
    step = Step(index=0, model_output="Thought: draw\nCode:\n```py\nplt.savefig('plot.png')\n```", thought="draw",
                code="plt.savefig('plot.png')", observation="", images=["plot.png"])
    with Store(tmp_path / "mat.db") as store:
        given = store.add_trajectory(Trajectory(Task("Draw"), "system", [step]), source="eval/x", record_id="a",
                                     image_files={"plot.png": red}, purpose="evaluation")
        not_given = store.add_trajectory(Trajectory(Task("Draw again"), "system", [step]), source="eval/x",
                                         record_id="b", purpose="evaluation")
        (stored,) = store.detail(given).images
        assert Image.open(stored.path).size == (32, 32)
        assert [ref.missing for ref in store.detail(not_given).images] == [True]


def test_benchmark_queries_are_remembered_for_training(tmp_path):
    from review import benchmarks
    from review.contamination import Query

    with Store(tmp_path / "mat.db") as store:
        assert benchmarks.known(store) == {}
        benchmarks.remember(store, "gta", [Query("115", "How many apples are on the table?", ("ab12",))])
        assert benchmarks.remember(store, "gta", [Query("115", "How many apples are on the table?", ("ab12",)),
                                                  Query("116", "Read the sign.")]) == 2
        assert [q.id for q in benchmarks.known(store, ["gta"])["gta"]] == ["115", "116"]
        assert benchmarks.known(store, ["gaia"]) == {}
