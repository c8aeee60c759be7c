"""The Review tab: work through trajectories at keyboard speed, decide, fix, export.

The tab is a layout (small dataclasses of components, each built by one short function) and
the wiring: every event goes through `core.ui.wire` to a method of `Handlers`, which calls the
plain functions of `review.actions` and renders with `review.markup`. A refusal warns and leaves
the page as it was.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from agent.config import Settings
from agent.loop import IMAGE_SUFFIXES
from agent.prompt import system_prompt_from_record
from agent.ui import FinishedRun, StoreHooks
from core.ui import Links, wire
from review import markup, plots
from review import actions
from review.formats import EXPORT_FORMATS
from review.errors import StoreError
from review.actions import ANY, DATA_SUFFIXES, Queue
from review.store import EDIT_FIELDS, REJECT_REASONS, REPLAYS, STATUSES, Filters, Store
from review.sampler_ui import SAMPLER_KEYS, SamplerHandlers, SamplerPanel, sampler_panel, wire_sampler
from review.viewer import Viewer, build_viewer

STEP_CHOICES = [ANY, *(str(n) for n in range(1, 13))]
SHORTCUTS = {
    "a": "review-approve", "r": "review-reject", "s": "review-skip", "u": "review-undo",
    "j": "review-next", "k": "review-prev", "n": "review-next-pending", "p": SAMPLER_KEYS["pick"],
}
# Each decision, edit and undo carries an id the browser makes, so a retried request records nothing twice.
NEW_REQUEST_ID = ("(...args) => [...args.slice(0, -1), (globalThis.crypto && crypto.randomUUID) ? crypto.randomUUID()"
                  " : Date.now().toString(36) + Math.random().toString(36).slice(2)]")
REVIEWER_KEY = "mat-review-reviewer"  # where the browser keeps the reviewer's name across reloads

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
.review-header .review-held { color: #9a6700; font-weight: 600; }
.review-header .review-events { margin: 4px 0 0 0; padding-left: 18px; font-size: 12px; }
.review-placeholder { color: var(--body-text-color-subdued, #57606a); padding: 24px 8px; }
</style>
<script>
(() => {
  const keys = __KEYS__;
  const sampler = __SAMPLER__;
  const typing = (el) => el && (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
    (el.tagName === "INPUT" && !["checkbox", "radio", "button", "submit"].includes(el.type)));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat || typing(event.target)) return;
    if (/^Digit[0-9]$/.test(event.code) && pickStep(Number(event.code.slice(5)), event.shiftKey)) {
      event.preventDefault();
      return;
    }
    const id = keys[event.key];
    const button = id && document.getElementById(id);
    if (!button || button.offsetParent === null) return;
    event.preventDefault();
    button.click();
  });
  // The step sampler: a digit picks the best (0 the recorded step), Shift + digit marks one bad (or not).
  const pickStep = (digit, bad) => {
    const group = document.getElementById(bad ? sampler.bad : sampler.best);
    const input = group && group.offsetParent !== null && group.querySelectorAll("input")[digit];
    if (!input) return false;
    input.click();
    return true;
  };
})();
</script>
""".replace("__KEYS__", json.dumps(SHORTCUTS)).replace("__SAMPLER__", json.dumps(SAMPLER_KEYS))


# ---------------------------------------------------------------- layout


@dataclass
class FilterForm:
    status: Any
    tools: Any
    min_steps: Any
    max_steps: Any
    has_error: Any
    verdict: Any
    source: Any
    replay: Any
    search: Any
    previous_page: Any
    next_page: Any

    def inputs(self) -> list:
        """In `make_filters`' order (the API's `/review_filter` takes them so)."""
        return [self.status, self.tools, self.min_steps, self.max_steps, self.has_error, self.verdict, self.source,
                self.search, self.replay]


