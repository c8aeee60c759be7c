"""What a reviewer does in the Review tab, as plain functions over a `Store` and a `Queue`.

A `Queue` is one browser session's place in the list; the tab (`review/ui.py`) wires these
functions to its components and tests call them directly. Every refusal is a `StoreError`
with a one-line message, which the tab shows as a warning, leaving the page as it was.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.loop import IMAGE_SUFFIXES
from review.errors import StoreError
from review.formats import EXPORT_FORMATS, ExportReport, ImageFiles, export
from review.store import REPLAYS, STATUSES, BulkReport, Detail, Filters, Store

PAGE_SIZE = 25
DATA_SUFFIXES = (".json", ".jsonl", ".parquet")
ANY = "any"


@dataclass
class Queue:
    """One browser session's place in the list: filters, page cursors, the open trajectory."""

    filters: Filters = field(default_factory=Filters)
    cursors: list[str | None] = field(default_factory=lambda: [None])
    next_cursor: str | None = None
    ids: list[str] = field(default_factory=list)
    current: str | None = None
    held_by: str | None = None  # who else holds the open trajectory: it is open to look at, not to change
    seen: str | None = None  # the open trajectory's status when it was opened: a decision on a changed one is refused
    reviewer: str | None = None  # the name this session last acted under
    done: list[str] = field(default_factory=list)  # trajectories this session decided or edited, for undo
    bulk: list[str] = field(default_factory=list)  # what the last dry run counted, for the bulk decision


# ---------------------------------------------------------------- the list


def make_filters(status: str | None, tools: list[str] | None, min_steps: str | int | None,
                 max_steps: str | int | None, has_error: str | None, verdict: str | None, source: str | None,
                 search: str | None, replay: str | None = None) -> Filters:
    """Filters from the form's values; "any" and empty fields mean no filter."""
    low, high = _whole(min_steps, "min steps"), _whole(max_steps, "max steps")
    if low is not None and high is not None and low > high:
        raise StoreError(f"min steps ({low}) is above max steps ({high})")
    if chosen(replay) is not None and replay not in REPLAYS:
        raise StoreError(f"unknown replay outcome {replay!r}; choose one of {', '.join(REPLAYS)}")
    return Filters(
        status=chosen(status), tools=tuple(tools or ()), min_steps=low, max_steps=high,
        has_error=None if chosen(has_error) is None else has_error == "yes",
        verdict=chosen(verdict), source=chosen(source), search=(search or "").strip(), replay=chosen(replay),
    )


def apply_filters(store: Store, queue: Queue, filters: Filters) -> Queue:
    """Start the list over at the first page under new filters."""
    queue.filters, queue.cursors, queue.bulk = filters, [None], []
    return load_page(store, queue)


def load_page(store: Store, queue: Queue) -> Queue:
    page = store.query(queue.filters, cursor=queue.cursors[-1], limit=PAGE_SIZE)
    queue.ids, queue.next_cursor = [row.id for row in page.rows], page.next_cursor
    return queue


def turn_page(store: Store, queue: Queue, forward: bool) -> Queue:
    if forward and queue.next_cursor is not None:
        queue.cursors.append(queue.next_cursor)
    elif not forward and len(queue.cursors) > 1:
        queue.cursors.pop()
    else:
        raise StoreError("no next page" if forward else "already on the first page")
    return load_page(store, queue)


# ---------------------------------------------------------------- opening and holding


def open_trajectory(store: Store, queue: Queue, trajectory_id: str, reviewer: str | None) -> Queue:
    """Show a trajectory; a named reviewer also claims a pending one, so the queue sends others elsewhere.

    One someone else holds opens to be looked at only (`queue.held_by` names them): deciding it needs
    an explicit take-over. A decided trajectory is only looked at, so browsing past it holds nothing.
    """
    trajectory_id = (trajectory_id or "").strip()
    try:
        detail = store.detail(trajectory_id)
    except KeyError:
        raise StoreError(f"no trajectory {trajectory_id!r}") from None
    held_by = detail.holder if detail.holder and detail.holder != reviewer else None
    if held_by is None and reviewer and detail.status == "pending":
        store.claim(trajectory_id, reviewer)  # refused if someone claimed it a moment ago: nothing opens then
    queue.current, queue.held_by, queue.reviewer = trajectory_id, held_by, reviewer or queue.reviewer
    queue.seen = detail.status
    return queue


