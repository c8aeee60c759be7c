"""Figures for the Review tab's stats view, from the plain dict `Store.stats()` returns.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot), so concurrent
requests never share pyplot's global state and nothing is left open. Where a figure
would have no data (a fresh store), there is no figure: the tab shows its placeholder text.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLOURS = {"approved": "#2da44e", "skipped": "#8c959f", "pending": "#d4a72c"}
REJECT_COLOURS = ["#cf222e", "#fa4549", "#a40e26", "#ff8182", "#82071e", "#ffaba8", "#bc4c00", "#fb8f44"]
NOTHING_IMPORTED = "Nothing imported yet: import records (Import / export) to see them here."
NOTHING_DECIDED = "No decisions yet: approve, reject or skip a trajectory to see them here."
PLACEHOLDERS = (NOTHING_IMPORTED, NOTHING_IMPORTED, NOTHING_DECIDED, NOTHING_DECIDED, NOTHING_DECIDED)
NO_PAIRS = ("No preference pairs yet: edit a step's thought or code, approve and reject two runs of one task, or "
            "pick among sampled steps (Queue: Sample alternatives at a step).")
PAIR_PARTS = (("pairs", "pairs", "#2da44e"), ("near_duplicates", "nearly the same (dropped)", "#8c959f"),
              ("repeats", "repeats (dropped)", "#d0d7de"))


def figures(stats: dict[str, Any]) -> list[Figure | None]:
    """Every stats figure in the tab's order (PLACEHOLDERS holds the text for each that is None)."""
    return [tool_usage(stats), steps_histogram(stats), decisions_by(stats, "source"), decisions_by(stats, "reviewer"),
            progress_over_time(stats)]


def tool_usage(stats: dict[str, Any]) -> Figure | None:
    """How many trajectories call each tool."""
    tools = stats["tools"]
    if not tools:
        return None
    figure, axes = _figure(max(2.4, 0.35 * len(tools) + 1))
    names = list(tools)[::-1]
    axes.barh(names, [tools[name] for name in names], color="#0969da")
    axes.set_xlabel("trajectories using the tool")
    axes.set_title("Tool usage")
    return _finish(figure, axes, counts="x")


def steps_histogram(stats: dict[str, Any]) -> Figure | None:
    """How many trajectories have each number of steps."""
    steps = {int(k): v for k, v in stats["steps"].items()}
    if not steps:
        return None
    figure, axes = _figure(2.8)
    axes.bar([str(k) for k in sorted(steps)], [steps[k] for k in sorted(steps)], color="#8250df")
    axes.set_xlabel("steps")
    axes.set_ylabel("trajectories")
    axes.set_title("Steps per trajectory")
    return _finish(figure, axes, counts="y")


def decisions_by(stats: dict[str, Any], key: str) -> Figure | None:
    """Stacked bars per source or reviewer: approvals, skips and each rejection reason."""
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for item in stats[f"by_{key}"]:
        table[item[key]][_outcome(item["decision"], item["reason"])] += item["count"]
    groups = sorted(table)
    if not groups:
        return None
    outcomes = sorted({name for counts in table.values() for name in counts}, key=_outcome_order)
    figure, axes = _figure(max(2.4, 0.45 * len(groups) + 1.4), width=8.5)
    left = [0] * len(groups)
    rejected = 0
    for outcome in outcomes:
        values = [table[group].get(outcome, 0) for group in groups]
        colour = COLOURS.get(outcome)
        if colour is None:
            colour = REJECT_COLOURS[rejected % len(REJECT_COLOURS)]
            rejected += 1
        axes.barh(groups, values, left=left, label=outcome, color=colour)
        left = [a + b for a, b in zip(left, values, strict=True)]
    axes.set_xlabel("trajectories (a rejection with several reasons counts once per reason)")
    axes.set_title(f"Decisions and rejection reasons by {key}")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _finish(figure, axes, counts="x")


def progress_over_time(stats: dict[str, Any]) -> Figure | None:
    """Cumulative decisions per day, one line per decision."""
    days = sorted({item["day"] for item in stats["per_day"]})
    if not days:
        return None
    figure, axes = _figure(2.8)
    for decision in ("approved", "rejected", "skipped"):
        per_day = {item["day"]: item["count"] for item in stats["per_day"] if item["decision"] == decision}
        total, series = 0, []
        for day in days:
            total += per_day.get(day, 0)
            series.append(total)
        if total:
            axes.plot(days, series, marker="o", label=decision, color=COLOURS.get(decision, "#cf222e"))
    axes.set_ylabel("decisions so far")
    axes.set_ylim(bottom=0)
    axes.set_title("Review progress over time")
    axes.legend(fontsize=8)
    return _finish(figure, axes, counts="y")


def pairs_by_source(counts: dict[str, dict[str, int]]) -> Figure | None:
    """Stacked bars per source (`review.pairs.pair_counts`): the pairs kept, and those dropped as nearly the same
    or as repeats; None when no source gave any."""
    sources = list(counts)
    if not any(sum(entry.values()) for entry in counts.values()):
        return None
    figure, axes = _figure(max(2.4, 0.45 * len(sources) + 1.4), width=8.5)
    left = [0] * len(sources)
    for key, label, colour in PAIR_PARTS:
        values = [counts[source][key] for source in sources]
        axes.barh(sources, values, left=left, label=label, color=colour)
        left = [a + b for a, b in zip(left, values, strict=True)]
    axes.set_xlabel("preference pairs the review events give")
    axes.set_title("Preference pairs by source")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return _finish(figure, axes, counts="x")


def _outcome(decision: str, reason: str) -> str:
    return f"rejected: {reason or 'note only'}" if decision == "rejected" else decision


def _outcome_order(outcome: str) -> tuple[int, str]:
    return (0 if outcome == "approved" else 2 if outcome.startswith("rejected") else 1, outcome)


def _figure(height: float, width: float = 7):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    return figure, figure.add_subplot()


def _finish(figure: Figure, axes, counts: str) -> Figure:
    """Lay out the figure; the `counts` axis ("x" or "y") counts trajectories, so its ticks are whole numbers."""
    from matplotlib.ticker import MaxNLocator

    (axes.xaxis if counts == "x" else axes.yaxis).set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure
