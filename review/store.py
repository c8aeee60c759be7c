"""The trajectory store: one SQLite file (through sqlite-utils), images by content hash beside it.

Review decisions and edits are append-only events. A trajectory's `status` and
`decision_event` columns are a cache of its events, rewritten in the same transaction
as every event, so list filters stay fast and can never disagree with the history.
Every write is one `core.db` transaction, which takes the write lock up front, so two reviewers
in two processes never lose each other's events; reads never wait for it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.steps import Step, Trajectory, tools_called
from agent.profiles import TOOL_NAMES
from core.clock import now
from core.db import Database, Transaction
from review import formats
from review.errors import StoreError

__all__ = [
    "STATUSES", "REJECT_REASONS", "EDIT_FIELDS", "REPLAYS", "CLAIM_MINUTES", "Filters", "Row", "Page", "ImageRef",
    "Detail", "Event", "BulkReport", "ImportReport", "Store", "StoreError",
]

STATUSES = ("pending", "approved", "rejected", "skipped")
# Curation trajectories are reviewed, exported and trained on; evaluation trajectories are kept for the
# viewer only, out of every list, count and export (a benchmark task must never reach training).
PURPOSES = ("curation", "evaluation")
CURATION = "t.purpose = 'curation'"
# MAT's trajectory verifier (paper §3.4) checks these; reviewers reject with the same criteria.
REJECT_REASONS: dict[str, str] = {
    "irrelevant": "Trajectory is not relevant to the query",
    "tool_mismatch": "Tool usage does not match the query",
    "bad_arguments": "Wrong or unreasonable tool arguments",
    "unresolved_error": "Code errors left unresolved",
    "wrong_answer": "Final answer wrong or missing",
    "hallucination": "Hallucinated observation or content",
    "unsafe": "Unsafe or harmful content",
    "other": "Other (see note)",
}
EDIT_FIELDS = ("thought", "code", "observation", "answer")
REPLAYS = ("reproduced", "differs", "not replayed")  # what the replay verifier found (synthesis reports it)
CLAIM_MINUTES = 15  # a claim lapses this long after its holder's last claim or edit on it
BULK_BATCH = 200  # decisions per transaction in a bulk decision, so other writers get turns
EVENT_COLUMNS = "e.id, e.reviewer, e.at, e.kind, e.decision, e.reasons, e.note, e.payload, e.request_id"
IMPORT_BATCH_SECONDS = 0.2  # an import holds the write lock at most this long at a time,
IMPORT_PAUSE_SECONDS = 0.01  # then leaves it free this long for writers of other processes


@dataclass
class Filters:
    status: str | None = None
    tools: Sequence[str] = ()
    min_steps: int | None = None
    max_steps: int | None = None
    has_error: bool | None = None
    verdict: str | None = None
    source: str | None = None
    search: str = ""
    replay: str | None = None


@dataclass
class Row:
    id: str
    task: str
    status: str
    steps: int
    tools: list[str]
    has_error: bool
    verdict: str | None
    source: str
    holder: str | None
    updated: str
    replay: str | None = None


@dataclass
class Page:
    rows: list[Row]
    next_cursor: str | None


@dataclass
class ImageRef:
    name: str
    path: Path | None
    missing: bool


@dataclass
class Event:
    id: int
    trajectory_id: str
    reviewer: str
    at: str
    kind: str
    decision: str | None
    reasons: list[str]
    note: str
    payload: dict | None
    request_id: str | None = None


@dataclass
class Detail:
    """One trajectory for the viewer; `edited_fields` holds "answer" and "<step>.<field>" entries."""

    id: str
    source: str
    status: str
    trajectory: Trajectory
    original: Trajectory
    record: dict
    images: list[ImageRef]
    reference_answer: str | None
    verdict: str | None
    verdict_reason: str | None
    events: list[Event]
    edited_fields: list[str]
    answer: str = ""
    holder: str | None = None


@dataclass
class BulkReport:
    """What a bulk decision did, and what it left alone."""

    decided: int = 0
    held: list[tuple[str, str]] = field(default_factory=list)  # (trajectory, who holds it)
    changed: list[str] = field(default_factory=list)  # decided or gone since they were counted

    def summary(self, decision: str) -> str:
        text = f"{self.decided} {decision}"
        if self.held:
            holders = sorted({holder for _, holder in self.held})
            verb = "holds" if len(holders) == 1 else "hold"
            text += f"; {len(self.held)} left alone because {', '.join(holders)} {verb} them"
        if self.changed:
            text += f"; {len(self.changed)} no longer pending"
        return text


@dataclass
class ImportReport:
    added: int = 0
    skipped: int = 0
    missing_images: int = 0
    images_stored: int = 0
    ids: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # image names that leave their folder or go through a link

    def summary(self) -> str:
        text = (
            f"{self.added} added, {self.skipped} already present (skipped), "
            f"{self.images_stored} images stored, {self.missing_images} images missing"
        )
        if self.refused:
            more = f" and {len(self.refused) - 3} more" if len(self.refused) > 3 else ""
            shown = ", ".join(self.refused[:3]) + more
            text += (f" ({len(self.refused)} of them refused: {shown} leave the image folder or go through a link,"
                     " which import never follows)")
        if self.missing_images:
            text += (" (import the same file again together with its images, the release's files.zip or the image "
                     "files themselves, to fill them in; on the command line: --images FOLDER_OR_ZIP)")
        return text


class Store:
    """The review store; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.db = Database(path)
        self.path = self.db.path
        self.files_dir = self.path.parent / "files"

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ import

    def import_file(self, path: Path, *, source: str | None = None,
                    images: Path | formats.ImageReader | None = None, progress: bool = False) -> ImportReport:
        """Import a release file, folder or Hub id; refused as a whole if any of it is bad.

        `images` is an image folder or zip (a path), or any reader of images by record path.
        """
        loaded = formats.load(path)
        image_source = formats.image_reader(images) if images is not None else loaded.images
        name = source or Path(str(path)).stem
        return self._import(loaded.records, source=name, images=image_source, progress=progress)

    def import_records(self, records: Iterable[dict], *, source: str, images: Path | None = None,
                       progress: bool = False) -> ImportReport:
        image_source = formats.image_reader(images) if images is not None else None
        return self._import(records, source=source, images=image_source, progress=progress)

    def _import(self, records: Iterable[dict], *, source: str, images: formats.ImageReader | None,
                progress: bool) -> ImportReport:
        """Check every record first, then write in short transactions so reviewers' decisions get turns.

        A record already present is skipped, but images it lacked are filled in when they come along.
        """
        parsed = formats.check_records(records)
        report = ImportReport()
        known = {(r, h): seq for seq, r, h in self.db.read("SELECT seq, record_id, content_hash FROM trajectories")}
        taken = {row[0] for row in self.db.read("SELECT id FROM trajectories")}
        bar = _progress(len(parsed), f"importing {source}") if progress else None
        position = 0
        while position < len(parsed):
            with self.db.transaction(bulk=True) as tx:
                started = time.monotonic()
                while position < len(parsed) and time.monotonic() - started < IMPORT_BATCH_SECONDS:
                    self._import_one(tx, parsed[position], known, taken, source, images, report)
                    position += 1
                    if bar is not None:
                        bar.update()
            self.db.let_writers_in()
            time.sleep(IMPORT_PAUSE_SECONDS)
        if bar is not None:
            bar.close()
        return report

    def _import_one(self, tx: Transaction, item: formats.ParsedRecord, known: dict[tuple, int],
                    taken: set[str], source: str, images: formats.ImageReader | None, report: ImportReport) -> None:
        key = (item.record_id, item.content_hash)
        if key not in known:  # another import may have written it since this one began
            found = tx.execute("SELECT seq FROM trajectories WHERE record_id = ? AND content_hash = ?", key).fetchone()
            if found:
                known[key] = found[0]
            if tx.execute("SELECT 1 FROM trajectories WHERE id = ?", (item.record_id,)).fetchone():
                taken.add(item.record_id)
        if key in known:
            report.skipped += 1
            if images is not None:
                self._fill_missing_images(tx, known[key], images, report)
            return
        files = self._store_images(tx, item, images, report)
        trajectory_id = self._insert(tx, item, source=source, files=files, taken=taken,
                                     reference=item.record.get("answer"))
        known[key] = tx.execute("SELECT seq FROM trajectories WHERE id = ?", (trajectory_id,)).fetchone()[0]
        report.ids.append(trajectory_id)
        report.added += 1

    def _fill_missing_images(self, tx: Transaction, seq: int, images: formats.ImageReader,
                             report: ImportReport) -> None:
        """Store images a trajectory imported earlier was missing, now that they have been supplied."""
        for position, name in tx.execute(
                "SELECT position, name FROM attachments WHERE trajectory_seq = ? AND file_hash IS NULL", (seq,)).fetchall():
            data = _read_image(images, name, report)
            if data is None:
                continue
            digest = self._store_file(tx, data, formats.file_suffix(name))
            tx.execute("UPDATE attachments SET file_hash = ? WHERE trajectory_seq = ? AND position = ?",
                       (digest, seq, position))
            report.images_stored += 1

    def add_trajectory(self, trajectory: Trajectory, *, source: str, record_id: str | None = None,
                       answer: str | None = None, image_files: dict[str, Path] | None = None,
                       purpose: str = "curation") -> str:
        """Store an agent run (Chat, synthesis, evaluation); returns its trajectory id.

        `image_files` maps every image name the trajectory uses (the task's attachments, the copies the run
        kept of its steps' images) to its file; a name not there is stored as missing, never looked up
        elsewhere. `purpose="evaluation"` keeps the trajectory for the viewer only, out of curation.
        """
        if purpose not in PURPOSES:
            raise StoreError(f"unknown purpose {purpose!r}; one of {', '.join(PURPOSES)}")
        record = trajectory.to_record(record_id or secrets.token_urlsafe(6), answer=answer)
        produced = {str(step.index): list(step.images) for step in trajectory.steps if step.images}
        if produced:
            record[formats.STEP_IMAGES] = produced
        item = formats.check_record(record, 0)
        with self.db.transaction() as tx:
            existing = tx.execute("SELECT id FROM trajectories WHERE record_id = ? AND content_hash = ?",
                                  (item.record_id, item.content_hash)).fetchone()
            if existing:
                return existing[0]
            hashes = {}
            for name in formats.image_names(record, item.trajectory):
                path = (image_files or {}).get(name)
                hashes[name] = self._store_file(tx, Path(path).read_bytes(), formats.file_suffix(str(path))) \
                    if path is not None and Path(path).is_file() else None
            taken = {row[0] for row in tx.execute("SELECT id FROM trajectories WHERE record_id = ?",
                                                  (item.record_id,))}
            return self._insert(tx, item, source=source, files=hashes, taken=taken, reference=answer,
                                purpose=purpose)

    def suggest_verdict(self, trajectory_id: str, verdict: str | None, reason: str | None) -> None:
        """A verifier's verdict (synthesis): a suggestion shown to the reviewer, not a review event."""
        with self.db.transaction() as tx:
            self._locate(tx, trajectory_id, "seq")
            tx.execute("UPDATE trajectories SET verdict = ?, verdict_reason = ?, updated = ? WHERE id = ?",
                       (verdict, reason, now(), trajectory_id))

    def _store_images(self, tx: Transaction, item: formats.ParsedRecord,
                      images: formats.ImageReader | None, report: ImportReport) -> dict[str, str | None]:
        hashes: dict[str, str | None] = {}
        for name in formats.image_names(item.record, item.trajectory):
            data = _read_image(images, name, report)
            if data is not None:
                report.images_stored += 1
            hashes[name] = None if data is None else self._store_file(tx, data, formats.file_suffix(name))
        return hashes

    def _store_file(self, tx: Transaction, data: bytes, suffix: str) -> str:
        digest = hashlib.sha256(data).hexdigest()
        relative = Path("files") / digest[:2] / f"{digest}{suffix.lower()}"
        target = self.path.parent / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".part")
            partial.write_bytes(data)
            partial.replace(target)
        tx.execute("INSERT OR IGNORE INTO files (hash, path, size) VALUES (?, ?, ?)",
                   (digest, relative.as_posix(), len(data)))
        return digest

    def _insert(self, tx: Transaction, item: formats.ParsedRecord, *, source: str,
                files: dict[str, str | None], taken: set[str], reference: str | None,
                purpose: str = "curation") -> str:
        trajectory, record = item.trajectory, item.record
        trajectory_id = item.record_id
        if trajectory_id in taken:
            trajectory_id = f"{item.record_id}~{item.content_hash[:8]}"
        taken.add(trajectory_id)
        verdict, reason = formats.parse_verification(record.get("traj_verification"))
        tools = trajectory.tools_called(TOOL_NAMES)
        at = now()
        task_id = tx.execute("INSERT INTO tasks (text, reference_answer) VALUES (?, ?)",
                             (trajectory.task.text, reference)).lastrowid
        seq = tx.execute(
            """INSERT INTO trajectories (id, task_id, record_id, content_hash, source, record, steps, tools,
                   has_error, verdict, verdict_reason, imported_at, updated, purpose)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (trajectory_id, task_id, item.record_id, item.content_hash, source,
             json.dumps(record, ensure_ascii=False), len(trajectory.steps), json.dumps(tools),
             any(step.error is not None for step in trajectory.steps), verdict, reason, at, at, purpose),
        ).lastrowid
        tx.executemany("INSERT INTO trajectory_tools (tool, trajectory_seq) VALUES (?, ?)",
                       [(tool, seq) for tool in tools])
        tx.executemany(
            "INSERT INTO steps (trajectory_seq, idx, tools, has_code, has_error, is_final) VALUES (?, ?, ?, ?, ?, ?)",
            [(seq, step.index, json.dumps(tools_called(step.code, TOOL_NAMES)),
              step.code is not None, step.error is not None, step.is_final) for step in trajectory.steps],
        )
        tx.executemany(
            "INSERT INTO attachments (trajectory_seq, position, name, file_hash) VALUES (?, ?, ?, ?)",
            [(seq, position, name, digest) for position, (name, digest) in enumerate(files.items())],
        )
        tx.execute("INSERT INTO search (rowid, task, answer) VALUES (?, ?, ?)",
                   (seq, trajectory.task.text, _answer_text(record.get("answer"), trajectory.final_answer)))
        return trajectory_id

    # ------------------------------------------------------------ browsing

    def query(self, filters: Filters = Filters(), *, cursor: str | None = None, limit: int = 50) -> Page:
        """One page of the list in a stable order; pass `next_cursor` back for the next page."""
        where, params = self._where(filters)
        if cursor is not None:
            where.append("t.seq > ?")
            params.append(_decode_cursor(cursor))
        sql = f"""SELECT t.seq, t.id, k.text, t.status, t.steps, t.tools, t.has_error, t.verdict, t.source,
                         CASE WHEN t.held_until > ? THEN t.holder END, t.updated, t.replay
                  FROM trajectories t JOIN tasks k ON k.id = t.task_id
                  WHERE {' AND '.join(where) or '1'} ORDER BY t.seq LIMIT ?"""
        fetched = self.db.read(sql, [now(), *params, limit + 1])
        rows = [Row(id=r[1], task=r[2], status=r[3], steps=r[4], tools=json.loads(r[5]), has_error=bool(r[6]),
                    verdict=r[7], source=r[8], holder=r[9], updated=r[10], replay=r[11]) for r in fetched[:limit]]
        next_cursor = str(fetched[limit - 1][0]) if len(fetched) > limit else None
        return Page(rows, next_cursor)

    def counts(self, filters: Filters | None = None) -> dict[str, int]:
        """Trajectories per status under `filters` (its status ignored), plus "total"."""
        scope = copy.copy(filters or Filters())
        scope.status = None
        where, params = self._where(scope)
        found = dict(self.db.read(
            f"SELECT t.status, COUNT(*) FROM trajectories t WHERE {' AND '.join(where) or '1'} GROUP BY t.status",
            params,
        ))
        result = {status: found.get(status, 0) for status in STATUSES}
        result["total"] = sum(found.values())
        return result

    def facets(self) -> dict[str, list[str]]:
        return {
            "tools": [r[0] for r in self.db.read(
                f"SELECT DISTINCT x.tool FROM trajectory_tools x JOIN trajectories t ON t.seq = x.trajectory_seq"
                f" WHERE {CURATION} ORDER BY x.tool")],
            "sources": [r[0] for r in self.db.read(
                f"SELECT DISTINCT source FROM trajectories t WHERE {CURATION} ORDER BY source")],
            "verdicts": [r[0] for r in self.db.read(
                f"SELECT DISTINCT verdict FROM trajectories t WHERE {CURATION} AND verdict IS NOT NULL"
                " ORDER BY verdict")],
            "statuses": list(STATUSES),
        }

    def _where(self, filters: Filters) -> tuple[list[str], list[Any]]:
        where: list[str] = [CURATION]
        params: list[Any] = []
        if filters.status is not None:
            _check_status(filters.status)
            where.append("t.status = ?")
            params.append(filters.status)
        for tool in filters.tools:
            where.append("EXISTS (SELECT 1 FROM trajectory_tools x WHERE x.tool = ? AND x.trajectory_seq = t.seq)")
            params.append(tool)
        if filters.min_steps is not None:
            where.append("t.steps >= ?")
            params.append(filters.min_steps)
        if filters.max_steps is not None:
            where.append("t.steps <= ?")
            params.append(filters.max_steps)
        if filters.has_error is not None:
            where.append("t.has_error = ?")
            params.append(int(filters.has_error))
        if filters.verdict is not None:
            where.append("t.verdict = ?")
            params.append(filters.verdict)
        if filters.source is not None:
            where.append("t.source = ?")
            params.append(filters.source)
        if filters.replay is not None:
            if filters.replay not in REPLAYS:
                raise StoreError(f"unknown replay outcome {filters.replay!r}; choose one of {', '.join(REPLAYS)}")
            where.append("t.replay IS NULL" if filters.replay == "not replayed" else "t.replay = ?")
            params += [] if filters.replay == "not replayed" else [filters.replay]
        match = fts_words(filters.search)
        if match:
            where.append("t.seq IN (SELECT rowid FROM search WHERE search MATCH ?)")
            params.append(match)
        return where, params

    def find(self, *, record_id: str, source: str) -> str | None:
        """The id of the trajectory a package stored for `record_id` under `source`, if any."""
        return self.db.value("SELECT id FROM trajectories WHERE record_id = ? AND source = ? ORDER BY seq",
                             (record_id, source))

    def statuses(self, trajectory_ids: Sequence[str]) -> dict[str, str]:
        """The review status of each of `trajectory_ids` that exists."""
        found: dict[str, str] = {}
        for start in range(0, len(trajectory_ids), 500):
            chunk = list(trajectory_ids[start:start + 500])
            found.update(self.db.read(
                f"SELECT id, status FROM trajectories WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        return found

    def detail(self, trajectory_id: str) -> Detail:
        """Everything the viewer shows; KeyError for an unknown id."""
        row = self.db.read_one(
            """SELECT t.seq, t.id, t.source, t.status, t.record, k.reference_answer, t.verdict, t.verdict_reason,
                      CASE WHEN t.held_until > ? THEN t.holder END
               FROM trajectories t JOIN tasks k ON k.id = t.task_id WHERE t.id = ?""",
            (now(), trajectory_id),
        )
        if row is None:
            raise KeyError(trajectory_id)
        return self._detail(row, self._events(row[0], row[1]))

    def iter_details(self, status: str | None = None) -> Iterator[Detail]:
        """Every curation trajectory (with `status`, or all), in store order, for export and training.

        "approved" gives exactly those whose decision in force is an approval made after their latest edit
        (an edit returns a trajectory to pending), with the edits applied. An unknown status is refused at once.
        """
        if status is not None:
            _check_status(status)
        return self._iter_details(status)

    def _iter_details(self, status: str | None) -> Iterator[Detail]:
        sql = """SELECT t.seq, t.id, t.source, t.status, t.record, k.reference_answer, t.verdict, t.verdict_reason,
                        NULL FROM trajectories t JOIN tasks k ON k.id = t.task_id
                 WHERE (? IS NULL OR t.status = ?) AND t.purpose = 'curation' ORDER BY t.seq"""
        edited = {seq for (seq,) in self.db.read("SELECT DISTINCT trajectory_seq FROM events WHERE kind='edit'")}
        for row in self.db.stream(sql, (status, status)):
            yield self._detail(row, self._events(row[0], row[1]) if row[0] in edited else [])

    def _detail(self, row: tuple, events: list[Event]) -> Detail:
        seq, trajectory_id, source, status, record_json, reference, verdict, reason, holder = row
        record = json.loads(record_json)
        original = formats.trajectory_of(record)
        answer = record.get("answer", "")
        trajectory = copy.deepcopy(original)
        edited_fields: list[str] = []
        for event in _effective(events):
            if event.kind == "edit":
                answer = _apply_edit(trajectory, event.payload, answer)
                name = event.payload["field"] if event.payload["step"] is None else \
                    f"{event.payload['step']}.{event.payload['field']}"
                if name not in edited_fields:
                    edited_fields.append(name)
        images = [
            _image_ref(name, None if path is None else self.path.parent / path)
            for name, path in self.db.read(
                """SELECT a.name, f.path FROM attachments a LEFT JOIN files f ON f.hash = a.file_hash
                   WHERE a.trajectory_seq = ? ORDER BY a.position""", (seq,))
        ]
        return Detail(id=trajectory_id, source=source, status=status, trajectory=trajectory, original=original,
                      record=record, images=images, reference_answer=reference, verdict=verdict,
                      verdict_reason=reason, events=events, edited_fields=edited_fields, answer=answer,
                      holder=holder)

    def _events(self, seq: int, trajectory_id: str, tx: Transaction | None = None) -> list[Event]:
        return [_event(trajectory_id, row) for row in (tx or self.db).read(
            f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.trajectory_seq = ? ORDER BY e.id", (seq,))]

    # ------------------------------------------------------------ reviewing
    #
    # A reviewer who opens a pending trajectory holds it (a claim) until CLAIM_MINUTES after their last claim or
    # edit on it, so the queue sends others elsewhere. While someone holds it, nobody else decides, edits or undoes
    # anything on it: taking it over is a separate action, recorded as a claim event naming who held it.

    def decide(self, trajectory_id: str, reviewer: str, decision: str, reasons: Sequence[str] = (),
               note: str = "", *, request_id: str | None = None, seen: str | None = None) -> Event:
        """Record a decision. `request_id` (made by the client, one per decision) makes a retry harmless: the
        event already recorded under it comes back and nothing new is written. `seen` is the status the reviewer
        saw: if someone changed it since, the decision is refused (it was made on what is no longer there)."""
        _check_status(decision)
        unknown = [code for code in reasons if code not in REJECT_REASONS]
        if unknown:
            raise StoreError(f"unknown reason code {unknown[0]!r}; choose from {', '.join(REJECT_REASONS)}")
        return self._append(trajectory_id, reviewer, "decision", decision=decision, reasons=list(reasons),
                            note=note, request_id=request_id, seen=seen)

    def undo(self, trajectory_id: str, reviewer: str, *, request_id: str | None = None) -> Event:
        """Take back `reviewer`'s own latest decision or edit still in force, with a new event.

        Nothing is deleted, and another reviewer's decisions are never taken back.
        """
        return self._append(trajectory_id, reviewer, "undo", request_id=request_id)

    def edit(self, trajectory_id: str, reviewer: str, *, step: int | None, field: str, value: str,
             request_id: str | None = None) -> Event:
        """Change a step's thought, code or observation (`step` counts from 0, as `Step.index`), or the answer.

        The original stays stored. An edit made after a decision returns the trajectory to pending (what was
        decided is not what it now holds) and the editor holds it, to decide it again.
        """
        if field not in EDIT_FIELDS:
            raise StoreError(f"cannot edit {field!r}; editable fields are {', '.join(EDIT_FIELDS)}")
        if (field == "answer") != (step is None):
            raise StoreError("give a step for thought/code/observation edits, and no step for the answer")
        return self._append(trajectory_id, reviewer, "edit", payload={"step": step, "field": field, "value": value},
                            request_id=request_id)

    def record_preference(self, trajectory_id: str, reviewer: str, payload: dict, *,
                          request_id: str | None = None) -> Event:
        """A reviewer's pick among candidate steps at one step (`review.sampler` makes the payload). It is an
        event, so the pairs it gives (`review.pairs`) stay derived from events; it changes no status."""
        return self._append(trajectory_id, reviewer, "preference", payload=payload, request_id=request_id)

    def claim(self, trajectory_id: str, reviewer: str) -> Event:
        """Hold a trajectory; refused, naming the holder, while someone else holds it."""
        reviewer = _named(reviewer)
        with self.db.transaction() as tx:
            seq, holder, until = self._locate(tx, trajectory_id, "seq, holder, held_until")
            at = now()
            _refuse_if_held(trajectory_id, reviewer, holder, until, at)
            return self._hold(tx, seq, trajectory_id, reviewer, at)

    def take_over(self, trajectory_id: str, reviewer: str) -> Event:
        """Hold a trajectory even if someone else holds it; the claim event names whom it was taken from."""
        reviewer = _named(reviewer)
        with self.db.transaction() as tx:
            seq, holder, until = self._locate(tx, trajectory_id, "seq, holder, held_until")
            at = now()
            taken = holder if holder and holder != reviewer and until and until > at else None
            return self._hold(tx, seq, trajectory_id, reviewer, at, taken_from=taken)

    def take_next(self, reviewer: str, filters: Filters | None = None, after: str | None = None) -> str | None:
        """Claim and return the next pending trajectory under `filters` after `after` (wrapping round) that
        nobody else holds. Finding and claiming are one transaction, so two reviewers never get the same one."""
        reviewer = _named(reviewer)
        where, params = self._where(replace(filters or Filters(), status="pending"))
        sql = (f"SELECT t.seq, t.id FROM trajectories t WHERE {' AND '.join(where)} AND t.seq {{op}} ? "
               "AND (t.holder IS NULL OR t.held_until <= ? OR t.holder = ?) ORDER BY t.seq LIMIT 1")
        with self.db.transaction() as tx:
            start = tx.value("SELECT seq FROM trajectories WHERE id = ?", (after,), default=0) if after else 0
            at = now()
            for op in (">", "<"):
                found = tx.read_one(sql.format(op=op), [*params, start, at, reviewer])
                if found:
                    self._hold(tx, found[0], found[1], reviewer, at)
                    return found[1]
        return None

    def pending_ids(self, filters: Filters | None = None) -> list[str]:
        """Every pending trajectory under `filters`, in store order: what a bulk decision would decide."""
        where, params = self._where(replace(filters or Filters(), status="pending"))
        return [row[0] for row in self.db.stream(
            f"SELECT t.id FROM trajectories t WHERE {' AND '.join(where)} ORDER BY t.seq", params)]

    def decide_many(self, trajectory_ids: Sequence[str], reviewer: str, decision: str, reasons: Sequence[str] = (),
                    note: str = "") -> BulkReport:
        """The same decision on many pending trajectories, each its own event, a few hundred per transaction.

        Those someone else holds, and those decided or gone since they were counted, are left as they are.
        """
        reviewer = _named(reviewer)
        report = BulkReport()
        for start in range(0, len(trajectory_ids), BULK_BATCH):
            with self.db.transaction() as tx:
                at = now()
                for trajectory_id in trajectory_ids[start:start + BULK_BATCH]:
                    found = tx.read_one("SELECT status, holder, held_until FROM trajectories WHERE id = ?",
                                        (trajectory_id,))
                    if found is None or found[0] != "pending":
                        report.changed.append(trajectory_id)
                    elif found[1] and found[1] != reviewer and found[2] and found[2] > at:
                        report.held.append((trajectory_id, found[1]))
                    else:
                        self.decide(trajectory_id, reviewer, decision, reasons, note)
                        report.decided += 1
        return report

    def record_replay(self, trajectory_id: str, reproduced: bool | None) -> None:
        """Whether re-running a trajectory's code reproduced its observations (None: not replayed), as the
        replay verifier (synthesis) found; the list and bulk decisions filter on it."""
        outcome = None if reproduced is None else "reproduced" if reproduced else "differs"
        with self.db.transaction() as tx:
            self._locate(tx, trajectory_id, "seq")
            tx.execute("UPDATE trajectories SET replay = ? WHERE id = ?", (outcome, trajectory_id))

    def _hold(self, tx: Transaction, seq: int, trajectory_id: str, reviewer: str, at: str,
              taken_from: str | None = None) -> Event:
        """Make `reviewer` the holder from now on, with a claim event."""
        tx.execute("UPDATE trajectories SET holder = ?, held_until = ? WHERE seq = ?",
                   (reviewer, now(after=timedelta(minutes=CLAIM_MINUTES)), seq))
        payload = {"taken_from": taken_from} if taken_from else None
        event_id = tx.execute(
            "INSERT INTO events (trajectory_seq, reviewer, at, kind, payload) VALUES (?, ?, ?, 'claim', ?)",
            (seq, reviewer, at, None if payload is None else json.dumps(payload))).lastrowid
        return Event(event_id, trajectory_id, reviewer, at, "claim", None, [], "", payload)

    def _append(self, trajectory_id: str, reviewer: str, kind: str, *, decision: str | None = None,
                reasons: list[str] | None = None, note: str = "", payload: dict | None = None,
                request_id: str | None = None, seen: str | None = None) -> Event:
        reviewer = _named(reviewer)
        request_id = (request_id or "").strip() or None
        with self.db.transaction() as tx:
            if request_id is not None:
                done = self._done(tx, request_id, trajectory_id)
                if done is not None:
                    return done
            seq, holder, until, status = self._locate(tx, trajectory_id, "seq, holder, held_until, status")
            at = now()
            _refuse_if_held(trajectory_id, reviewer, holder, until, at)
            events = self._events(seq, trajectory_id, tx)
            if seen is not None and status != seen:
                by = next((e.reviewer for e in reversed(events) if e.kind != "claim"), "someone")
                raise StoreError(f"{trajectory_id} is {status} now ({by} changed it since you opened it):"
                                 " look again before deciding")
            if kind == "decision":
                in_force = next((e for e in reversed(_effective(events)) if e.kind == "decision"), None)
                if status == decision and in_force is not None and (in_force.reviewer, in_force.decision,
                                                                     in_force.reasons, in_force.note) == (
                        reviewer, decision, reasons or [], note):
                    return in_force  # the same decision again (pressed twice, at the end of the queue): one event
            if kind == "undo":
                own = [event for event in _effective(events) if event.reviewer == reviewer]
                if not own:
                    raise StoreError(f"nothing of yours to undo on {trajectory_id}")
                payload = {"undoes": own[-1].id}
            if kind == "edit":
                payload["previous"] = self._current_value(tx, seq, trajectory_id, events, payload)
            event_id = tx.execute(
                "INSERT INTO events (trajectory_seq, reviewer, at, kind, decision, reasons, note, payload, request_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, reviewer, at, kind, decision, json.dumps(reasons or []), note,
                 None if payload is None else json.dumps(payload, ensure_ascii=False), request_id),
            ).lastrowid
            event = Event(event_id, trajectory_id, reviewer, at, kind, decision, reasons or [], note, payload,
                          request_id)
            self._refresh(tx, seq, trajectory_id, [*events, event], at)
            if kind == "edit":
                tx.execute("UPDATE trajectories SET holder = ?, held_until = ? WHERE seq = ?",
                           (reviewer, now(after=timedelta(minutes=CLAIM_MINUTES)), seq))
        return event

    def recorded(self, request_id: str | None) -> Event | None:
        """The event recorded under a client's request id, if any: a retried request finds what it did."""
        return self._recorded(self.db, request_id.strip()) if (request_id or "").strip() else None

    def _recorded(self, reader: Database | Transaction, request_id: str) -> Event | None:
        row = reader.read_one(f"SELECT t.id, {EVENT_COLUMNS} FROM events e JOIN trajectories t"
                              " ON t.seq = e.trajectory_seq WHERE e.request_id = ?", (request_id,))
        return None if row is None else _event(row[0], row[1:])

    def _done(self, tx: Transaction, request_id: str, trajectory_id: str) -> Event | None:
        """The event already recorded under `request_id` (a retried request); refused if it was for another."""
        event = self._recorded(tx, request_id)
        if event is not None and event.trajectory_id != trajectory_id:
            raise StoreError(f"request id {request_id!r} was already used for {event.trajectory_id}: "
                             "make a new one per decision")
        return event

    def _current_value(self, tx: Transaction, seq: int, trajectory_id: str, events: list[Event],
                       payload: dict) -> str:
        """The value an edit replaces (its trajectory as edited so far); refuses impossible edits."""
        record = json.loads(tx.value("SELECT record FROM trajectories WHERE seq = ?", (seq,)))
        trajectory = Trajectory.from_conversations(record["conversations"])
        answer = record.get("answer", "")
        for event in _effective(events):
            if event.kind == "edit":
                answer = _apply_edit(trajectory, event.payload, answer)
        if payload["field"] == "answer":
            return answer
        step = payload["step"]
        if not 0 <= step < len(trajectory.steps):
            raise StoreError(f"{trajectory_id} has no step {step + 1} (it has steps 1 to {len(trajectory.steps)})")
        target = trajectory.steps[step]
        if payload["field"] == "observation":
            if target.is_final:
                raise StoreError(f"step {step + 1} of {trajectory_id} gives the final answer; it has no observation")
            return target.error if target.error is not None else (target.observation or "")
        return getattr(target, payload["field"]) or ""

    def _refresh(self, tx: Transaction, seq: int, trajectory_id: str, events: list[Event], at: str) -> None:
        """Rewrite the cached status, current decision and searchable answer from the events.

        The decision in force is the latest one still standing, unless an edit still standing came after it.
        """
        stack = _effective(events)
        decisions = [event for event in stack if event.kind == "decision"]
        current = decisions[-1] if decisions else None
        if current is not None and any(event.kind == "edit" and event.id > current.id for event in stack):
            current = None
        tx.execute(
            "UPDATE trajectories SET status = ?, decision_event = ?, updated = ?, "
            "holder = CASE WHEN ? THEN NULL ELSE holder END WHERE seq = ?",
            (current.decision if current else "pending", current.id if current else None, at,
             events[-1].kind == "decision", seq),
        )
        if any(event.kind == "edit" and event.payload["field"] == "answer" for event in events):
            record = json.loads(tx.execute("SELECT record FROM trajectories WHERE seq = ?", (seq,)).fetchone()[0])
            answer = record.get("answer", "")
            for event in stack:
                if event.kind == "edit" and event.payload["field"] == "answer":
                    answer = event.payload["value"]
            tx.execute("UPDATE search SET answer = ? WHERE rowid = ?", (answer, seq))

    def _locate(self, tx: Transaction, trajectory_id: str, columns: str) -> tuple:
        found = tx.execute(f"SELECT {columns} FROM trajectories WHERE id = ?", (trajectory_id,)).fetchone()
        if found is None:
            raise StoreError(f"no trajectory {trajectory_id!r} in {self.path.name}")
        return found

    # ------------------------------------------------------------ stats and export

    def stats(self) -> dict:
        """Plain data for the stats plots: tools, steps, decisions by reason/source/reviewer, per day."""
        decided = f"""SELECT t.source, e.reviewer, e.decision, e.reasons, substr(e.at, 1, 10)
                      FROM trajectories t JOIN events e ON e.id = t.decision_event WHERE {CURATION}"""
        by_source: dict[tuple, int] = {}
        by_reviewer: dict[tuple, int] = {}
        per_day: dict[tuple, int] = {}
        for source, reviewer, decision, reasons, day in self.db.read(decided):
            for reason in json.loads(reasons) or [""]:
                by_source[(source, decision, reason)] = by_source.get((source, decision, reason), 0) + 1
                by_reviewer[(reviewer, decision, reason)] = by_reviewer.get((reviewer, decision, reason), 0) + 1
            per_day[(day, decision)] = per_day.get((day, decision), 0) + 1
        return {
            "counts": self.counts(),
            "tools": dict(self.db.read(
                f"SELECT x.tool, COUNT(*) FROM trajectory_tools x JOIN trajectories t ON t.seq = x.trajectory_seq"
                f" WHERE {CURATION} GROUP BY x.tool ORDER BY COUNT(*) DESC, x.tool")),
            "steps": dict(self.db.read(
                f"SELECT steps, COUNT(*) FROM trajectories t WHERE {CURATION} GROUP BY steps ORDER BY steps")),
            "by_source": [{"source": s, "decision": d, "reason": r, "count": n} for (s, d, r), n in by_source.items()],
            "by_reviewer": [{"reviewer": v, "decision": d, "reason": r, "count": n}
                            for (v, d, r), n in by_reviewer.items()],
            "per_day": [{"day": day, "decision": d, "count": n} for (day, d), n in sorted(per_day.items())],
        }

    def export(self, fmt: str, out: Path, status: str | None = None) -> int:
        """Write `mmtraj`, `messages` or `hf`; returns how many trajectories were written."""
        return formats.export(self, fmt, Path(out), status).written


def fts_words(typed: str) -> str:
    """What a person typed as an FTS5 query of words: every word must appear, as a word or its prefix.

    Quotes, brackets and operators (AND, OR, NOT, NEAR) are plain text here, so no input can raise;
    `calor*` and `calor` both find "calories".
    """
    words = re.findall(r"\w+", typed or "")
    return " ".join(f'"{word}"*' for word in words)


def _read_image(images: formats.ImageReader | None, name: str, report: ImportReport) -> bytes | None:
    """An image's bytes for import; a missing or refused one is counted (and stored as missing)."""
    try:
        data = images.read(name) if images is not None else None
    except formats.ImageRefused:
        data = None
        report.refused.append(name)
    if data is None:
        report.missing_images += 1
    return data


def _image_ref(name: str, path: Path | None) -> ImageRef:
    """An attachment as stored; missing when it never came with the record or its file is gone from disk."""
    return ImageRef(name=name, path=path, missing=path is None or not path.is_file())


def _effective(events: list[Event]) -> list[Event]:
    """Decisions and edits still in force: each undo takes back the event it names.

    An undo without a target (none are written so) takes back the latest one still in force.
    """
    stack: list[Event] = []
    for event in events:
        if event.kind in ("decision", "edit"):
            stack.append(event)
        elif event.kind == "undo" and stack:
            target = (event.payload or {}).get("undoes")
            named = [held for held in stack if held.id == target]
            stack.remove(named[0] if named else stack[-1])
    return stack


def _apply_edit(trajectory: Trajectory, payload: dict, answer: str) -> str:
    """Apply one edit in place; returns the (possibly edited) answer."""
    value = payload["value"]
    if payload["field"] == "answer":
        final = next((step for step in reversed(trajectory.steps) if step.is_final), None)
        if final is not None:
            final.final_answer = value
        return value
    step = trajectory.steps[payload["step"]]
    if payload["field"] == "observation":
        if step.error is not None:
            step.error = value
        else:
            step.observation = value
        return answer
    old = getattr(step, payload["field"]) or ""
    setattr(step, payload["field"], value)
    step.model_output = _rewrite_output(step, payload["field"], old, value)
    return answer


def _rewrite_output(step: Step, field: str, old: str, new: str) -> str:
    """The model turn with one part replaced, keeping the rest of its text as written."""
    text = step.model_output
    at = text.find(old) if field == "thought" else text.rfind(old)
    if old and at >= 0:
        return text[:at] + new + text[at + len(old):]
    if step.code is None:
        return f"Thought: {step.thought}"
    return f"Thought: {step.thought}\nCode:\n```py\n{step.code}\n```"


def _answer_text(answer: Any, final: str | None) -> str:
    return " ".join(part for part in (answer if isinstance(answer, str) else "", final or "") if part)


def _event(trajectory_id: str, row: Sequence[Any]) -> Event:
    """An Event from a row of EVENT_COLUMNS."""
    return Event(id=row[0], trajectory_id=trajectory_id, reviewer=row[1], at=row[2], kind=row[3], decision=row[4],
                 reasons=json.loads(row[5]), note=row[6], payload=None if row[7] is None else json.loads(row[7]),
                 request_id=row[8])


def _named(reviewer: str | None) -> str:
    if not reviewer or not reviewer.strip():
        raise StoreError("a reviewer name is required")
    return reviewer.strip()


def _refuse_if_held(trajectory_id: str, reviewer: str, holder: str | None, until: str | None, at: str) -> None:
    """Someone else's claim still running: refused, naming them and until when."""
    if holder and holder != reviewer and until and until > at:
        raise StoreError(f"{trajectory_id} is held by {holder} until {until[11:16]} UTC: take it over to change it")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise StoreError(f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")


def _decode_cursor(cursor: str) -> int:
    try:
        return int(cursor)
    except ValueError:
        raise StoreError(f"not a page cursor: {cursor!r}") from None


def _progress(total: int, label: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="rec")
