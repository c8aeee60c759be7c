"""Prices and the tokens/cost a run spent, per stage, per task and per approved trajectory.

Prices are US dollars per million tokens (input, output) by model name; a JSON file
`{"model": [input, output], ...}` given with `--prices` replaces or extends the defaults.
A model not in the table costs 0 and is reported as unpriced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import UserError

if TYPE_CHECKING:
    from review.store import Store

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}


@dataclass
class Prices:
    table: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))

    @classmethod
    def load(cls, path: str | Path | None) -> Prices:
        prices = cls()
        if path:
            try:
                data = json.loads(Path(path).read_text())
                prices.table.update({str(k): (float(v[0]), float(v[1])) for k, v in data.items()})
            except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
                raise UserError(f"{path}: not a price table {{\"model\": [input, output]}} ({exc})") from None
        return prices

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        price = self.table.get(model)
        if price is None:
            return 0.0
        return (input_tokens * price[0] + output_tokens * price[1]) / 1e6


@dataclass
class Spend:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0


def by_stage(store: Store, run_id: str) -> dict[str, Spend]:
    rows = store.db.read(
        """SELECT stage, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost) FROM synthesis_requests
           WHERE run_id = ? AND response IS NOT NULL GROUP BY stage""", (run_id,))
    return {stage: Spend(n, i or 0, o or 0, c or 0.0) for stage, n, i, o, c in rows}


def by_task(store: Store, run_id: str) -> dict[str, Spend]:
    rows = store.db.read(
        """SELECT task_id, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost) FROM synthesis_requests
           WHERE run_id = ? AND response IS NOT NULL AND task_id IS NOT NULL GROUP BY task_id""", (run_id,))
    return {task: Spend(n, i or 0, o or 0, c or 0.0) for task, n, i, o, c in rows}


def summary(store: Store, run_id: str) -> dict:
    """Totals, per stage, per task (mean) and per approved trajectory (everything spent ÷ approved)."""
    stages = by_stage(store, run_id)
    total = Spend(*(sum(getattr(s, f) for s in stages.values()) for f in ("requests", "input_tokens",
                                                                           "output_tokens", "cost")))
    tasks = store.db.value("SELECT COUNT(*) FROM synthesis_tasks WHERE run_id = ?", (run_id,))
    solved = [tid for (tid,) in store.db.read(
        "SELECT trajectory_id FROM synthesis_tasks WHERE run_id = ? AND trajectory_id IS NOT NULL", (run_id,))]
    approved = sum(status == "approved" for status in store.statuses(solved).values())
    return {
        "total": vars(total),
        "stages": {name: vars(spend) for name, spend in stages.items()},
        "tasks": tasks,
        "per_task_cost": total.cost / tasks if tasks else 0.0,
        "per_task_tokens": (total.input_tokens + total.output_tokens) / tasks if tasks else 0.0,
        "approved": approved,
        "per_approved_cost": total.cost / approved if approved else None,
    }
