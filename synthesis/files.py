"""Stages 2 and 3: what each task's files contain, then the real files.

Images come from the corpus by caption similarity; documents are written by model-made code
that runs in the agent's sandbox (no tools, no network, no keys), never in this process.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from synthesis.context import Context, StageError, parse_json, prompt
from synthesis.tasks import TaskRow

IMAGE_TYPES = {"image"}
MAX_DOCUMENT_MB = 20


def describe(ctx: Context, task: TaskRow) -> None:
    """Stage 2: one content description per file type the query asked for."""
    types = [f["type"] for f in task.files]
    text = prompt("file_content.txt", query=task.query, types=", ".join(types))
    reply = ctx.llm.chat(stage="describe", task_id=task.id, attempt=task.attempt, purpose="describe",
                         max_tokens=1500, messages=[{"role": "user", "content": text}])
    described = [d for d in parse_json(reply.text, list) if isinstance(d, dict)]
    files, names = [], set()
    for position, kind in enumerate(types):
        item = described[position] if position < len(described) else {}
        content = str(item.get("content") or "").strip()
        if not content:
            raise StageError(f"no description for file {position + 1} ({kind})")
        name = _file_name(str(item.get("name") or ""), kind, position, names)
        files.append({"type": kind, "name": name, "content": content})
    task.files = files


def make_files(ctx: Context, task: TaskRow) -> None:
    """Stage 3: every described file exists under the task's folder; `task.paths` maps name -> file."""
    folder = ctx.workdir / "files" / task.id
    folder.mkdir(parents=True, exist_ok=True)
    ctx.retriever.release(task.id)
    taken: set[str] = set()
    paths: dict[str, str] = {}
    for position, spec in enumerate(task.files):
        if spec["type"] in IMAGE_TYPES:
            target = _retrieve(ctx, task, spec, folder, taken)
        else:
            target = _write_document(ctx, task, spec, position, folder)
        spec["name"] = target.name
        paths[target.name] = str(target)
    task.paths = paths


def _retrieve(ctx: Context, task: TaskRow, spec: dict, folder: Path, taken: set[str]) -> Path:
    found = ctx.retriever.pick(spec["content"], task.id, taken)
    if found is None:
        raise StageError(f"no corpus image matches {spec['content'][:80]!r} above similarity "
                         f"{ctx.config.threshold} (or every match is used {ctx.config.reuse_limit} times)")
    item, score = found
    taken.add(str(item.image))
    spec["source"], spec["similarity"], spec["caption"] = str(item.image), round(score, 4), item.caption
    target = folder / (Path(spec["name"]).stem + item.image.suffix.lower())
    if not target.exists():
        try:
            os.link(item.image, target)
        except OSError:
            shutil.copyfile(item.image, target)
    return target


def _write_document(ctx: Context, task: TaskRow, spec: dict, position: int, folder: Path) -> Path:
    from agent.parsing import parse_action
    from agent.sandbox import Limits, Sandbox

    text = prompt("document_code.txt", name=spec["name"], content=spec["content"])
    reply = ctx.llm.chat(stage="files", task_id=task.id, attempt=task.attempt, purpose=f"document-{position}",
                         one_shot=False, max_tokens=2500, messages=[{"role": "user", "content": text}])
    code = parse_action("Code:\n" + reply.text)[1] if "```" in reply.text else None
    if not code:
        raise StageError(f"the model wrote no code block for {spec['name']}")
    scratch = folder / f".make-{position}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    limits = Limits(step_seconds=ctx.config.step_timeout, memory_mb=1024, file_mb=MAX_DOCUMENT_MB)
    with Sandbox(scratch, tools={}, limits=limits) as sandbox:
        result = sandbox.run(code)
    made = scratch / spec["name"]
    if result.error is not None:
        raise StageError(f"the code for {spec['name']} failed: {result.error.strip().splitlines()[-1][:200]}")
    if made.is_symlink() or not made.is_file() or made.stat().st_size == 0:
        raise StageError(f"the code did not write {spec['name']}")
    target = folder / spec["name"]
    made.replace(target)
    shutil.rmtree(scratch, ignore_errors=True)
    return target


def _file_name(name: str, kind: str, position: int, taken: set[str]) -> str:
    """A safe, unique file name with the extension of its type (images get theirs from the corpus)."""
    stem = re.sub(r"[^\w-]", "_", Path(name).stem).strip("_")[:40] or f"file_{position + 1}"
    suffix = ".png" if kind in IMAGE_TYPES else f".{kind}"
    candidate, n = f"{stem}{suffix}", 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}{suffix}"
    taken.add(candidate)
    return candidate