def neighbour(store: Store, queue: Queue, step: int, reviewer: str | None) -> Queue:
    """The next (step=1) or previous (step=-1) trajectory of the list, turning pages at the edges."""
    if not queue.ids:
        raise StoreError("the list is empty: loosen the filters")
    if queue.current not in queue.ids:
        return open_trajectory(store, queue, queue.ids[0 if step > 0 else -1], reviewer)
    position = queue.ids.index(queue.current) + step
    if position < 0 or position >= len(queue.ids):
        current = queue.current
        turn_page(store, queue, forward=step > 0)
        queue.current = current
        position = 0 if step > 0 else len(queue.ids) - 1
    return open_trajectory(store, queue, queue.ids[position], reviewer)


def next_pending(store: Store, queue: Queue, reviewer: str) -> Queue:
    """Take (claim and open) the next pending trajectory of the filtered list after the open one."""
    found = store.take_next(reviewer, queue.filters, after=queue.current)
    if found is None:
        raise StoreError("nothing left pending in this list that someone else is not holding")
    queue.current, queue.held_by, queue.reviewer, queue.seen = found, None, reviewer, "pending"
    return queue


def take_over(store: Store, queue: Queue, reviewer: str) -> Queue:
    """Hold the open trajectory even though someone else does (recorded, naming them)."""
    store.take_over(_require_current(queue), reviewer)
    queue.held_by, queue.reviewer = None, reviewer  # what it saw stays: a decision on a changed item is refused
    return queue


def follow_link(store: Store, queue: Queue, address: dict | None, reviewer: str | None) -> Queue:
    """Apply an address another tab sent: `{"open": id}` opens it, `{"source": name}` lists only that source."""
    address = address or {}
    if address.get("source"):
        apply_filters(store, queue, Filters(source=str(address["source"])))
    if address.get("open"):
        open_trajectory(store, queue, str(address["open"]), reviewer)
    return queue


def reviewer_of(typed: str | None, request: Any) -> str:
    """The login name when auth is on, else the name typed in the tab; required to change anything."""
    login = getattr(request, "username", None) if request is not None else None
    name = login or (typed or "").strip()
    if not name:
        raise StoreError("type your name in 'Reviewer' first: every decision records who made it")
    return name


# ---------------------------------------------------------------- deciding and editing


def decide(store: Store, queue: Queue, reviewer: str, decision: str, reasons: list[str] | None = None,
           note: str = "", advance: bool = False, request_id: str | None = None) -> Queue:
    """Record a decision; with `advance`, take the next pending trajectory afterwards.

    `request_id` is the client's id for this decision: sent again (a retry), nothing new is recorded and the
    session stays where the first request left it.
    """
    if store.recorded(request_id):
        return queue
    current = _require_current(queue)
    if queue.held_by:
        raise StoreError(f"{current} is held by {queue.held_by}: press Take over first to decide it")
    reasons = list(reasons or ())
    if decision == "rejected" and not reasons and not (note or "").strip():
        raise StoreError("pick at least one reject reason or write a note")
    if decision != "rejected":
        reasons = []
    store.decide(current, reviewer, decision, reasons, (note or "").strip(), request_id=request_id, seen=queue.seen)
    queue.done.append(current)
    queue.reviewer, queue.seen = reviewer, decision
    if advance:
        following = store.take_next(reviewer, queue.filters, after=current)
        if following is not None:
            queue.current, queue.seen = following, "pending"
    return queue


def undo(store: Store, queue: Queue, reviewer: str, request_id: str | None = None) -> Queue:
    """Take back this session's latest decision or edit (or, with none, the reviewer's own on the open one)."""
    if store.recorded(request_id):
        return queue
    target = queue.done[-1] if queue.done else _require_current(queue)
    store.undo(target, reviewer, request_id=request_id)
    if queue.done:
        queue.done.pop()
    queue.current, queue.held_by, queue.seen = target, None, store.detail(target).status
    return queue


def edit_value(store: Store, trajectory_id: str | None, step: float | None, field_name: str) -> str:
    """The text an edit of (step, field) would replace, as currently stored (edits applied); steps count from 1."""
    if not trajectory_id:
        return ""
    detail = store.detail(trajectory_id)
    if field_name == "answer":
        return detail.answer or ""
    chosen = detail.trajectory.steps[step_index(step, detail)]
    if field_name == "observation":
        return chosen.error if chosen.error is not None else (chosen.observation or "")
    return getattr(chosen, field_name) or ""


def save_edit(store: Store, queue: Queue, reviewer: str, step: float | None, field_name: str, value: str,
              request_id: str | None = None) -> Queue:
    """Edit the open trajectory's step `step` (counted from 1, as shown) or its answer."""
    if store.recorded(request_id):
        return queue
    current = _require_current(queue)
    index = None if field_name == "answer" else step_index(step, store.detail(current))
    if value == edit_value(store, current, step, field_name):
        raise StoreError("nothing changed: edit the text before saving")
    if queue.held_by:
        raise StoreError(f"{current} is held by {queue.held_by}: press Take over first to edit it")
    store.edit(current, reviewer, step=index, field=field_name, value=value, request_id=request_id)
    queue.done.append(current)
    queue.reviewer, queue.seen = reviewer, store.detail(current).status
    return queue


