"""Preference pairs out of the store, for trainers other than ours: TRL's and LLaMA-Factory's formats.

- `trl-preference`: `preferences.jsonl`, one pair a line in TRL's conversational preference shape: `prompt` (the
  messages up to the step), `chosen` and `rejected` (one assistant message each), `images` (the task's pictures,
  copied into `images/`, each also in place in the prompt). The messages are the one renderer's
  (`agent.render.render_messages`), as for the `messages` export and our own training.
- `llamafactory-ranking`: `preferences.json` in LLaMA-Factory's sharegpt ranking shape (`conversations`,
  `chosen`, `rejected`, `system`, `images`, a `<image>` where each picture stands) and the `dataset_info.json`
  entry that reads it (`"ranking": true`), as SPORT exported theirs. LLaMA-Factory wants turns that alternate, so
  the loop's extra user turn (a request for an answer after the last observation) joins the observation before it.

A pair whose prompt no longer renders (a picture gone from the store) is left out, counted and named in the
summary; nothing in the store changes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.files import atomic_write
from review.errors import StoreError

if TYPE_CHECKING:
    from review.pairs import Pair
    from review.store import Store

PREFERENCE_FORMATS = ("trl-preference", "llamafactory-ranking")
DATASET_NAME = "mat_preferences"


@dataclass
class PairExportReport:
    written: int = 0
    unrenderable: list[str] = field(default_factory=list)  # why each left-out pair no longer renders

    def summary(self) -> str:
        line = f"{self.written} preference pairs written"
        if self.unrenderable:
            line += f"; {len(self.unrenderable)} left out because their prompt no longer renders ({self.unrenderable[0]}" \
                    f"{' and more' if len(self.unrenderable) > 1 else ''})"
        return line


def export_pairs(store: Store, fmt: str, out: Path) -> PairExportReport:
    """Write every pair the review events give (`review.pairs.iter_pairs`) in `fmt` under the folder `out`."""
    from review.pairs import iter_pairs

    if fmt not in PREFERENCE_FORMATS:
        raise StoreError(f"unknown preference format {fmt!r}; choose one of {', '.join(PREFERENCE_FORMATS)}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    report = PairExportReport()
    examples = (_example(pair, out, fmt, report) for pair in iter_pairs(store))
    if fmt == "trl-preference":
        with atomic_write(out / "preferences.jsonl") as handle:
            for example in filter(None, examples):
                handle.write(json.dumps(example, ensure_ascii=False) + "\n")
                report.written += 1
        return report
    with atomic_write(out / "preferences.json") as handle:
        handle.write("[")
        for example in filter(None, examples):
            handle.write((",\n" if report.written else "\n") + json.dumps(example, ensure_ascii=False))
            report.written += 1
        handle.write("\n]\n")
    with atomic_write(out / "dataset_info.json") as handle:
        json.dump(dataset_info(), handle, indent=2)
    return report


def _example(pair: Pair, out: Path, fmt: str, report: PairExportReport) -> dict[str, Any] | None:
    problem = pair.unrenderable()
    if problem is not None:
        report.unrenderable.append(f"{pair.describe()}: {problem}")
        return None
    images = [copy_image(Path(path), out) for path in pair.image_paths()]
    prompt, chosen, rejected = pair.messages(images)
    if fmt == "trl-preference":
        return {"id": pair.id, "source": pair.source, "trajectory_id": pair.trajectory_id, "step": pair.step,
                "prompt": prompt, "chosen": [chosen], "rejected": [rejected], "images": images}
    return llamafactory_example(prompt, chosen, rejected, images)


def llamafactory_example(prompt: list[dict], chosen: dict, rejected: dict, images: list[str]) -> dict[str, Any]:
    """Rendered messages as one sharegpt ranking record: a `<image>` for each picture, same-role turns joined."""
    from agent.render import message_text

    turns: list[dict[str, str]] = []
    for message in prompt[1:]:
        role = "human" if message["role"] == "user" else "gpt"
        text = message_text(message, image="<image>")
        if turns and turns[-1]["from"] == role:
            turns[-1]["value"] += "\n" + text
        else:
            turns.append({"from": role, "value": text})
    return {"conversations": turns, "chosen": {"from": "gpt", "value": message_text(chosen)},
            "rejected": {"from": "gpt", "value": message_text(rejected)}, "system": message_text(prompt[0]),
            "images": images}


def dataset_info() -> dict[str, Any]:
    """LLaMA-Factory's entry for `preferences.json` (put it in its data folder's dataset_info.json)."""
    return {DATASET_NAME: {"file_name": "preferences.json", "formatting": "sharegpt", "ranking": True,
                           "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected",
                                       "system": "system", "images": "images"}}}


def copy_image(path: Path, out: Path) -> str:
    """The stored picture copied beside the export (once; stored files are named by content), by its relative
    path."""
    target = out / "images" / path.name
    if not target.exists():
        with atomic_write(target, "wb") as copy, open(path, "rb") as source:
            shutil.copyfileobj(source, copy)
    return f"images/{path.name}"
