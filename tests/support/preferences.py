"""A review store whose events give preference pairs, made the way reviewers make them (Store.edit, decide, undo).

From three fixture records (system prompts shortened, tests/support/train_records.py) and one rejected retry:

- Tp3nWc8e (a chart picture): step 1 redone another way -> an `edit` pair; step 0's thought typed again with
  only spaces added at its end -> nearly the same, dropped.
- Qz1hKd6c (text only): step 1's needless search replaced by the computation -> an `edit` pair; step 2's
  observation edited (not a model turn) and step 4's code edited then undone -> no pair.
- -UHI-qvJ approved, and -UHI-qvJ-guess (same task, same step 0, then a guess at step 1) rejected -> a
  `rejected-vs-approved` pair at step 1.
"""

from __future__ import annotations

import copy
from pathlib import Path

from review.store import Store
from tests.support.train_records import short_records

EXPECTED = {"edit": 2, "rejected-vs-approved": 1}
CHART_CODE = ('chart = image_generator(prompt="A line chart of monthly visitors: January 1200, February 1350, March '
              '1600, April 1580, May 1900, June 2250")\nprint(chart)')
PACE_CODE = "per_km = 55 * 60 / 10\nprint(per_km)"
RETYPED = "I will ask the visualizer for the value of each bar.  "  # step 0's thought, spaces added at its end
GUESS = ('Thought: The search failed, so I will answer from what museums usually do.\n\nCode:\n```py\n'
         'final_answer("9:00")\n```')


def guess_variant(record: dict) -> dict:
    """The record's first step and its error, then a guess instead of the retry: a run a reviewer rejects."""
    variant = copy.deepcopy(record)
    variant["id"] = record["id"] + "-guess"
    variant["conversations"] = variant["conversations"][:4] + [{"from": "assistant", "value": GUESS}]
    variant["answer"] = "9:00"
    return variant


def preference_records(mmtraj_records: list[dict]) -> list[dict]:
    by_id = {record["id"]: record for record in mmtraj_records}
    chosen = short_records([by_id[name] for name in ("Tp3nWc8e", "-UHI-qvJ", "Qz1hKd6c")])
    return chosen + [guess_variant(chosen[1])]


def review_like_people(store: Store) -> None:
    """The edits, an undo and the decisions the module docstring lists."""
    store.edit("Tp3nWc8e", "ana", step=1, field="thought", value="The image generator can draw the chart from the numbers.")
    store.edit("Tp3nWc8e", "ana", step=1, field="code", value=CHART_CODE)
    store.edit("Tp3nWc8e", "ana", step=0, field="thought", value=RETYPED)
    store.edit("Qz1hKd6c", "ben", step=1, field="thought", value="The pace is the time over the distance.")
    store.edit("Qz1hKd6c", "ben", step=1, field="code", value=PACE_CODE)
    store.edit("Qz1hKd6c", "ben", step=2, field="observation", value="Pace per km: 5:30 (checked)\n")
    store.edit("Qz1hKd6c", "ben", step=4, field="code", value="print('no warm-up counted')")
    store.undo("Qz1hKd6c", "ben")
    store.decide("-UHI-qvJ", "ana", "approved")
    store.decide("-UHI-qvJ-guess", "ana", "rejected", ["wrong_answer"])


def preference_store(db: Path, mmtraj_records: list[dict], images: Path) -> Path:
    """A store at `db` holding the records (with their pictures) and the review events above."""
    with Store(db) as store:
        store.import_records(preference_records(mmtraj_records), source="fixture", images=images)
        review_like_people(store)
    return db
