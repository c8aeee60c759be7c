"""The Review tab: work through trajectories at keyboard speed, decide, fix, export.

The handlers at the top are plain functions over a `Store` and a `Queue` (the per-browser
state), so tests call them directly; `build_review_tab` only lays out components and wires
events to them. Every refusal is a `StoreError` with a one-line message, shown as a toast.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from agent.config import Settings
from agent.loop import IMAGE_SUFFIXES
from agent.prompt import system_prompt_from_record
from agent.ui import FinishedRun, StoreHooks
from core.ui import Links, wire
from review import plots
from review.errors import StoreError
from review.formats import EXPORT_FORMATS, ExportReport, ImageFiles, export
from review.store import EDIT_FIELDS, REJECT_REASONS, STATUSES, Detail, Filters, Row, Store
from review.viewer import View, build_viewer

PAGE_SIZE = 25
DATA_SUFFIXES = (".json", ".jsonl", ".parquet")
ANY = "any"
LIST_HEADERS = ["id", "status", "steps", "tools", "error", "verdict", "source", "held by", "task"]
TASK_CHARS = 140
STEP_CHOICES = [ANY, *(str(n) for n in range(1, 13))]
SHORTCUTS = {
    "a": "review-approve", "r": "review-reject", "s": "review-skip", "u": "review-undo",
    "j": "review-next", "k": "review-prev", "n": "review-next-pending",
}

REVIEW_HEAD = """
<style>
.review-counts { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; font-size: 14px; }
.review-counts b { font-variant-numeric: tabular-nums; }
.review-bar { flex: 1 1 220px; height: 10px; border-radius: 5px; background: #eaeef2; overflow: hidden;
  display: flex; min-width: 160px; }
.review-bar span { height: 100%; }
.review-hints kbd, .review-header kbd { border: 1px solid #d0d7de; border-bottom-width: 2px; border-radius: 4px;
  padding: 0 5px; font-size: 12px; background: #f6f8fa; color: #1f2328; }
.review-header { font-size: 14px; }
.review-header .review-events { margin: 4px 0 0 0; padding-left: 18px; font-size: 12px; }
</style>
<script>
(() => {
  const keys = __KEYS__;
  const typing = (el) => el && (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
    (el.tagName === "INPUT" && !["checkbox", "radio", "button", "submit"].includes(el.type)));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || typing(event.target)) return;
    const id = keys[event.key];
    const button = id && document.getElementById(id);
    if (!button || button.offsetParent === null) return;
    event.preventDefault();
    button.click();
  });
})();
</script>
""".replace("__KEYS__", json.dumps(SHORTCUTS))


@dataclass
class Queue:
    """One browser session's place in the list: filters, page cursors, the open trajectory."""

    filters: Filters = field(default_factory=Filters)
    cursors: list[str | None] = field(default_factory=lambda: [None])
    next_cursor: str | None = None
    ids: list[str] = field(default_factory=list)
    current: str | None = None
    done: list[str] = field(default_factory=list)  # trajectories this session decided or edited, for undo


# ---------------------------------------------------------------- handlers


def make_filters(status: str | None, tools: list[str] | None, min_steps: str | int | None,
                 max_steps: str | int | None, has_error: str | None, verdict: str | None, source: str | None,
                 search: str | None) -> Filters:
    """Filters from the form's values; "any" and empty fields mean no filter."""
    low, high = _whole(min_steps, "min steps"), _whole(max_steps, "max steps")
    if low is not None and high is not None and low > high:
        raise StoreError(f"min steps ({low}) is above max steps ({high})")
    return Filters(
        status=_chosen(status), tools=tuple(tools or ()), min_steps=low, max_steps=high,
        has_error=None if _chosen(has_error) is None else has_error == "yes",
        verdict=_chosen(verdict), source=_chosen(source), search=(search or "").strip(),
    )


def apply_filters(store: Store, queue: Queue, filters: Filters) -> Queue:
    """Start the list over at the first page under new filters."""
    queue.filters, queue.cursors = filters, [None]
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


