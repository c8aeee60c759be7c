"""Prices and the tokens/cost a run spent, per stage, per task and per approved trajectory.

Prices are US dollars per million tokens (input, output) by model name; a JSON file
`{"model": [input, output], ...}` given with `--prices` replaces or extends the defaults.
A dated name (`gpt-4o-2024-08-06`) costs what its family costs; requests sent through the
Batch API cost `BATCH_SHARE` of the live price. A model not in the table is "unpriced": its
cost is unknown (None), never shown as $0.
"""

from __future__ import annotations

import json
import re
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
BATCH_SHARE = 0.5  # OpenAI's Batch API bills half the live price
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


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

    def price(self, model: str) -> tuple[float, float] | None:
        """(input, output) $ per million tokens of `model`, or of its family when the name carries a date."""
        return self.table.get(model) or self.table.get(_DATED.sub("", model))

    def cost(self, model: str, input_tokens: int, output_tokens: int, *, batch: bool = False) -> float | None:
        """What the request cost in $, None when the model is unpriced."""
        price = self.price(model)
        if price is None:
            return None
        share = BATCH_SHARE if batch else 1.0
        return share * (input_tokens * price[0] + output_tokens * price[1]) / 1e6


def dollars(cost: float | None) -> str:
    """A cost as people read it; an unknown one says so instead of passing for free."""
    return "unpriced" if cost is None else f"${cost:.4f}"


@dataclass
class Spend:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = 0.0  # None: some request's model has no price


_SPEND = "COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost), MIN(priced)"


def by_stage(store: Store, run_id: str) -> dict[str, Spend]:
    rows = store.db.read(
        f"""SELECT stage, {_SPEND} FROM synthesis_requests
           WHERE run_id = ? AND response IS NOT NULL GROUP BY stage""", (run_id,))
    return {stage: _spend(*rest) for stage, *rest in rows}


def _spend(requests: int, input_tokens: int | None, output_tokens: int | None, cost: float | None,
           priced: int | None) -> Spend:
    return Spend(requests, input_tokens or 0, output_tokens or 0, (cost or 0.0) if priced != 0 else None)


def summary(store: Store, run_id: str) -> dict:
    """Totals, per stage, per task (mean) and per approved trajectory (everything spent ÷ approved)."""
    stages = by_stage(store, run_id)
    costs = [s.cost for s in stages.values()]
    total = Spend(*(sum(getattr(s, f) for s in stages.values()) for f in ("requests", "input_tokens", "output_tokens")),
                  None if None in costs else sum(costs))
    tasks = store.db.value("SELECT COUNT(*) FROM synthesis_tasks WHERE run_id = ?", (run_id,))
    solved = [tid for (tid,) in store.db.read(
        "SELECT trajectory_id FROM synthesis_tasks WHERE run_id = ? AND trajectory_id IS NOT NULL", (run_id,))]
    approved = sum(status == "approved" for status in store.statuses(solved).values())
    return {
        "total": vars(total),
        "stages": {name: vars(spend) for name, spend in stages.items()},
        "tasks": tasks,
        "per_task_cost": None if total.cost is None else (total.cost / tasks if tasks else 0.0),
        "per_task_tokens": (total.input_tokens + total.output_tokens) / tasks if tasks else 0.0,
        "approved": approved,
        "per_approved_cost": total.cost / approved if approved and total.cost is not None else None,
    }