@dataclass
class DecisionBar:
    approve: Any
    reject: Any
    skip: Any
    undo: Any
    take_over: Any
    previous: Any
    next: Any
    next_pending: Any
    reasons: Any
    note: Any
    advance: Any
    open_id: Any
    request_id: Any


@dataclass
class EditForm:
    step: Any
    field: Any
    text: Any
    save: Any


@dataclass
class BulkForm:
    decision: Any
    count: Any
    apply: Any
    message: Any


@dataclass
class StatsView:
    tab: Any
    refresh: Any
    plots: list
    placeholders: list
    pairs: Any  # the preference pairs by source: a plot, its placeholder and the counts in words
    pairs_empty: Any
    pairs_text: Any

    def outputs(self) -> list:
        return [*self.plots, *self.placeholders, self.pairs, self.pairs_empty, self.pairs_text]


@dataclass
class FilesPanel:
    export_format: Any
    export_status: Any
    export: Any
    exported: Any
    export_message: Any
    upload: Any
    source: Any
    import_: Any
    import_message: Any


@dataclass
class ReviewLayout:
    queue: Any
    reviewer: Any
    remembered: Any
    counts: Any
    filters: FilterForm
    table: Any
    header: Any
    decisions: DecisionBar
    viewer: Viewer
    edit: EditForm
    sampler: SamplerPanel
    bulk: BulkForm
    stats: StatsView
    files: FilesPanel

    def screen(self) -> list:
        """What every change of place or decision redraws."""
        return [self.queue, self.table, self.counts, self.header, self.viewer.component]


def build_layout(store: Store, settings: Settings) -> ReviewLayout:
    """Lay out the tab inside the caller's `gr.Tab`."""
    facets = store.facets()
    gr.HTML('<div class="review-hints">Keys (not while typing): <kbd>a</kbd> approve · <kbd>r</kbd> reject · '
            "<kbd>s</kbd> skip · <kbd>u</kbd> undo · <kbd>j</kbd>/<kbd>k</kbd> next/previous · "
            "<kbd>n</kbd> next pending · sampler: <kbd>0</kbd>-<kbd>9</kbd> best, <kbd>Shift</kbd>+digit bad, "
            "<kbd>p</kbd> record the pick</div>")
    with gr.Row(equal_height=True):
        reviewer = gr.Textbox(label="Reviewer", placeholder="your name (the login is used when auth is on)",
                              scale=1, elem_id="review-reviewer")
        counts = gr.HTML(markup.counts_markup(store), elem_id="review-counts")
    with gr.Tabs():
        with gr.Tab("Queue"):
            filters = _filter_form(facets)
            table = gr.Dataframe(headers=markup.LIST_HEADERS, value=[], interactive=False, wrap=False,
                                 max_height=1200, column_widths=markup.LIST_WIDTHS, elem_id="review-list")
            header = gr.HTML(markup.header_markup(None, Queue()), elem_id="review-header")
            decisions = _decision_bar()
            viewer = build_viewer()
            edit = _edit_form()
            sampling = sampler_panel(settings)
            bulk = _bulk_form()
        stats = _stats_view()
        with gr.Tab("Import / export"):
            files = _files_panel()
    return ReviewLayout(queue=gr.State(Queue()), reviewer=reviewer,
                        remembered=gr.BrowserState("", storage_key=REVIEWER_KEY, secret=REVIEWER_KEY),
                        counts=counts, filters=filters, table=table, header=header, decisions=decisions,
                        viewer=viewer, edit=edit, sampler=sampling, bulk=bulk, stats=stats, files=files)