def open_trajectory(store: Store, queue: Queue, trajectory_id: str, reviewer: str | None) -> Queue:
    """Show a trajectory; a named reviewer also claims a pending one so the queue sends others elsewhere.

    A decided trajectory is only looked at, so browsing past it holds nothing.
    """
    trajectory_id = (trajectory_id or "").strip()
    try:
        detail = store.detail(trajectory_id)
    except KeyError:
        raise StoreError(f"no trajectory {trajectory_id!r}") from None
    queue.current = trajectory_id
    if reviewer and detail.status == "pending":
        try:
            store.claim(trajectory_id, reviewer)
        except StoreError as held:
            gr.Warning(str(held))
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


def next_pending(store: Store, queue: Queue, reviewer: str | None) -> Queue:
    found = _next_pending_id(store, queue, reviewer)
    if found is None:
        raise StoreError("nothing left pending in this list that someone else is not holding")
    return open_trajectory(store, queue, found, reviewer)


def _next_pending_id(store: Store, queue: Queue, reviewer: str | None) -> str | None:
    """The next pending trajectory of the filtered list after the open one, wrapping round.

    Keyset cursors mark a position in the store's one order whatever the filter, so the
    scan can continue from the current page's cursor with the status narrowed to pending.
    """
    if queue.filters == Filters():
        return store.next_pending(after=queue.current, reviewer=reviewer)
    page = store.query(queue.filters, cursor=queue.cursors[-1], limit=PAGE_SIZE).rows
    after = [row.id for row in page].index(queue.current) + 1 if queue.current in queue.ids else 0
    later_pages = _pending_rows(store, queue.filters, queue.next_cursor) if queue.next_cursor else ()
    candidates = chain(page[after:], later_pages, _pending_rows(store, queue.filters, None))
    return next((row.id for row in candidates if row.status == "pending" and row.id != queue.current
                 and row.holder in (None, reviewer)), None)


def _pending_rows(store: Store, filters: Filters, cursor: str | None) -> Iterator[Row]:
    """Pending rows under `filters` from `cursor` to the end, fetched a page at a time as needed."""
    pending = replace(filters, status="pending")
    while True:
        page = store.query(pending, cursor=cursor, limit=PAGE_SIZE)
        yield from page.rows
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def reviewer_of(typed: str | None, request: gr.Request | None) -> str:
    """The login name when auth is on, else the name typed in the tab; required to change anything."""
    login = getattr(request, "username", None) if request is not None else None
    name = login or (typed or "").strip()
    if not name:
        raise StoreError("type your name in 'Reviewer' first: every decision records who made it")
    return name


def decide(store: Store, queue: Queue, reviewer: str, decision: str, reasons: list[str] | None = None,
           note: str = "", advance: bool = False) -> Queue:
    """Record a decision; with `advance`, open the next pending trajectory afterwards."""
    current = _require_current(queue)
    reasons = list(reasons or ())
    if decision == "rejected" and not reasons and not (note or "").strip():
        raise StoreError("pick at least one reject reason or write a note")
    if decision != "rejected":
        reasons = []
    store.decide(current, reviewer, decision, reasons, (note or "").strip())
    queue.done.append(current)
    if advance:
        following = _next_pending_id(store, queue, reviewer)
        if following is not None:
            open_trajectory(store, queue, following, reviewer)
    return queue


def undo(store: Store, queue: Queue, reviewer: str) -> Queue:
    """Take back this session's latest decision or edit (or, with none, the reviewer's own on the open one)."""
    target = queue.done[-1] if queue.done else _require_current(queue)
    store.undo(target, reviewer)
    if queue.done:
        queue.done.pop()
    queue.current = target
    return queue


def edit_value(store: Store, trajectory_id: str | None, step: float | None, field_name: str) -> str:
    """The text an edit of (step, field) would replace, as currently stored (edits applied)."""
    if not trajectory_id:
        return ""
    detail = store.detail(trajectory_id)
    if field_name == "answer":
        return detail.answer or ""
    index = _step_index(step, detail)
    chosen = detail.trajectory.steps[index]
    if field_name == "observation":
        return chosen.error if chosen.error is not None else (chosen.observation or "")
    return getattr(chosen, field_name) or ""


