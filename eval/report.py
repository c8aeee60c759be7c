"""What a run scored, in the shapes people read: a terminal table, the tab's tables, one self-contained HTML file.

Everything here reads the store only. The HTML report inlines its styles, charts (SVG) and trajectory
thumbnails, so it opens anywhere without the app or the network.
"""

from __future__ import annotations

import html
import json
import math
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from core import runs
from eval.errors import EvalError
from eval.metrics import (
    DEFINITIONS, PAPER, PAPER_PROTOCOL, Result, Score, Similarity, correct, gaia_scores, gta_scores, load_results,
    rules, stepwise_scores, timeouts,
)
from review.store import Store

CHART_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d")


_OWN = ("benchmark", "split", "profile", "model", "adapter", "mode")


@dataclass
class RunInfo:
    """An evaluation run: the shared run record and evaluation's own columns, with how many tasks have a result."""

    run: runs.Run
    benchmark: str
    split: str
    profile: str
    model: str
    adapter: str
    mode: str
    done: int

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def total(self) -> int:
        return self.run.total or 0

    @property
    def label(self) -> str:
        return f"{self.id} ({self.evaluated})"

    @property
    def evaluated(self) -> str:
        """What the run evaluated: its model, and its adapter as what it is (`model_description`)."""
        return model_description(self.model, self.adapter)


def model_description(model: str, adapter: str) -> str:
    """A run's model in a few words, so base, SFT and DPO runs read apart in a comparison: the model, and an
    adapter by the method it was trained with and its run's folder, e.g. `Qwen2-VL-7B + DPO adapter dpo-run (on
    SFT sft-run)`. The method is what training wrote beside the adapter (`train_config.json`); an adapter without
    it is just an adapter."""
    if not adapter:
        return model
    folder = Path(adapter)
    config = _training_config(folder)
    method = str(config.get("method") or "").upper()
    text = f"{model.removesuffix(f' + {folder.name}')} + {method + ' ' if method in ('SFT', 'DPO') else ''}adapter " \
           f"{_run_name(folder)}"
    started = config.get("adapter")
    return text + (f" (on SFT {_run_name(Path(started))})" if method == "DPO" and started else "")