def _filter_form(facets: dict[str, list[str]]) -> FilterForm:
    with gr.Row():
        status = gr.Dropdown([ANY, *STATUSES], value=ANY, label="Status", elem_id="review-filter-status")
        tools = gr.Dropdown(facets["tools"], multiselect=True, label="Uses tools")
        min_steps = gr.Dropdown(STEP_CHOICES, value=ANY, label="Min steps", allow_custom_value=True)
        max_steps = gr.Dropdown(STEP_CHOICES, value=ANY, label="Max steps", allow_custom_value=True)
        has_error = gr.Radio([ANY, "yes", "no"], value=ANY, label="Has an error turn")
        verdict = gr.Dropdown([ANY, *facets["verdicts"]], value=ANY, label="Verifier verdict")
        replay = gr.Dropdown([ANY, *REPLAYS], value=ANY, label="Replay", elem_id="review-filter-replay")
        source = gr.Dropdown([ANY, *facets["sources"]], value=ANY, label="Source", elem_id="review-filter-source")
    with gr.Row():
        search = gr.Textbox(label="Search task and answer", placeholder="words; Enter to search",
                            scale=3, elem_id="review-search")
        previous_page = gr.Button("◀ Previous page", variant="secondary", scale=0)
        next_page = gr.Button("Next page ▶", variant="secondary", scale=0)
    return FilterForm(status, tools, min_steps, max_steps, has_error, verdict, source, replay, search,
                      previous_page, next_page)


def _decision_bar() -> DecisionBar:
    with gr.Row():
        approve = gr.Button("Approve (a)", variant="primary", elem_id="review-approve")
        reject = gr.Button("Reject (r)", variant="secondary", elem_id="review-reject")
        skip = gr.Button("Skip (s)", variant="secondary", elem_id="review-skip")
        undo = gr.Button("Undo (u)", variant="secondary", elem_id="review-undo")
        take_over = gr.Button("Take over", variant="secondary", elem_id="review-take-over")
        previous = gr.Button("Previous (k)", variant="secondary", elem_id="review-prev")
        following = gr.Button("Next (j)", variant="secondary", elem_id="review-next")
        next_pending = gr.Button("Next pending (n)", variant="secondary", elem_id="review-next-pending")
    with gr.Row():
        reasons = gr.CheckboxGroup([(label, code) for code, label in REJECT_REASONS.items()],
                                   label="Reject reasons", scale=3)
        with gr.Column(scale=1):
            note = gr.Textbox(label="Note", lines=2, placeholder="why (kept with the decision)")
            advance = gr.Checkbox(True, label="Open the next pending after a decision")
            open_id = gr.Textbox(label="Open by id", placeholder="trajectory id, Enter", elem_id="review-open")
    request_id = gr.Textbox("", visible=False, elem_id="review-request-id")
    return DecisionBar(approve, reject, skip, undo, take_over, previous, following, next_pending, reasons, note,
                       advance, open_id, request_id)


def _edit_form() -> EditForm:
    with gr.Accordion("Edit in place (the original is kept; a decided trajectory goes back to pending)", open=False):
        with gr.Row():
            step = gr.Number(1, label="Step (as numbered above)", precision=0, minimum=1, elem_id="review-edit-step")
            field = gr.Dropdown(list(EDIT_FIELDS), value="thought", label="Field", elem_id="review-edit-field")
        text = gr.Textbox(label="Text", lines=8, elem_id="review-edit-text")
        save = gr.Button("Save edit", variant="primary", elem_id="review-save-edit")
    return EditForm(step, field, text, save)


def _bulk_form() -> BulkForm:
    with gr.Accordion("Bulk decision: every pending trajectory of the list as filtered", open=False):
        with gr.Row():
            decision = gr.Radio(["approved", "rejected", "skipped"], value="approved", label="Decision",
                                elem_id="review-bulk-decision")
            count = gr.Button("Count (dry run)", variant="secondary", elem_id="review-bulk-count")
            apply = gr.Button("Decide the counted ones", variant="primary", elem_id="review-bulk-apply")
        message = gr.Markdown(elem_id="review-bulk-message")
    return BulkForm(decision, count, apply, message)


