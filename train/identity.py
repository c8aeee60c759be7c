"""Run identity: what a run was trained on, written into its output folder, so that a resume with other inputs and
an `--out` that belongs to another run are refused instead of silently continuing.

`fingerprint(config, data_key)` is the identity (the data's content key and every field that changes the loss
curve); `resume_differences(saved, current)` says what differs, one phrase per field. Both are plain JSON, so a
run record in the database can hold the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.files import hold_lock

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"  # held by the process that trains in the folder (its main process)
# Fields that do not change what is learned: where things are, how often to save, what else to write.
NOT_IDENTITY = frozenset({"base", "out", "data", "images", "db", "preset", "tiny", "skip_missing_images", "save_every",
                          "merge", "tensorboard", "data_workers", "cache_dir", "attention", "gradient_checkpointing",
                          "exclude_benchmark"})  # what it leaves out shows in the data's key
OURS = frozenset({RUN_FILE, LOCK_FILE, "metrics.jsonl", "latest", "latest.tmp", "train_config.json", "adapter", "merged",
                  "tiny-base", "tensorboard"})


def fingerprint(config, data_key: str, base_key: str = "") -> dict[str, Any]:
    """The run's identity: the data's content key, the base model's key and the fields that shape training."""
    fields = {name: value for name, value in config.to_dict().items() if name not in NOT_IDENTITY}
    text = json.dumps({"data": data_key, "base": base_key, "fields": fields}, sort_keys=True)
    return {"data": data_key, "base": base_key, "fields": fields,
            "key": hashlib.sha256(text.encode()).hexdigest()[:16]}


def resume_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between a saved fingerprint and the current one ("learning_rate 0.01 -> 0.02", ...)."""
    differences = []
    if saved.get("data") != current.get("data"):
        differences.append(f"data {str(saved.get('data'))[:12]} -> {str(current.get('data'))[:12]} (other records "
                           "or images)")
    if saved.get("base") != current.get("base"):
        differences.append("base model")
    old, new = saved.get("fields", {}), current.get("fields", {})
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            differences.append(f"{name} {old.get(name)!r} -> {new.get(name)!r}")
    return differences


def read_run(out: Path) -> dict[str, Any] | None:
    path = out / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def foreign_entries(out: Path) -> list[str]:
    """Entries of `out` that no run of ours wrote, when `out` has no run file (so it belongs to something else)."""
    if not out.is_dir() or read_run(out) is not None:
        return []
    return sorted(p.name for p in out.iterdir() if p.name not in OURS)


def check_out(out: Path) -> None:
    """Refuse an output folder that holds another run's files (UserError, one line)."""
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UserError(f"--out {out} holds files of another run or program ({shown}); choose an empty or new folder")


def claim(out: Path, current: dict[str, Any]) -> str:
    """This run's id: the saved one when `out` holds the same run (a resume), a new one for a fresh folder.

    UserError naming what differs when `out` holds a run with other inputs."""
    saved = read_run(out)
    if saved is not None:
        differences = resume_differences(saved.get("fingerprint", {}), current)
        if differences:
            raise UserError(f"--out {out} holds a run with other inputs ({'; '.join(differences)}); resume with "
                             "the same inputs or choose a new --out")
        return saved["run"]
    run = uuid.uuid4().hex[:12]
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / (RUN_FILE + ".tmp")
    temporary.write_text(json.dumps({"run": run, "fingerprint": current}, indent=2))
    temporary.replace(out / RUN_FILE)
    return run


def hold(out: Path, main_process: bool) -> AbstractContextManager:
    """The folder's lock, held by the main process while it trains there: a second run started on the same
    folder (the same command typed twice, or a resume beside a run still stopping) is refused in one line. The
    other processes of a multi-process run hold nothing; if the main process is refused, the launcher ends them."""
    return hold_lock(out / LOCK_FILE, f"the training run in {out}") if main_process else nullcontext()