def save_edit(store: Store, queue: Queue, reviewer: str, step: float | None, field_name: str, value: str) -> Queue:
    current = _require_current(queue)
    index = None if field_name == "answer" else _step_index(step, store.detail(current))
    if value == edit_value(store, current, step, field_name):
        raise StoreError("nothing changed: edit the text before saving")
    store.edit(current, reviewer, step=index, field=field_name, value=value)
    queue.done.append(current)
    return queue


def export_file(store: Store, fmt: str, status: str | None, folder: Path) -> tuple[Path, ExportReport]:
    """Export into `folder`; a format that writes a folder comes back zipped, ready to download."""
    status = _chosen(status)
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


# ---------------------------------------------------------------- markup


def list_rows(store: Store, queue: Queue) -> list[list[Any]]:
    page = store.query(queue.filters, cursor=queue.cursors[-1], limit=PAGE_SIZE)
    return [_cells(row) for row in page.rows]


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


def header_markup(detail: Detail | None, page_info: str) -> str:
    """What the reviewer needs beside the steps: id, status, holder, edits, and the history."""
    if detail is None:
        return f'<div class="review-header">{_e(page_info)} Select a row, or press <kbd>n</kbd> for the next pending.</div>'
    parts = [f"<b>{_e(detail.id)}</b>", f"source {_e(detail.source)}", f'status <b id="review-status">{_e(detail.status)}</b>']
    if detail.holder:
        parts.append(f"held by {_e(detail.holder)}")
    if detail.edited_fields:
        parts.append("edited: " + _e(", ".join(detail.edited_fields)))
    events = "".join(
        f"<li>{_e(event.at[:19].replace('T', ' '))} {_e(event.reviewer)}: {_e(_describe(event))}</li>"
        for event in detail.events if event.kind != "claim"
    )
    history = f'<ul class="review-events">{events}</ul>' if events else ""
    return f'<div class="review-header">{_e(page_info)} {" · ".join(parts)}{history}</div>'


def view_of(detail: Detail) -> View:
    return View(
        trajectory=detail.trajectory, title=f"{detail.id} · {detail.source}", images=detail.images,
        answer=detail.answer, reference_answer=detail.reference_answer, verdict=detail.verdict,
        verdict_reason=detail.verdict_reason, original=detail.original,
        original_answer=detail.record.get("answer") if isinstance(detail.record.get("answer"), str) else None,
    )


def page_info(queue: Queue) -> str:
    shown = len(queue.ids)
    more = ", more on the next page" if queue.next_cursor else ""
    return f"Page {len(queue.cursors)} ({shown} shown{more})."


def stats_figures(store: Store) -> tuple:
    stats = store.stats()
    return (plots.tool_usage(stats), plots.steps_histogram(stats), plots.decisions_by(stats, "source"),
            plots.decisions_by(stats, "reviewer"), plots.progress_over_time(stats))


def chat_hooks(settings: Settings) -> StoreHooks:
    """The Chat tab's way into the store: save a finished run, serve a stored record's system prompt."""

    def save(finished: FinishedRun) -> str:
        with Store(settings.db) as store:
            return store.add_trajectory(finished.trajectory, source="chat", image_files=finished.files)

    def system_prompt(trajectory_id: str) -> str:
        with Store(settings.db) as store:
            return system_prompt_from_record(store.detail(trajectory_id).record)

    return StoreHooks(save=save, system_prompt=system_prompt)


# ---------------------------------------------------------------- the tab