def _stats_view() -> StatsView:
    with gr.Tab("Stats") as tab:
        refresh = gr.Button("Refresh", variant="secondary")
        names = ["tools", "steps", "source", "reviewer", "progress"]
        labels = ["Tool usage", "Steps per trajectory", "By source", "By reviewer", "Progress over time"]
        shown, placeholders = [], []
        for row in (names[:2], names[2:4], names[4:]):
            with gr.Row():
                for name in row:
                    with gr.Column():
                        label = labels[names.index(name)]
                        shown.append(gr.Plot(label=label, elem_id=f"review-plot-{name}", visible=False))
                        placeholders.append(gr.Markdown(f"**{label}**: {plots.PLACEHOLDERS[names.index(name)]}",
                                                        elem_id=f"review-plot-{name}-empty",
                                                        elem_classes="review-placeholder"))
        with gr.Row():
            with gr.Column():
                pairs = gr.Plot(label="Preference pairs", elem_id="review-plot-pairs", visible=False)
                pairs_empty = gr.Markdown(f"**Preference pairs**: {plots.NO_PAIRS}", elem_id="review-plot-pairs-empty",
                                          elem_classes="review-placeholder")
            pairs_text = gr.Markdown(elem_id="review-pairs-counts")
    return StatsView(tab, refresh, shown, placeholders, pairs, pairs_empty, pairs_text)


def _files_panel() -> FilesPanel:
    with gr.Row():
        with gr.Column():
            export_format = gr.Dropdown(list(EXPORT_FORMATS), value="mmtraj", label="Export format")
            export_status = gr.Dropdown([ANY, *STATUSES], value="approved", label="Status")
            export = gr.Button("Export", variant="primary", elem_id="review-export")
            exported = gr.File(label="Exported file", elem_id="review-exported")
            export_message = gr.Markdown(elem_id="review-export-message")
        with gr.Column():
            upload = gr.File(label="Release JSON / JSONL / parquet, with its files.zip or image files",
                             file_count="multiple", elem_id="review-upload",
                             file_types=[*DATA_SUFFIXES, ".zip", *sorted(IMAGE_SUFFIXES)])
            source = gr.Textbox(label="Source name", placeholder="defaults to the file name")
            import_ = gr.Button("Import", variant="primary", elem_id="review-import")
            import_message = gr.Markdown(elem_id="review-import-message")
    return FilesPanel(export_format, export_status, export, exported, export_message, upload, source, import_,
                      import_message)


# ---------------------------------------------------------------- handlers