def _training_config(adapter: Path) -> dict:
    try:
        config = json.loads((adapter / "train_config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _run_name(adapter: Path) -> str:
    """An adapter by its run: training writes it to OUT/adapter, so OUT's name says which run it is."""
    return adapter.parent.name if adapter.name == "adapter" else adapter.name


def list_runs(store: Store, benchmark: str | None = None) -> list[RunInfo]:
    """Evaluation runs, newest first, with how many tasks have a result."""
    own = {row[0]: row[1:] for row in store.db.read(f"SELECT id, {', '.join(_OWN)} FROM eval_runs")}
    done = dict(store.db.read("SELECT run_id, COUNT(*) FROM eval_results GROUP BY run_id"))
    found = [RunInfo(run, *own[run.id], done.get(run.id, 0)) for run in runs.list_runs(store.db, "eval")
             if run.id in own]
    return [info for info in found if benchmark in (None, info.benchmark)]


def run_info(store: Store, run_id: str) -> RunInfo:
    run = runs.find(store.db, run_id)
    row = store.db.read_one(f"SELECT {', '.join(_OWN)} FROM eval_runs WHERE id = ?", (run_id,))
    if run is None or row is None:
        raise EvalError(f"no evaluation run {run_id!r} in {store.path}")
    return RunInfo(run, *row, store.db.value("SELECT COUNT(*) FROM eval_results WHERE run_id = ?", (run_id,)))


def run_scores(store: Store, run_id: str, protocol: str = "official",
               similarity: Similarity | None = None, tasks: set[str] | None = None) -> list[Score]:
    """The run's scores (on `tasks` only, when given), then how many of its tasks timed out."""
    info = run_info(store, run_id)
    results = load_results(store.db, run_id, tasks)
    if info.mode == "step-by-step":
        scores = stepwise_scores(store.db, run_id, protocol, similarity, tasks)
    elif info.benchmark == "gaia":
        scores = gaia_scores(results)
        if any(r.reformatted is not None for r in results):
            scores += gaia_scores(results, reformatted=True)
    else:
        scores = gta_scores(results, protocol, info.profile, similarity)
    return [*scores, timeouts(results)]


def common_tasks(store: Store, run_ids: list[str]) -> set[str] | None:
    """The tasks every run finished (answered or timed out); None for a single run, which keeps all its rows."""
    if len(run_ids) < 2:
        return None
    finished = [{r.task_id for r in load_results(store.db, run_id) if r.status != "error"} for run_id in run_ids]
    return set.intersection(*finished)


def comparison_note(store: Store, run_ids: list[str]) -> str:
    """What a comparison of runs is computed on, in one line ('' for a single run)."""
    common = common_tasks(store, run_ids)
    if common is None:
        return ""
    counts = ", ".join(f"{run_id}: {len(load_results(store.db, run_id))}" for run_id in run_ids)
    return (f"Compared on the {len(common)} task(s) all {len(run_ids)} runs finished (results stored: {counts}); "
            "the other tasks are left out of every score.")


def comparison(store: Store, run_ids: list[str], protocol: str = "official",
               similarity: Similarity | None = None) -> tuple[list[str], list[list[str]]]:
    """A table: one row per (metric, group), one column per run, then the paper's numbers.

    Several runs are scored on the tasks all of them finished (`comparison_note` says how many).
    """
    infos = [run_info(store, r) for r in run_ids]
    benchmarks = {i.benchmark for i in infos}
    common = common_tasks(store, run_ids)
    per_run = [run_scores(store, r, protocol, similarity, common) for r in run_ids]
    keys: list[tuple[str, str]] = []
    for scores in per_run:
        keys += [(s.name, s.group) for s in scores if (s.name, s.group) not in keys]
    benchmark = next(iter(benchmarks)) if len(benchmarks) == 1 else ""
    paper = PAPER.get(benchmark, {})
    header = ["metric", "group", "protocol", *[i.label for i in infos], *paper]
    rows = []
    for name, group in keys:
        found = [next((s for s in scores if (s.name, s.group) == (name, group)), None) for scores in per_run]
        protocols = list(dict.fromkeys(s.protocol for s in found if s is not None))
        row = [name, group, " / ".join(protocols), *[s.short() if s else "—" for s in found]]
        row += [_paper_cell(numbers, benchmark, name, group, protocol) for numbers in paper.values()]
        rows.append(row)
    return header, rows


def _paper_cell(numbers: dict, benchmark: str, name: str, group: str, protocol: str) -> str:
    """The paper's figure on the rows it compares with, marked where our row is scored another way.

    The paper reports GTA AnsAcc over objective queries (MAT's script) and GAIA accuracy per level and overall
    (after MAT's re-formatting pass).
    """
    if benchmark == "gta" and (name, group) == ("AnsAcc", "objective"):
        found, same = numbers.get("AnsAcc"), protocol == PAPER_PROTOCOL["gta"]
    elif benchmark == "gaia" and name.startswith("Accuracy"):
        found, same = numbers.get(group), name == f"Accuracy ({PAPER_PROTOCOL['gaia']})"
    else:
        return ""
    if found is None:
        return ""
    value, hits, total = found
    return f"{value:.2f}% ({hits}/{total})" + ("" if same else f", {PAPER_PROTOCOL[benchmark]}")


def headline(store: Store, run_id: str) -> str:
    """The run's main score in one phrase, for a status line: GTA AnsAcc (official), GAIA overall accuracy."""
    scores = run_scores(store, run_id)
    main = next((s for s in scores if (s.name, s.group) in {("AnsAcc", "objective"), ("Accuracy", "overall"),
                                                            ("SummAcc", "overall")}), None)
    late = next(s for s in scores if s.name == "Timed out")
    text = f"{main.name} {main.text()}" if main else "no score"
    return text + (f"; {late.numerator:g} timed out" if late.numerator else "")


@dataclass
class Flip:
    task_id: str
    question: str
    base: bool | None
    tuned: bool | None
    base_trajectory: str | None
    tuned_trajectory: str | None

    @property
    def change(self) -> str:
        if self.base is False and self.tuned:
            return "fixed"
        if self.base and self.tuned is False:
            return "broken"
        return "same"


def flips(store: Store, base_run: str, tuned_run: str, protocol: str = "official") -> list[Flip]:
    """Tasks both runs attempted, fixed and broken ones first."""
    benchmark = run_info(store, base_run).benchmark
    base = {r.task_id: r for r in load_results(store.db, base_run)}
    tuned = {r.task_id: r for r in load_results(store.db, tuned_run)}
    items = []
    for task_id, b in base.items():
        t = tuned.get(task_id)
        if t is None:
            continue
        items.append(Flip(task_id, b.question, correct(b, benchmark, protocol), correct(t, benchmark, protocol),
                          b.trajectory_id, t.trajectory_id))
    order = {"fixed": 0, "broken": 1, "same": 2}
    return sorted(items, key=lambda f: order[f.change])


def task_rows(store: Store, run_id: str, protocol: str = "official") -> list[list]:
    """Per task: id, kind/level, status, the answer, the reference, right or wrong, steps, trajectory id."""
    from eval.runner import _reference_text

    benchmark = run_info(store, run_id).benchmark
    rows = []
    for r in load_results(store.db, run_id):
        verdict = correct(r, benchmark, protocol)
        mark = "—" if verdict is None else ("right" if verdict else "wrong")
        rows.append([r.task_id, r.kind, r.status, r.prediction or r.error, _reference_text(r.truth) or "",
                     mark, r.steps, r.trajectory_id or ""])
    return rows


CHART_LEFT_OUT = ("ToolAcc precision", "ToolAcc recall", "Timed out")  # tables give them; F1 stands for both


def chart_series(store: Store, run_ids: list[str], protocol: str = "official",
                 similarity: Similarity | None = None) -> tuple[list[str], dict[str, list[float | None]]]:
    """Bars to compare runs: one category per (metric, group), one series per run, on the tasks all finished."""
    common = common_tasks(store, run_ids)
    per_run = {run_info(store, r).label: [s for s in run_scores(store, r, protocol, similarity, common)
                                          if s.name not in CHART_LEFT_OUT] for r in run_ids}
    categories: list[str] = []
    for scores in per_run.values():
        categories += [_category_label(s) for s in scores if _category_label(s) not in categories]
    series = {}
    for label, scores in per_run.items():
        values = {_category_label(s): s.value for s in scores}
        series[label] = [values.get(c) for c in categories]
    return categories, series


def _category_label(s: Score) -> str:
    return s.name if s.group == "overall" else f"{s.name} · {s.group}"


def contamination_lines(store: Store, run_ids: list[str]) -> list[str]:
    """The contamination check every report carries (DESIGN.md §7), one line per benchmark: the store's approved
    training set against the tasks the runs were scored on (with the image hashes evaluation remembered)."""
    from eval.contamination import benchmark_name, store_queries
    from review.benchmarks import known
    from review.contamination import Query, overlap

    questions: dict[tuple[str, str], dict[str, str]] = {}
    for info in (run_info(store, run_id) for run_id in run_ids):
        found = questions.setdefault((info.benchmark, benchmark_name(info.benchmark, info.split)), {})
        found.update({r.task_id: r.question for r in load_results(store.db, info.id)})
    if not store.counts()["approved"]:
        return [f"Contamination: no training trajectory is approved in this store yet, so none overlaps {name}"
                for _, name in questions]
    lines = []
    for (benchmark, name), tasks in questions.items():
        images = {query.id: query.images for query in known(store, [benchmark]).get(benchmark, [])}
        queries = [Query(task_id, text, images.get(task_id, ())) for task_id, text in tasks.items()]
        lines.append(f"Contamination: {overlap(store_queries(store), queries, name=name).summary()}")
    return lines


# ------------------------------------------------------------------ text


def text_report(store: Store, run_ids: list[str], protocol: str = "official") -> str:
    """The comparison table for a terminal: columns padded by the width each cell takes on screen."""
    header, rows = comparison(store, run_ids, protocol)
    note = comparison_note(store, run_ids)
    return "\n".join(([note] if note else []) + aligned([header, *rows]))


def aligned(rows: list[list]) -> list[str]:
    """Rows as lines whose columns start at the same screen column (wide characters take two)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(_screen_width(c) for c in column) for column in zip(*cells, strict=True)]
    return ["  ".join(c + " " * (w - _screen_width(c)) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in cells]


def _screen_width(text: str) -> int:
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


# ------------------------------------------------------------------ SVG and HTML

# Chart text is set in a monospace font so its width is known before any browser lays it out: an upper bound of
# the advance per character, in em (DejaVu Sans Mono and Liberation Mono advance 0.60 em).
_MONO_EM = 0.62
_LEGEND_FONT, _AXIS_FONT, _LABEL_CHARS = 12, 11, 60
_SLANT = math.radians(35)


def svg_bar_chart(categories: list[str], series: dict[str, list[float | None]], title: str = "") -> str:
    """A grouped bar chart (0-100%) as inline SVG; missing values are left as gaps.

    The legend lists one run per line above the plot, and the canvas is sized from its text, so every label
    lies inside the chart whatever the run names.
    """
    labels = [_clip(label) for label in series]
    names = [_clip(category) for category in categories]
    bar, gap, height = 16, 18, 220
    group_width = max(1, len(series)) * bar + gap
    top = 14 + 18 * len(series)
    slant = max((_text_width(n, _AXIS_FONT) for n in names), default=0.0)
    first_bar_middle = gap / 2 + len(series) * bar / 2
    left = max(48.0, slant * math.cos(_SLANT) - first_bar_middle + 8)
    legend_width = 24 + max((_text_width(label, _LEGEND_FONT) for label in labels), default=0.0) + 12
    width = math.ceil(max(left + len(categories) * group_width + 20, legend_width))
    full_height = math.ceil(top + height + 16 + slant * math.sin(_SLANT) + _AXIS_FONT)
    mono = 'font-family="DejaVu Sans Mono, Liberation Mono, monospace"'
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="mat-chart" width="{width}" height="{full_height}"'
             f' viewBox="0 0 {width} {full_height}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>']
    for s, label in enumerate(labels):
        y = 6 + 18 * s
        parts.append(f'<rect x="6" y="{y}" width="12" height="12" fill="{CHART_COLORS[s % len(CHART_COLORS)]}"/>'
                     f'<text class="mat-legend" x="24" y="{y + 10}" font-size="{_LEGEND_FONT}" {mono}>'
                     f'{_e(label)}</text>')
    for tick in range(0, 101, 25):
        y = top + height - tick * height / 100
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y}" y2="{y}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y + 4}" font-size="{_AXIS_FONT}" text-anchor="end" {mono}>'
                     f'{tick}%</text>')
    for g, category in enumerate(names):
        x0 = left + g * group_width + gap / 2
        for s, (label, values) in enumerate(series.items()):
            value = values[g]
            if value is None:
                continue
            h = value * height / 100
            parts.append(
                f'<rect class="mat-bar" x="{x0 + s * bar}" y="{top + height - h}" width="{bar - 2}" height="{h}"'
                f' fill="{CHART_COLORS[s % len(CHART_COLORS)]}"><title>{_e(label)}: {value:.2f}%</title></rect>')
        cx, cy = x0 + len(series) * bar / 2, top + height + 12
        parts.append(f'<text x="{cx}" y="{cy}" font-size="{_AXIS_FONT}" text-anchor="end" {mono}'
                     f' transform="rotate(-35 {cx} {cy})">{_e(category)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _text_width(text: str, font_size: int) -> float:
    return _screen_width(text) * _MONO_EM * font_size


REPORT_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #1f2328; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
.right { color: #116329; } .wrong { color: #82071e; }
dl dt { font-weight: 600; margin-top: 6px; } dl dd { margin-left: 16px; }
"""


def html_report(store: Store, run_ids: list[str], protocol: str = "official", examples: int = 3) -> str:
    """One self-contained HTML page: runs, scores beside the paper's, charts, flips, example trajectories."""
    from review.viewer import View, image_views, render

    similarity = None
    infos = [run_info(store, r) for r in run_ids]
    header, rows = comparison(store, run_ids, protocol, similarity)
    categories, series = chart_series(store, run_ids, protocol, similarity)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>MAT Studio evaluation report</title>",
        f"<style>{REPORT_CSS}</style></head><body>",
        "<h1>MAT Studio evaluation report</h1>",
        f"<p>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}. GTA answers scored under the "
        f"<b>{_e(protocol)}</b> protocol unless a row says otherwise; each score shows its count and denominator.</p>",
        "<h2>Runs</h2>", _table(["run", "evaluated", "benchmark", "adapter folder", "profile", "tasks", "status"],
                                [[i.id, i.evaluated, i.benchmark, i.adapter, i.profile, f"{i.done}/{i.total}",
                                  i.status] for i in infos]),
        "<h2>Scores</h2>", *([f"<p>{_e(note)}</p>"] if (note := comparison_note(store, run_ids)) else []),
        _table(header, rows),
        "<h2>Chart</h2>", svg_bar_chart(categories, series, "Scores by run"),
        "<h2>Contamination</h2>", *(f"<p class='contamination'>{_e(line)}</p>"
                                    for line in contamination_lines(store, run_ids)),
    ]
    for before, after in zip(run_ids, run_ids[1:], strict=False):  # base → SFT, SFT → DPO: in the order given
        changed = [f for f in flips(store, before, after, protocol) if f.change != "same"]
        parts += [f"<h2>Tasks that flipped ({_e(before)} → {_e(after)})</h2>",
                  _table(["task", "change", "question"], [[f.task_id, f.change, f.question[:160]] for f in changed])
                  if changed else "<p>No task changed its verdict.</p>"]
    parts.append("<h2>Example trajectories</h2>")
    for run_id in run_ids:
        for result in _examples(store, run_id, examples):
            detail = store.detail(result.trajectory_id)
            view = View(trajectory=detail.trajectory, title=f"{run_id} · task {result.task_id}",
                        images=detail.images or image_views(detail.trajectory.task.images),
                        answer=result.prediction, reference_answer=detail.reference_answer)
            parts.append(render(view))
    parts.append("<h2>Definitions</h2><dl>")
    for name, rule in rules().items():
        parts.append(f"<dt>{_e(name)}</dt><dd>{_e(rule)}</dd>")
    for name, text in DEFINITIONS.items():
        parts.append(f"<dt>{_e(name)}</dt><dd>{_e(text)}</dd>")
    parts.append("</dl></body></html>")
    return "".join(parts)


def _examples(store: Store, run_id: str, count: int) -> list[Result]:
    """A few stored trajectories: right ones and wrong ones where there are both."""
    benchmark = run_info(store, run_id).benchmark
    stored = [r for r in load_results(store.db, run_id) if r.trajectory_id]
    right = [r for r in stored if correct(r, benchmark)]
    wrong = [r for r in stored if r not in right]
    picked = right[: (count + 1) // 2] + wrong[: count // 2]
    return picked + [r for r in stored if r not in picked][: count - len(picked)]


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _e(text: object) -> str:
    return html.escape("" if text is None else str(text), quote=True)
