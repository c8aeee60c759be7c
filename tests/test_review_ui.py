"""What a reviewer does (review.actions) and what the tab shows (review.markup), called directly over a real
store holding the MM-Traj sample records."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from review import markup, plots
from review import actions as ui
from review.errors import StoreError
from review.store import Store
from review.viewer import render


LIST_HOLDER = markup.LIST_HEADERS.index("held by")


@pytest.fixture
def store(tmp_path: Path, mmtraj_path: Path):
    with Store(tmp_path / "mat.db") as opened:
        opened.import_file(mmtraj_path, source="release")
        yield opened


@pytest.fixture
def queue(store: Store) -> ui.Queue:
    return ui.load_page(store, ui.Queue())


def _opened(store: Store, queue: ui.Queue, trajectory_id: str, reviewer: str | None = "ann") -> ui.Queue:
    return ui.open_trajectory(store, queue, trajectory_id, reviewer)


def test_filters_from_the_form_treat_any_and_blanks_as_no_filter():
    filters = ui.make_filters("any", [], "any", None, "any", "any", "any", "  ")
    assert (filters.status, filters.tools, filters.min_steps, filters.has_error, filters.search) == (
        None, (), None, None, "")
    chosen = ui.make_filters("pending", ["visualizer"], "2", 4, "yes", "yes", "release", " budget ")
    assert (chosen.status, chosen.tools, chosen.min_steps, chosen.max_steps, chosen.has_error, chosen.search) == (
        "pending", ("visualizer",), 2, 4, True, "budget")
    with pytest.raises(StoreError, match="min steps"):
        ui.make_filters("any", [], 5, 2, "any", "any", "any", "")
    with pytest.raises(StoreError, match="whole number"):
        ui.make_filters("any", [], "two", None, "any", "any", "any", "")


def test_filters_and_search_narrow_the_list(store, queue, mmtraj_records):
    with_errors = {r["id"] for r in mmtraj_records if any("] Error:" in t["value"][:40] for t in r["conversations"])}
    ui.apply_filters(store, queue, ui.make_filters("any", [], None, None, "yes", "any", "any", ""))
    assert set(queue.ids) == with_errors
    ui.apply_filters(store, queue, ui.make_filters("any", [], None, None, "any", "any", "any", "vacation"))
    assert "GGLn7Jma" in queue.ids and len(queue.ids) < len(mmtraj_records)
    ui.apply_filters(store, queue, ui.make_filters("any", [], 6, None, "any", "any", "any", ""))
    assert all(row[2] >= 6 for row in markup.list_rows(store, queue))


def test_paging_walks_forward_and_back_over_every_record(store, queue, mmtraj_records):
    first = list(queue.ids)
    assert len(first) == ui.PAGE_SIZE and queue.next_cursor is not None
    ui.turn_page(store, queue, forward=True)
    assert len(first) + len(queue.ids) == len(mmtraj_records)
    assert not set(first) & set(queue.ids)
    with pytest.raises(StoreError, match="no next page"):
        ui.turn_page(store, queue, forward=True)
    ui.turn_page(store, queue, forward=False)
    assert queue.ids == first
    with pytest.raises(StoreError, match="first page"):
        ui.turn_page(store, queue, forward=False)


def test_next_and_previous_cross_page_edges(store, queue):
    _opened(store, queue, queue.ids[-1])
    last_of_first = queue.current
    ui.neighbour(store, queue, 1, "ann")
    assert len(queue.cursors) == 2 and queue.current == queue.ids[0]
    ui.neighbour(store, queue, -1, "ann")
    assert queue.current == last_of_first and len(queue.cursors) == 1


def test_reviewer_is_required_and_the_login_wins():
    with pytest.raises(StoreError, match="Reviewer"):
        ui.reviewer_of("   ", None)
    assert ui.reviewer_of(" ann ", None) == "ann"
    assert ui.reviewer_of("typed", SimpleNamespace(username="login")) == "login"
    assert ui.reviewer_of("typed", SimpleNamespace(username=None)) == "typed"


def test_a_decision_needs_an_open_trajectory(store, queue):
    with pytest.raises(StoreError, match="open a trajectory"):
        ui.decide(store, queue, "ann", "approved")


def test_approve_moves_the_counts_and_advances_to_the_next_pending(store, queue):
    first = queue.ids[0]
    _opened(store, queue, first)
    ui.decide(store, queue, "ann", "approved", advance=True)
    assert store.detail(first).status == "approved"
    assert queue.current == queue.ids[1]
    assert 'id="review-count-approved">1<' in markup.counts_markup(store)
    assert 'id="review-count-done">1<' in markup.counts_markup(store)


def test_next_pending_stays_inside_the_filtered_list(store, queue, mmtraj_records):
    ui.apply_filters(store, queue, ui.make_filters("any", [], None, None, "yes", "any", "any", ""))
    with_errors = list(queue.ids)
    _opened(store, queue, with_errors[0])
    ui.decide(store, queue, "ann", "approved", advance=True)
    assert queue.current == with_errors[1]
    ui.decide(store, queue, "ann", "approved", advance=True)
    assert queue.current == with_errors[2]
    for trajectory_id in with_errors[2:]:
        _opened(store, queue, trajectory_id)
        ui.decide(store, queue, "ann", "skipped")
    with pytest.raises(StoreError, match="nothing left pending in this list"):
        ui.next_pending(store, queue, "ann")


def test_next_pending_under_a_filter_continues_on_the_next_page(store, queue):
    ui.apply_filters(store, queue, ui.make_filters("any", [], None, None, "any", "any", "release", ""))
    second_page = ui.turn_page(store, ui.load_page(store, ui.Queue(filters=queue.filters)), forward=True).ids
    _opened(store, queue, queue.ids[-1])
    ui.decide(store, queue, "ann", "approved", advance=True)
    assert queue.current == second_page[0]


def test_reject_needs_a_reason_or_a_note_and_records_both(store, queue):
    _opened(store, queue, queue.ids[0])
    with pytest.raises(StoreError, match="reject reason"):
        ui.decide(store, queue, "ann", "rejected", [], "  ")
    ui.decide(store, queue, "ann", "rejected", ["wrong_answer", "hallucination"], "answer is off by 10")
    event = store.detail(queue.ids[0]).events[-1]
    assert (event.decision, event.reasons, event.note) == ("rejected", ["wrong_answer", "hallucination"],
                                                           "answer is off by 10")


def test_undo_takes_back_this_sessions_latest_decision_even_after_advancing(store, queue):
    first = queue.ids[0]
    _opened(store, queue, first)
    ui.decide(store, queue, "ann", "skipped", advance=True)
    assert queue.current != first
    ui.undo(store, queue, "ann")
    assert queue.current == first and store.detail(first).status == "pending"
    assert [event.kind for event in store.detail(first).events][-2:] == ["decision", "undo"]


def test_edit_in_place_keeps_the_original_and_undo_restores_it(store, queue):
    _opened(store, queue, "GGLn7Jma")
    before = ui.edit_value(store, "GGLn7Jma", 2, "observation")
    assert before.startswith("Error in code parsing")
    with pytest.raises(StoreError, match="nothing changed"):
        ui.save_edit(store, queue, "ann", 2, "observation", before)
    with pytest.raises(StoreError, match="step 9 does not exist"):
        ui.save_edit(store, queue, "ann", 9, "thought", "x")
    ui.save_edit(store, queue, "ann", 1, "thought", "Look at the budget template first.")
    detail = store.detail("GGLn7Jma")
    assert detail.trajectory.steps[0].thought == "Look at the budget template first."
    assert detail.original.steps[0].thought != detail.trajectory.steps[0].thought
    shown = render(markup.view_of(detail))
    assert "show original thought" in shown and "Look at the budget template first." in shown
    ui.undo(store, queue, "ann")
    assert store.detail("GGLn7Jma").edited_fields == []


def test_editing_the_answer_shows_it_against_the_original(store, queue, mmtraj_records):
    _opened(store, queue, "FQ8cj0s_")
    assert ui.edit_value(store, "FQ8cj0s_", None, "answer") == "320"
    ui.save_edit(store, queue, "ann", None, "answer", "320 calories")
    shown = render(markup.view_of(store.detail("FQ8cj0s_")))
    assert "320 calories" in shown and "show original answer" in shown


def test_the_list_shows_who_holds_what(store, queue):
    _opened(store, queue, queue.ids[0], "ann")
    rows = markup.list_rows(store, queue)
    assert rows[0][LIST_HOLDER] == "ann"
    bob = ui.load_page(store, ui.Queue())
    ui.open_trajectory(store, bob, bob.ids[0], "bob")
    assert bob.held_by == "ann" and "held by ann: open to look at only" in markup.header_markup(
        store.detail(bob.ids[0]), bob)
    assert markup.list_rows(store, bob)[0][LIST_HOLDER] == "ann"
    ui.next_pending(store, bob, "bob")
    assert bob.current != queue.ids[0]


def test_header_escapes_reviewer_names_and_notes(store, queue):
    _opened(store, queue, queue.ids[0], "<b>eve</b>")
    ui.decide(store, queue, "<b>eve</b>", "rejected", [], "<img src=x onerror=alert(1)>")
    header = markup.header_markup(store.detail(queue.ids[0]), queue)
    assert "<b>eve</b>" not in header and "&lt;b&gt;eve&lt;/b&gt;" in header
    assert "<img" not in header


def test_export_of_approved_records_gives_back_the_release_records(store, queue, mmtraj_records, tmp_path):
    for trajectory_id in queue.ids[:3]:
        _opened(store, queue, trajectory_id)
        ui.decide(store, queue, "ann", "approved")
    out, report = ui.export_file(store, "mmtraj", "approved", tmp_path)
    exported = json.loads(out.read_text())
    originals = {r["id"]: r for r in mmtraj_records}
    assert report.written == 3 and [r["id"] for r in exported] == queue.ids[:3]
    assert all(record == originals[record["id"]] for record in exported)


def test_messages_export_comes_back_as_a_zip_and_empty_exports_are_refused(store, queue, tmp_path):
    with pytest.raises(StoreError, match="no approved trajectory with all its images"):
        ui.export_file(store, "messages", "approved", tmp_path)
    with pytest.raises(StoreError, match="no approved trajectory"):
        ui.export_file(store, "mmtraj", "approved", tmp_path)
    text_only = next(t for t in queue.ids if not store.detail(t).images)
    _opened(store, queue, text_only)
    ui.decide(store, queue, "ann", "approved")
    out, report = ui.export_file(store, "messages", "approved", tmp_path)
    assert report.written == 1 and out.suffix == ".zip"
    with zipfile.ZipFile(out) as archive:
        example = json.loads(archive.read("messages.jsonl").decode().splitlines()[0])
    assert example["id"] == text_only and example["messages"][0]["role"] == "system"


def test_import_reports_counts_and_refuses_a_broken_file_whole(store, tmp_path, mmtraj_records):
    with pytest.raises(StoreError, match="choose exactly one .json"):
        ui.import_upload(store, None, "")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": "x",\n "conversations": [}]')
    before = store.counts()["total"]
    with pytest.raises(StoreError, match=r"^broken\.json: line 2, column \d+: a value is missing$"):
        ui.import_upload(store, str(broken), "")
    assert store.counts()["total"] == before
    again = tmp_path / "again.json"
    again.write_text(json.dumps(mmtraj_records[:2]))
    assert "0 added, 2 already present" in ui.import_upload(store, str(again), "")


def test_stats_figures_plot_the_store(store, queue):
    _opened(store, queue, queue.ids[0])
    ui.decide(store, queue, "ann", "rejected", ["tool_mismatch"])
    tools, steps, by_source, by_reviewer, progress = plots.figures(store.stats())
    assert len(tools.axes[0].patches) == len(store.facets()["tools"])
    assert sum(bar.get_height() for bar in steps.axes[0].patches) == store.counts()["total"]
    assert [t.get_text() for t in by_reviewer.axes[0].get_legend().get_texts()] == ["rejected: tool_mismatch"]
    assert by_source.axes[0].get_yticklabels()[0].get_text() == "release"
    assert len(progress.axes[0].lines) == 1


def test_stats_axes_count_in_whole_numbers(store, queue):
    _opened(store, queue, queue.ids[0])
    ui.decide(store, queue, "ann", "rejected", ["tool_mismatch"])
    tools, steps, by_source, by_reviewer, progress = plots.figures(store.stats())
    for figure, axis in ((tools, "x"), (steps, "y"), (by_source, "x"), (by_reviewer, "x"), (progress, "y")):
        figure.canvas.draw()
        axes = figure.axes[0]
        ticks = axes.get_xticks() if axis == "x" else axes.get_yticks()
        low, high = axes.get_xlim() if axis == "x" else axes.get_ylim()
        shown = [tick for tick in ticks if low <= tick <= high]
        assert shown and all(float(tick).is_integer() for tick in shown), (figure.axes[0].get_title(), shown)
