"""What the Review tab shows beside the viewer: the list's rows, the counts, the open trajectory's header.

Pure functions (data in, HTML or cells out); every string from a record or a reviewer is escaped.
Steps are counted from 1 everywhere a person reads them, as the viewer shows them.
"""

from __future__ import annotations

import html
from typing import Any

from review.actions import PAGE_SIZE, Queue
from review.store import STATUSES, Detail, Event, Row, Store
from review.viewer import EMPTY, View, render

LIST_HEADERS = ["id", "status", "steps", "tools", "error", "verdict", "replay", "source", "held by", "task"]
LIST_WIDTHS = ["8%", "7%", "5%", "14%", "5%", "7%", "7%", "8%", "7%", "32%"]
TASK_CHARS = 1000  # the list clips the task to its column; hovering shows all of it


def list_rows(store: Store, queue: Queue) -> list[list[Any]]:
    page = store.query(queue.filters, cursor=queue.cursors[-1], limit=PAGE_SIZE)
    return [cells(row) for row in page.rows]


def cells(row: Row) -> list[Any]:
    task = row.task if len(row.task) <= TASK_CHARS else row.task[: TASK_CHARS - 1] + "…"
    return [row.id, row.status, row.steps, ", ".join(row.tools), "yes" if row.has_error else "",
            row.verdict or "", row.replay or "", row.source, row.holder or "", task]


def counts_markup(store: Store) -> str:
    """Counts per status and a progress bar of how much has been decided."""
    counts = store.counts()
    total = counts["total"]
    done = total - counts["pending"]
    colours = {"approved": "#2da44e", "rejected": "#cf222e", "skipped": "#8c959f"}
    bar = "".join(
        f'<span style="width:{100 * counts[s] / total:.2f}%;background:{c}" title="{s}"></span>'
        for s, c in colours.items() if total
    )
    numbers = " · ".join(f'{s} <b id="review-count-{s}">{counts[s]}</b>' for s in STATUSES)
    share = f"{100 * done / total:.0f}%" if total else "0%"
    return (
        f'<div class="review-counts"><span>{numbers}</span><div class="review-bar">{bar}</div>'
        f'<span><b id="review-count-done">{done}</b> / {total} reviewed ({share})</span></div>'
    )


def header_markup(detail: Detail | None, queue: Queue) -> str:
    """What the reviewer needs beside the steps: id, status, who holds it, edits, and the history."""
    info = page_info(queue)
    if detail is None:
        return f'<div class="review-header">{_e(info)} Select a row, or press <kbd>n</kbd> for the next pending.</div>'
    parts = [f"<b>{_e(detail.id)}</b>", f"source {_e(detail.source)}",
             f'status <b id="review-status">{_e(detail.status)}</b>']
    if queue.held_by:
        parts.append(f'<span id="review-held" class="review-held">held by {_e(queue.held_by)}: open to look at only;'
                     " press Take over to change it</span>")
    elif detail.holder:
        whose = "you" if detail.holder == queue.reviewer else _e(detail.holder)
        parts.append(f'<span id="review-held">held by {whose}</span>')
    if detail.edited_fields:
        parts.append("edited: " + _e(", ".join(_field_name(name) for name in detail.edited_fields)))
    events = "".join(
        f"<li>{_e(event.at[:19].replace('T', ' '))} {_e(event.reviewer)}: {_e(describe(event))}</li>"
        for event in detail.events if event.kind != "claim" or (event.payload or {}).get("taken_from")
    )
    history = f'<ul class="review-events">{events}</ul>' if events else ""
    return f'<div class="review-header">{_e(info)} {" · ".join(parts)}{history}</div>'


def describe(event: Event) -> str:
    """One line of the history, steps counted from 1."""
    if event.kind == "decision":
        reasons = f" ({', '.join(event.reasons)})" if event.reasons else ""
        note = f": {event.note}" if event.note else ""
        return f"{event.decision}{reasons}{note}"
    if event.kind == "edit":
        payload = event.payload or {}
        where = "answer" if payload.get("step") is None else f"step {payload['step'] + 1} {payload.get('field')}"
        return f"edited {where}"
    if event.kind == "claim":
        return f"took it over from {(event.payload or {}).get('taken_from')}"
    if event.kind == "preference":
        pick = event.payload or {}
        others = [entry["label"] for entry in pick.get("candidates", []) if entry["label"] != pick.get("best")]
        worse = pick.get("bad") or others
        return (f"picked {pick.get('best')} at step {pick.get('step', 0) + 1} over {', '.join(worse)} "
                f"(sampled with {pick.get('model')}; the suggestion was {' > '.join(pick.get('ranking', []))})")
    return event.kind


def view_of(detail: Detail) -> View:
    return View(
        trajectory=detail.trajectory, title=f"{detail.id} · {detail.source}", images=detail.images,
        answer=detail.answer, reference_answer=detail.reference_answer, verdict=detail.verdict,
        verdict_reason=detail.verdict_reason, original=detail.original,
        original_answer=detail.record.get("answer") if isinstance(detail.record.get("answer"), str) else None,
    )


def viewer_html(detail: Detail | None) -> str:
    """The viewer's HTML for a trajectory, or its empty state."""
    return render(view_of(detail)) if detail is not None else EMPTY


def page_info(queue: Queue) -> str:
    shown = len(queue.ids)
    more = ", more on the next page" if queue.next_cursor else ""
    return f"Page {len(queue.cursors)} ({shown} shown{more})."


def _field_name(name: str) -> str:
    """An edited field as the store names it ("0.code") as people count ("step 1 code")."""
    step, _, field = name.partition(".")
    return f"step {int(step) + 1} {field}" if field else name


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