class Handlers:
    """The tab's event handlers over one store; each returns the values of the outputs it is wired to."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def render(self, queue: Queue) -> tuple:
        detail = actions.detail_or_none(self.store, queue.current)
        return (queue, markup.list_rows(self.store, queue), markup.counts_markup(self.store),
                markup.header_markup(detail, queue), markup.viewer_html(detail))

    def opened(self, queue: Queue) -> tuple:
        """The page after opening a trajectory; one someone else holds is named in a warning too."""
        if queue.held_by:
            gr.Warning(f"{queue.current} is held by {queue.held_by}: it is open to look at only; "
                       "press Take over to change it")
        return self.render(queue)

    def filter(self, queue: Queue, status: str, tools: list[str], min_steps: str, max_steps: str, has_error: str,
               verdict: str, source: str, search: str, replay: str) -> tuple:
        filters = actions.make_filters(status, tools, min_steps, max_steps, has_error, verdict, source, search, replay)
        return self.render(actions.apply_filters(self.store, queue, filters))

    def page(self, forward: bool):
        return lambda queue: self.render(actions.turn_page(self.store, queue, forward))

    def select(self, queue: Queue, typed: str, event: gr.SelectData, request: gr.Request) -> tuple:
        chosen = queue.ids[event.index[0]]
        return self.opened(actions.open_trajectory(self.store, queue, chosen, _named(typed, request)))

    def open(self, queue: Queue, typed: str, trajectory_id: str, request: gr.Request) -> tuple:
        return self.opened(actions.open_trajectory(self.store, queue, trajectory_id, _named(typed, request)))

    def move(self, step: int):
        def move(queue: Queue, typed: str, request: gr.Request) -> tuple:
            return self.opened(actions.neighbour(self.store, queue, step, _named(typed, request)))
        return move

    def next_pending(self, queue: Queue, typed: str, request: gr.Request) -> tuple:
        return self.render(actions.next_pending(self.store, queue, actions.reviewer_of(typed, request)))

    def take_over(self, queue: Queue, typed: str, request: gr.Request) -> tuple:
        return self.render(actions.take_over(self.store, queue, actions.reviewer_of(typed, request)))

    def decide(self, decision: str):
        def act(queue: Queue, typed: str, reasons: list[str], note: str, advance: bool, request_id: str,
                request: gr.Request) -> tuple:
            reviewer = actions.reviewer_of(typed, request)
            actions.decide(self.store, queue, reviewer, decision, reasons, note, advance, request_id)
            return (*self.render(queue), [], "")
        return act

    def undo(self, queue: Queue, typed: str, request_id: str, request: gr.Request) -> tuple:
        return self.render(actions.undo(self.store, queue, actions.reviewer_of(typed, request), request_id))

    def edit_source(self, queue: Queue, step: float, field_name: str) -> str:
        return actions.edit_value(self.store, queue.current, step, field_name)

    def shown(self, queue: Queue, step: float, field_name: str) -> str:
        """The edit box follows the open trajectory; a step it lacks leaves the box empty."""
        try:
            return actions.edit_value(self.store, queue.current, step, field_name)
        except StoreError:
            return ""

    def save_edit(self, queue: Queue, typed: str, step: float, field_name: str, value: str, request_id: str,
                  request: gr.Request) -> tuple:
        reviewer = actions.reviewer_of(typed, request)
        return self.render(actions.save_edit(self.store, queue, reviewer, step, field_name, value, request_id))

    def bulk_count(self, queue: Queue, decision: str) -> tuple:
        queue, found = actions.bulk_count(self.store, queue)
        message = (f"{found} pending trajectories of this list would be {decision}. Nothing is recorded yet: "
                   "press **Decide the counted ones** to record them." if found else
                   "No pending trajectory in this list: change the filters.")
        return queue, message

    def bulk_apply(self, queue: Queue, typed: str, decision: str, reasons: list[str], note: str,
                   request: gr.Request) -> tuple:
        reviewer = actions.reviewer_of(typed, request)
        queue, report = actions.bulk_decide(self.store, queue, reviewer, decision, reasons, note)
        gr.Info(f"Bulk decision: {report.summary(decision)}.")
        return (*self.render(queue), f"Done: {report.summary(decision)}.")

    def stats(self) -> tuple:
        from review.pairs import describe_counts, pair_counts

        figures = plots.figures(self.store.stats())
        counts = pair_counts(self.store)
        pairs = plots.pairs_by_source(counts)
        return (*(gr.Plot(value=figure, visible=figure is not None) for figure in figures),
                *(gr.Markdown(visible=figure is None) for figure in figures),
                gr.Plot(value=pairs, visible=pairs is not None), gr.Markdown(visible=pairs is None),
                "\n".join(f"- {line}" for line in describe_counts(counts)))

    def export(self, fmt: str, status: str) -> tuple:
        out, report = actions.export_file(self.store, fmt, status, Path(tempfile.mkdtemp(prefix="mat-export-")))
        message = f"Exported as {fmt}: {report.summary()}."
        (gr.Warning if report.skipped_missing_images else gr.Info)(message)
        return str(out), message

    def facet_choices(self, source: str | None = None) -> tuple:
        """Fresh choices for the tools, source and verdict filters; `source` is chosen (and offered) if given."""
        found = self.store.facets()
        sources = [ANY, *dict.fromkeys([*found["sources"], *([source] if source else [])])]
        return (gr.Dropdown(choices=found["tools"]),
                gr.Dropdown(choices=sources, value=source) if source else gr.Dropdown(choices=sources),
                gr.Dropdown(choices=[ANY, *found["verdicts"]]))

    def import_(self, queue: Queue, paths: list[str], name: str) -> tuple:
        try:
            message = actions.import_upload(self.store, paths, name)
        except StoreError as refused:
            gr.Warning(str(refused))
            return (f"Not imported: {refused}", *(gr.skip() for _ in range(8)))
        return (message, *self.facet_choices(), *self.render(actions.load_page(self.store, queue)))

    def load(self, queue: Queue, request: gr.Request) -> tuple:
        """A page (re)load: the login as the reviewer, fresh facets, and the list (only the linked source's, for
        a `?source=` address)."""
        login = getattr(request, "username", None)
        name = gr.Textbox(value=login, interactive=False) if login else gr.skip()
        linked = request.query_params.get("source") if request is not None else None
        shown = actions.apply_filters(self.store, queue, Filters(source=linked)) if linked else actions.load_page(self.store, queue)
        return (name, *self.facet_choices(linked), *self.render(shown))

    def remembered(self, name: str, typed: str, request: gr.Request) -> Any:
        """The name this browser kept from an earlier visit, once its storage is read; a login or a typed name wins."""
        if getattr(request, "username", None) or (typed or "").strip() or not name:
            return gr.skip()
        return name

    def link(self, address: dict | None, queue: Queue, typed: str, request: gr.Request) -> tuple:
        """An address another tab sent (`core.ui.Links`): open an item, or list one source."""
        source = (address or {}).get("source")
        shown = self.opened(actions.follow_link(self.store, queue, address, _named(typed, request)))
        return (*shown, self.facet_choices(source)[1] if source else gr.skip())


# ---------------------------------------------------------------- wiring


def build_review_tab(settings: Settings, links: Links | None = None) -> None:
    """Lay out the Review tab inside the caller's `gr.Tab` and wire it to the store at `settings.db`."""
    store = Store(settings.db)
    layout = build_layout(store, settings)
    handlers = Handlers(store)
    _wire_list(layout, handlers)
    _wire_decisions(layout, handlers)
    _wire_edit_and_bulk(layout, handlers)
    wire_sampler(layout.sampler, SamplerHandlers(store, settings, handlers.render), layout.queue, layout.reviewer,
                 layout.decisions.request_id, layout.screen(), NEW_REQUEST_ID)
    _wire_files_and_stats(layout, handlers)
    _wire_page(layout, handlers, links)


