"""GTA and GAIA as lists of `BenchTask`s, with their files checked before anything runs.

GTA: the release's `dataset.json` (229 queries, keyed by id) and the folder its `files[].path` are relative to.
GAIA: a split's `metadata.jsonl` with the attached files beside it, or the Hugging Face dataset when online.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.errors import EvalError

GTA_CATEGORIES = {
    "perception": ("OCR", "ImageDescription", "RegionAttributeDescription", "TextToBbox"),
    "operation": ("DrawBox", "AddText", "GoogleSearch"),
    "logic": ("Calculator", "Solver", "Plot", "MathOCR", "CountGivenObject"),
    "creativity": ("TextToImage", "ImageStylization"),
}
GAIA_SPLITS = ("validation", "test")


@dataclass
class BenchTask:
    """One question: what the agent sees (text, files) and what scoring needs (truth, level, reference tools)."""

    id: str
    benchmark: str
    question: str
    files: list[Path] = field(default_factory=list)
    truth: Any = None
    level: str = ""
    gt_tools: list[str] = field(default_factory=list)
    gt_dialogs: list[dict] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """GTA: objective / subjective / image generation (no text answer). GAIA: the level."""
        if self.benchmark == "gaia":
            return f"level {self.level}"
        if isinstance(self.truth, dict):
            return "objective"
        if isinstance(self.truth, list):
            return "subjective"
        return "image generation"


@dataclass
class Benchmark:
    name: str
    root: Path
    tasks: list[BenchTask]
    missing: list[str] = field(default_factory=list)

    def missing_summary(self) -> str:
        names = [_relative(m, self.root) for m in self.missing]
        shown = ", ".join(names[:5]) + (f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else "")
        return f"{len(self.missing)} file(s) missing under {self.root}: {shown}"

    def select(self, ids: list[str] | None = None, limit: int | None = None, level: str | None = None) -> Benchmark:
        """A subset: given ids (in the benchmark's order), one GAIA level, the first `limit`."""
        tasks = self.tasks
        if ids:
            unknown = sorted(set(ids) - {t.id for t in tasks})
            if unknown:
                raise EvalError(f"unknown task id(s): {', '.join(unknown[:5])}")
            tasks = [t for t in tasks if t.id in set(ids)]
        if level:
            tasks = [t for t in tasks if t.level == str(level)]
        if limit:
            tasks = tasks[:limit]
        names = {str(p) for t in tasks for p in t.files}
        missing = [m for m in self.missing if m in names]
        return Benchmark(self.name, self.root, tasks, missing)


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


# ------------------------------------------------------------------ GTA


def load_gta(path: str | Path) -> Benchmark:
    """The GTA release: `path` is its folder (holding dataset.json and image/) or the JSON file itself."""
    path = Path(path).expanduser()
    data_file = path / "dataset.json" if path.is_dir() else path
    if not data_file.is_file():
        raise EvalError(f"{data_file}: not found (expected the GTA release's dataset.json)")
    try:
        data = json.loads(data_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalError(f"{data_file}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise EvalError(f"{data_file}: expected an object keyed by query id, as in GTA's dataset.json")
    root = data_file.parent
    tasks, missing = [], []
    for key, item in data.items():
        task = _gta_task(str(key), item, root, data_file)
        tasks.append(task)
        missing += [str(p) for p in task.files if not p.is_file()]
    return Benchmark("gta", root, tasks, missing)


def _gta_task(key: str, item: Any, root: Path, data_file: Path) -> BenchTask:
    try:
        dialogs = item["dialogs"]
        question = next(d["content"] for d in dialogs if d.get("role") == "user")
        files = [root / f["path"] for f in item.get("files", [])]
        gt_tools = [c["function"]["name"] for d in dialogs for c in d.get("tool_calls", [])[:1]]
        truth = item.get("gt_answer")
    except (KeyError, TypeError, StopIteration):
        raise EvalError(f"{data_file}: query {key} lacks dialogs with a user turn, files or gt_answer") from None
    return BenchTask(id=key, benchmark="gta", question=question, files=files, truth=truth, gt_tools=gt_tools,
                     gt_dialogs=dialogs)


# ------------------------------------------------------------------ GAIA


def load_gaia(path: str | Path, split: str = "validation") -> Benchmark:
    """GAIA from disk: `path` holds metadata.jsonl, or is the dataset's root with 2023/<split>/metadata.jsonl,
    or is a metadata file itself (its attachments beside it)."""
    path = Path(path).expanduser()
    if split not in GAIA_SPLITS:
        raise EvalError(f"unknown GAIA split {split!r}; choose validation or test")
    if path.is_file() and path.suffix == ".jsonl":
        metadata = path
    else:
        candidates = [path, path / split, path / "2023" / split] if path.is_dir() else [path.parent]
        folder = next((c for c in candidates if (c / "metadata.jsonl").is_file()), None)
        if folder is None:
            raise EvalError(f"{path}: no metadata.jsonl (looked in {', '.join(str(c) for c in candidates)})")
        metadata = folder / "metadata.jsonl"
    rows = []
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise EvalError(f"{metadata}:{number}: not valid JSON") from None
    return gaia_from_rows(rows, metadata.parent)


def load_gaia_hub(split: str = "validation") -> Benchmark:
    """GAIA from the Hugging Face Hub (gated: needs access and a token); a clear error when offline."""
    try:
        from datasets import load_dataset

        dataset = load_dataset("gaia-benchmark/GAIA", "2023_all", split=split)
    except Exception as exc:  # noqa: BLE001 — offline, no access, no datasets: all say the same to a person
        raise EvalError(
            f"could not load gaia-benchmark/GAIA from the Hub ({type(exc).__name__}: {str(exc)[:200]}); "
            "download it and pass --data DIR instead"
        ) from None
    rows = [dict(row) for row in dataset]
    folder = Path(rows[0]["file_path"]).parent if rows and rows[0].get("file_path") else Path(".")
    return gaia_from_rows(rows, folder)


def gaia_from_rows(rows: list[dict], folder: Path) -> Benchmark:
    tasks, missing = [], []
    for number, row in enumerate(rows, 1):
        try:
            file_name = row.get("file_name") or ""
            files = [Path(row["file_path"]) if row.get("file_path") else folder / file_name] if file_name else []
            truth = row.get("Final answer")
            task = BenchTask(id=str(row["task_id"]), benchmark="gaia", question=row["Question"], files=files,
                             truth=None if truth in (None, "?") else str(truth), level=str(row["Level"]))
        except (KeyError, TypeError):
            raise EvalError(f"GAIA row {number} lacks task_id, Question or Level") from None
        tasks.append(task)
        missing += [str(p) for p in files if not p.is_file()]
    return Benchmark("gaia", folder, tasks, missing)


def load(benchmark: str, path: str | Path | None, split: str = "validation") -> Benchmark:
    if benchmark == "gta":
        if path is None:
            raise EvalError("GTA needs --data: the folder of the release's dataset.json")
        return load_gta(path)
    if benchmark == "gaia":
        return load_gaia(path, split) if path else load_gaia_hub(split)
    raise EvalError(f"unknown benchmark {benchmark!r}")