def build_review_tab(settings: Settings, links: Links | None = None) -> None:
    """Lay out the Review tab inside the caller's `gr.Tab` and wire it to the store at `settings.db`."""
    store = Store(settings.db)
    facets = store.facets()
    queue_state = gr.State(Queue())
    gr.HTML(
        '<div class="review-hints">Keys (not while typing): <kbd>a</kbd> approve · <kbd>r</kbd> reject · '
        "<kbd>s</kbd> skip · <kbd>u</kbd> undo · <kbd>j</kbd>/<kbd>k</kbd> next/previous · "
        "<kbd>n</kbd> next pending</div>"
    )
    with gr.Row(equal_height=True):
        reviewer = gr.Textbox(label="Reviewer", placeholder="your name (the login is used when auth is on)",
                              scale=1, elem_id="review-reviewer")
        counts = gr.HTML(counts_markup(store), elem_id="review-counts")
    with gr.Tabs():
        with gr.Tab("Queue"):
            with gr.Row():
                status = gr.Dropdown([ANY, *STATUSES], value=ANY, label="Status", elem_id="review-filter-status")
                tools = gr.Dropdown(facets["tools"], multiselect=True, label="Uses tools")
                min_steps = gr.Dropdown(STEP_CHOICES, value=ANY, label="Min steps", allow_custom_value=True)
                max_steps = gr.Dropdown(STEP_CHOICES, value=ANY, label="Max steps", allow_custom_value=True)
                has_error = gr.Radio([ANY, "yes", "no"], value=ANY, label="Has an error turn")
                verdict = gr.Dropdown([ANY, *facets["verdicts"]], value=ANY, label="Verifier verdict")
                source = gr.Dropdown([ANY, *facets["sources"]], value=ANY, label="Source")
            with gr.Row():
                search = gr.Textbox(label="Search task and answer", placeholder="words; Enter to search",
                                    scale=3, elem_id="review-search")
                previous_page = gr.Button("◀ Previous page", scale=0)
                next_page = gr.Button("Next page ▶", scale=0)
            table = gr.Dataframe(headers=LIST_HEADERS, value=[], interactive=False, wrap=False, max_height=1200,
                                 column_widths=["8%", "7%", "5%", "17%", "5%", "7%", "8%", "7%", "36%"],
                                 elem_id="review-list")
            header = gr.HTML(header_markup(None, ""), elem_id="review-header")
            with gr.Row():
                approve = gr.Button("Approve (a)", variant="primary", elem_id="review-approve")
                reject = gr.Button("Reject (r)", variant="stop", elem_id="review-reject")
                skip = gr.Button("Skip (s)", elem_id="review-skip")
                undo_button = gr.Button("Undo (u)", elem_id="review-undo")
                prev_button = gr.Button("Previous (k)", elem_id="review-prev")
                next_button = gr.Button("Next (j)", elem_id="review-next")
                pending_button = gr.Button("Next pending (n)", elem_id="review-next-pending")
            with gr.Row():
                reasons = gr.CheckboxGroup([(label, code) for code, label in REJECT_REASONS.items()],
                                           label="Reject reasons", scale=3)
                with gr.Column(scale=1):
                    note = gr.Textbox(label="Note", lines=2, placeholder="why (kept with the decision)")
                    advance = gr.Checkbox(True, label="Open the next pending after a decision")
                    open_id = gr.Textbox(label="Open by id", placeholder="trajectory id, Enter", elem_id="review-open")
            viewer = build_viewer()
            with gr.Accordion("Edit in place (the original is kept)", open=False):
                with gr.Row():
                    edit_step = gr.Number(0, label="Step", precision=0, minimum=0)
                    edit_field = gr.Dropdown(list(EDIT_FIELDS), value="thought", label="Field")
                edit_text = gr.Textbox(label="Text", lines=8, elem_id="review-edit-text")
                save = gr.Button("Save edit")
        with gr.Tab("Stats") as stats_tab:
            refresh_stats = gr.Button("Refresh")
            with gr.Row():
                figures = [gr.Plot(label="Tool usage", elem_id="review-plot-tools"),
                           gr.Plot(label="Steps per trajectory", elem_id="review-plot-steps")]
            with gr.Row():
                figures += [gr.Plot(label="By source", elem_id="review-plot-source"),
                            gr.Plot(label="By reviewer", elem_id="review-plot-reviewer")]
            figures.append(gr.Plot(label="Progress over time", elem_id="review-plot-progress"))
        with gr.Tab("Import / export"):
            with gr.Row():
                with gr.Column():
                    export_format = gr.Dropdown(list(EXPORT_FORMATS), value="mmtraj", label="Export format")
                    export_status = gr.Dropdown([ANY, *STATUSES], value="approved", label="Status")
                    export_button = gr.Button("Export", elem_id="review-export")
                    exported = gr.File(label="Exported file", elem_id="review-exported")
                    export_message = gr.Markdown(elem_id="review-export-message")
                with gr.Column():
                    upload = gr.File(label="Release JSON / JSONL / parquet, with its files.zip or image files",
                                     file_count="multiple", elem_id="review-upload",
                                     file_types=[*DATA_SUFFIXES, ".zip", *sorted(IMAGE_SUFFIXES)])
                    import_source = gr.Textbox(label="Source name", placeholder="defaults to the file name")
                    import_button = gr.Button("Import")
                    import_message = gr.Markdown(elem_id="review-import-message")

    filter_inputs = [status, tools, min_steps, max_steps, has_error, verdict, source, search]
    screen = [queue_state, table, counts, header, viewer.component]

    def render(queue: Queue) -> tuple:
        detail = _detail_or_none(store, queue.current)
        return (queue, list_rows(store, queue), counts_markup(store), header_markup(detail, page_info(queue)),
                viewer.update(view_of(detail) if detail else None))

    def on_filter(queue, *values):
        return render(apply_filters(store, queue, make_filters(*values)))

    def on_page(forward: bool):
        return lambda queue: render(turn_page(store, queue, forward))

    def on_select(queue, typed, event: gr.SelectData, request: gr.Request):
        return render(open_trajectory(store, queue, queue.ids[event.index[0]], _maybe_reviewer(typed, request)))

    def on_open(queue, typed, trajectory_id, request: gr.Request):
        return render(open_trajectory(store, queue, trajectory_id, _maybe_reviewer(typed, request)))

    def on_move(step: int):
        def move(queue, typed, request: gr.Request):
            return render(neighbour(store, queue, step, _maybe_reviewer(typed, request)))
        return move

    def on_next_pending(queue, typed, request: gr.Request):
        return render(next_pending(store, queue, _maybe_reviewer(typed, request)))

    def on_decide(decision: str):
        def act(queue, typed, chosen, text, forward, request: gr.Request):
            decide(store, queue, reviewer_of(typed, request), decision, chosen, text, forward)
            return (*render(queue), [], "")
        return act

    def on_undo(queue, typed, request: gr.Request):
        return render(undo(store, queue, reviewer_of(typed, request)))

    def on_edit_source(queue, step, field_name):
        return edit_value(store, queue.current, step, field_name)

    def on_shown(queue, step, field_name):
        try:
            return edit_value(store, queue.current, step, field_name)
        except StoreError:
            return ""

    def on_save(queue, typed, step, field_name, value, request: gr.Request):
        return render(save_edit(store, queue, reviewer_of(typed, request), step, field_name, value))

    def on_export(fmt, chosen_status):
        out, report = export_file(store, fmt, chosen_status, Path(tempfile.mkdtemp(prefix="mat-export-")))
        message = f"Exported as {fmt}: {report.summary()}."
        (gr.Warning if report.skipped_missing_images else gr.Info)(message)
        return str(out), message

    def facet_choices() -> tuple:
        found = store.facets()
        return (gr.update(choices=found["tools"]), gr.update(choices=[ANY, *found["sources"]]),
                gr.update(choices=[ANY, *found["verdicts"]]))

    def on_import(queue, paths, name):
        try:
            message = import_upload(store, paths, name)
        except StoreError as refused:
            gr.Warning(str(refused))
            return (f"Not imported: {refused}", *(gr.skip() for _ in range(3 + len(screen))))
        return (message, *facet_choices(), *render(load_page(store, queue)))

    def on_load(queue, request: gr.Request):
        login = getattr(request, "username", None)
        name = gr.update(value=login, interactive=False) if login else gr.update()
        tools_choice, sources, verdicts = facet_choices()
        linked = request.query_params.get("source") if request is not None else None  # ?source=... links
        if linked:
            sources = gr.update(choices=list(dict.fromkeys([*sources["choices"], linked])), value=linked)
            return (name, tools_choice, sources, verdicts, *render(apply_filters(store, queue, Filters(source=linked))))
        return (name, tools_choice, sources, verdicts, *render(load_page(store, queue)))

    wire(search.submit, on_filter, [queue_state, *filter_inputs], screen, "review_filter")
    for control in filter_inputs[:-1]:
        wire(control.change, on_filter, [queue_state, *filter_inputs], screen)
    wire(next_page.click, on_page(True), [queue_state], screen, "review_next_page")
    wire(previous_page.click, on_page(False), [queue_state], screen, "review_previous_page")
    wire(table.select, on_select, [queue_state, reviewer], screen)
    wire(open_id.submit, on_open, [queue_state, reviewer, open_id], screen, "review_open")
    wire(next_button.click, on_move(1), [queue_state, reviewer], screen, "review_next")
    wire(prev_button.click, on_move(-1), [queue_state, reviewer], screen, "review_previous")
    wire(pending_button.click, on_next_pending, [queue_state, reviewer], screen, "review_next_pending")
    for button, decision in ((approve, "approved"), (reject, "rejected"), (skip, "skipped")):
        wire(button.click, on_decide(decision), [queue_state, reviewer, reasons, note, advance],
              [*screen, reasons, note], f"review_{decision}")
    wire(undo_button.click, on_undo, [queue_state, reviewer], screen, "review_undo")
    for trigger in (edit_step.change, edit_field.change):
        wire(trigger, on_edit_source, [queue_state, edit_step, edit_field], [edit_text])
    wire(viewer.component.change, on_shown, [queue_state, edit_step, edit_field], [edit_text])
    wire(save.click, on_save, [queue_state, reviewer, edit_step, edit_field, edit_text], screen, "review_edit")
    wire(export_button.click, on_export, [export_format, export_status], [exported, export_message], "review_export")
    wire(import_button.click, on_import, [queue_state, upload, import_source],
          [import_message, tools, source, verdict, *screen], "review_import")
    for trigger in (refresh_stats.click, stats_tab.select):
        wire(trigger, lambda: stats_figures(store), [], figures, None)
    root = gr.context.Context.root_block
    if root is not None:
        wire(root.load, on_load, [queue_state], [reviewer, tools, source, verdict, *screen])