def step_index(step: float | None, detail: Detail) -> int:
    """The step the form names (counted from 1, as the viewer shows) as the trajectory's index."""
    count = len(detail.trajectory.steps)
    if step is None or not 1 <= int(step) <= count:
        raise StoreError(f"{detail.id} has steps 1 to {count}; step {step} does not exist")
    return int(step) - 1


# ---------------------------------------------------------------- bulk decisions


def bulk_count(store: Store, queue: Queue) -> tuple[Queue, int]:
    """The dry run: how many pending trajectories of the filtered list a bulk decision would decide."""
    queue.bulk = store.pending_ids(queue.filters)
    return queue, len(queue.bulk)


def bulk_decide(store: Store, queue: Queue, reviewer: str, decision: str, reasons: list[str] | None = None,
                note: str = "") -> tuple[Queue, BulkReport]:
    """Decide what the last dry run counted (each its own event); refused without a dry run first."""
    if not queue.bulk:
        raise StoreError("count the matching trajectories first (the dry run), then decide them")
    if decision == "rejected" and not reasons and not (note or "").strip():
        raise StoreError("pick at least one reject reason or write a note")
    report = store.decide_many(queue.bulk, reviewer, decision, list(reasons or ()) if decision == "rejected" else [],
                               (note or "").strip())
    queue.bulk = []
    return load_page(store, queue), report


# ---------------------------------------------------------------- files


def export_file(store: Store, fmt: str, status: str | None, folder: Path) -> tuple[Path, ExportReport]:
    """Export into `folder`; a format that writes a folder comes back zipped, ready to download."""
    status = chosen(status)
    if fmt not in EXPORT_FORMATS:
        raise StoreError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if status is not None and status not in STATUSES:
        raise StoreError(f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")
    name = f"mmtraj-{status or 'all'}"
    out = folder / (f"{name}.json" if fmt == "mmtraj" else name)
    report = export(store, fmt, out, status)
    if report.written == 0:
        which = f"{status} trajectory" if status else "trajectory"
        why = f" ({report.summary()})" if report.skipped_missing_images else ""
        raise StoreError(f"nothing to export: no {which}{' with all its images' if fmt == 'messages' else ''}{why}")
    if fmt == "mmtraj":
        return out, report
    archive = shutil.make_archive(str(folder / f"{name}-{fmt}"), "zip", folder / name)
    return Path(archive), report


def import_upload(store: Store, paths: str | list[str] | None, source: str | None) -> str:
    """Import the one data file among the uploads, with a zip of images or loose image files beside it."""
    uploads = [Path(p) for p in ([paths] if isinstance(paths, str) else paths or [])]
    data = [p for p in uploads if p.suffix.lower() in DATA_SUFFIXES]
    archives = [p for p in uploads if p.suffix.lower() == ".zip"]
    pictures = [p for p in uploads if p.suffix.lower() in IMAGE_SUFFIXES]
    if len(data) != 1:
        found = f"got {len(data)}: {', '.join(p.name for p in data)}" if data else "none was given"
        raise StoreError(f"choose exactly one .json, .jsonl or .parquet file to import ({found})")
    if len(archives) > 1:
        raise StoreError("give at most one zip of images (the release's files.zip)")
    images = archives[0] if archives else (ImageFiles(pictures) if pictures else None)
    report = store.import_file(data[0], source=(source or "").strip() or data[0].stem, images=images)
    return f"Imported {data[0].name}: {report.summary()}."


# ---------------------------------------------------------------- helpers


def detail_or_none(store: Store, trajectory_id: str | None) -> Detail | None:
    if trajectory_id is None:
        return None
    try:
        return store.detail(trajectory_id)
    except KeyError:
        return None


def _require_current(queue: Queue) -> str:
    if queue.current is None:
        raise StoreError("open a trajectory first (select a row or press n)")
    return queue.current


def _whole(value: str | int | None, name: str) -> int | None:
    picked = chosen(value if value is None or isinstance(value, str) else str(value))
    if picked is None:
        return None
    try:
        return int(picked)
    except ValueError:
        raise StoreError(f"{name} must be a whole number, not {picked!r}") from None


def chosen(value: str | None) -> str | None:
    """A form value, with "any" and blanks as None."""
    return None if value in (None, "", ANY) else value
