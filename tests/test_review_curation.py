"""Curated data stays what was approved: an edit after a decision sends the trajectory back to pending, the
history keeps both, and training (which reads `Store.iter_details("approved")`) gets only what was approved after
its latest edit."""

from __future__ import annotations

from review import markup
from review import actions as q
from review.store import Store


def test_an_edit_after_approval_returns_it_to_pending_and_training_waits_for_a_new_approval(tmp_path, mmtraj_records):
    from train.data import iter_store

    db = tmp_path / "mat.db"
    with Store(db) as store:
        store.import_records(mmtraj_records, source="release")
        edited, untouched = "eUhXIcXJ", "FQ8cj0s_"
        for trajectory_id in (edited, untouched):
            store.decide(trajectory_id, "ann", "approved")
        store.edit(edited, "bob", step=1, field="code", value='print("bob was here")')

        detail = store.detail(edited)
        assert detail.status == "pending" and store.counts()["approved"] == 1
        assert [(e.kind, e.reviewer) for e in detail.events] == [("decision", "ann"), ("edit", "bob")]
        assert "ann: approved" in markup.header_markup(detail, q.Queue()) and "bob: edited step 2 code" in \
            markup.header_markup(detail, q.Queue())
        assert [d.id for d in store.iter_details("approved")] == [untouched]
        assert [r.id for r in iter_store(db)] == [untouched]

        store.decide(edited, "bob", "approved")
        assert {r.id: r for r in iter_store(db)}[edited].trajectory.steps[1].code == 'print("bob was here")'
        store.undo(edited, "bob")  # takes back bob's approval: the edit still stands after ann's
        assert store.detail(edited).status == "pending"
        store.undo(edited, "bob")  # and now bob's edit: ann's approval of the original is in force again
        assert store.detail(edited).status == "approved"
        assert {r.id: r for r in iter_store(db)}[edited].trajectory.steps[1].code != 'print("bob was here")'