def _wire_list(layout: ReviewLayout, h: Handlers) -> None:
    form, bar, screen = layout.filters, layout.decisions, layout.screen()
    wire(form.search.submit, h.filter, [layout.queue, *form.inputs()], screen, "review_filter")
    for control in form.inputs():
        if control is not form.search:
            wire(control.change, h.filter, [layout.queue, *form.inputs()], screen)
    wire(form.next_page.click, h.page(True), [layout.queue], screen, "review_next_page")
    wire(form.previous_page.click, h.page(False), [layout.queue], screen, "review_previous_page")
    wire(layout.table.select, h.select, [layout.queue, layout.reviewer], screen)
    wire(bar.open_id.submit, h.open, [layout.queue, layout.reviewer, bar.open_id], screen, "review_open")
    wire(bar.next.click, h.move(1), [layout.queue, layout.reviewer], screen, "review_next")
    wire(bar.previous.click, h.move(-1), [layout.queue, layout.reviewer], screen, "review_previous")
    wire(bar.next_pending.click, h.next_pending, [layout.queue, layout.reviewer], screen, "review_next_pending")
    wire(bar.take_over.click, h.take_over, [layout.queue, layout.reviewer], screen, "review_take_over")


def _wire_decisions(layout: ReviewLayout, h: Handlers) -> None:
    bar, screen = layout.decisions, layout.screen()
    for button, decision in ((bar.approve, "approved"), (bar.reject, "rejected"), (bar.skip, "skipped")):
        wire(button.click, h.decide(decision),
             [layout.queue, layout.reviewer, bar.reasons, bar.note, bar.advance, bar.request_id],
             [*screen, bar.reasons, bar.note], f"review_{decision}", js=NEW_REQUEST_ID)
    wire(bar.undo.click, h.undo, [layout.queue, layout.reviewer, bar.request_id], screen, "review_undo",
         js=NEW_REQUEST_ID)