# ---------------------------------------------------------------- helpers


def _maybe_reviewer(typed: str | None, request: gr.Request | None) -> str | None:
    try:
        return reviewer_of(typed, request)
    except StoreError:
        return None


def _detail_or_none(store: Store, trajectory_id: str | None) -> Detail | None:
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


def _step_index(step: float | None, detail: Detail) -> int:
    count = len(detail.trajectory.steps)
    if step is None or not 0 <= int(step) < count:
        raise StoreError(f"{detail.id} has steps 0 to {count - 1}; step {step} does not exist")
    return int(step)


def _whole(value: str | int | None, name: str) -> int | None:
    chosen = _chosen(value if value is None or isinstance(value, str) else str(value))
    if chosen is None:
        return None
    try:
        return int(chosen)
    except ValueError:
        raise StoreError(f"{name} must be a whole number, not {chosen!r}") from None


def _chosen(value: str | None) -> str | None:
    return None if value in (None, "", ANY) else value


def _cells(row: Row) -> list[Any]:
    task = row.task if len(row.task) <= TASK_CHARS else row.task[: TASK_CHARS - 1] + "…"
    return [row.id, row.status, row.steps, ", ".join(row.tools), "yes" if row.has_error else "",
            row.verdict or "", row.source, row.holder or "", task]


def _describe(event) -> str:
    if event.kind == "decision":
        reasons = f" ({', '.join(event.reasons)})" if event.reasons else ""
        note = f": {event.note}" if event.note else ""
        return f"{event.decision}{reasons}{note}"
    if event.kind == "edit":
        payload = event.payload or {}
        where = "answer" if payload.get("step") is None else f"step {payload['step']} {payload.get('field')}"
        return f"edited {where}"
    return event.kind


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