def _wire_edit_and_bulk(layout: ReviewLayout, h: Handlers) -> None:
    edit, bulk, bar, screen = layout.edit, layout.bulk, layout.decisions, layout.screen()
    for trigger in (edit.step.change, edit.field.change):
        wire(trigger, h.edit_source, [layout.queue, edit.step, edit.field], [edit.text])
    wire(layout.viewer.component.change, h.shown, [layout.queue, edit.step, edit.field], [edit.text])
    wire(edit.save.click, h.save_edit,
         [layout.queue, layout.reviewer, edit.step, edit.field, edit.text, bar.request_id], screen, "review_edit",
         js=NEW_REQUEST_ID)
    wire(bulk.count.click, h.bulk_count, [layout.queue, bulk.decision], [layout.queue, bulk.message],
         "review_bulk_count")
    wire(bulk.apply.click, h.bulk_apply, [layout.queue, layout.reviewer, bulk.decision, bar.reasons, bar.note],
         [*screen, bulk.message], "review_bulk_decide")


def _wire_files_and_stats(layout: ReviewLayout, h: Handlers) -> None:
    files, stats, form = layout.files, layout.stats, layout.filters
    wire(files.export.click, h.export, [files.export_format, files.export_status],
         [files.exported, files.export_message], "review_export")
    wire(files.import_.click, h.import_, [layout.queue, files.upload, files.source],
         [files.import_message, form.tools, form.source, form.verdict, *layout.screen()], "review_import")
    wire(stats.refresh.click, h.stats, [], stats.outputs(), "review_stats")
    wire(stats.tab.select, h.stats, [], stats.outputs())


def _wire_page(layout: ReviewLayout, h: Handlers, links: Links | None) -> None:
    """Page load (the remembered name, the list), the name kept in the browser, and links from other tabs."""
    form = layout.filters
    wire(layout.reviewer.change, lambda name: name, [layout.reviewer], [layout.remembered],
         trigger_mode="always_last")
    wire(layout.remembered.change, h.remembered, [layout.remembered, layout.reviewer], [layout.reviewer])
    root = gr.context.Context.root_block
    if root is not None:
        wire(root.load, h.load, [layout.queue], [layout.reviewer, form.tools, form.source, form.verdict,
                                                 *layout.screen()])
    if links is not None:
        address = links.address("review")
        wire(address.change, h.link, [address, layout.queue, layout.reviewer], [*layout.screen(), form.source])


def chat_hooks(settings: Settings) -> StoreHooks:
    """The Chat tab's way into the store: save a finished run, serve a stored record's system prompt."""
    store = Store(settings.db)  # one pooled database for the app's life, not one per save

    def save(finished: FinishedRun) -> str:
        return store.add_trajectory(finished.trajectory, source="chat", image_files=finished.files)

    def system_prompt(trajectory_id: str) -> str:
        return system_prompt_from_record(store.detail(trajectory_id).record)

    return StoreHooks(save=save, system_prompt=system_prompt)


def _named(typed: str | None, request: gr.Request | None) -> str | None:
    """The reviewer if one is named; browsing needs no name."""
    try:
        return actions.reviewer_of(typed, request)
    except actions.StoreError:
        return None
