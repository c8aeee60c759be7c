"""The review package's tables, as numbered migrations registered with `core.db`.

One database file is shared by every package; each registers its own numbered migrations and
keeps its own version, so a package can add tables without colliding with another's numbering.
"""

from __future__ import annotations

from core.db import register

MIGRATIONS: list[str] = [
    # 1: tasks, trajectories, their steps and attachments, review events, full-text search.
    """
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        reference_answer TEXT
    );
    CREATE TABLE trajectories (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        task_id INTEGER NOT NULL REFERENCES tasks(id),
        record_id TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        source TEXT NOT NULL,
        record TEXT NOT NULL,
        steps INTEGER NOT NULL,
        tools TEXT NOT NULL,
        has_error INTEGER NOT NULL,
        verdict TEXT,
        verdict_reason TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        decision_event INTEGER,
        holder TEXT,
        held_until TEXT,
        imported_at TEXT NOT NULL,
        updated TEXT NOT NULL,
        UNIQUE (record_id, content_hash)
    );
    CREATE INDEX trajectories_status ON trajectories(status);
    CREATE INDEX trajectories_verdict ON trajectories(verdict);
    CREATE INDEX trajectories_source ON trajectories(source);
    CREATE TABLE trajectory_tools (
        tool TEXT NOT NULL,
        trajectory_seq INTEGER NOT NULL REFERENCES trajectories(seq),
        PRIMARY KEY (tool, trajectory_seq)
    ) WITHOUT ROWID;
    CREATE TABLE steps (
        trajectory_seq INTEGER NOT NULL REFERENCES trajectories(seq),
        idx INTEGER NOT NULL,
        tools TEXT NOT NULL,
        has_code INTEGER NOT NULL,
        has_error INTEGER NOT NULL,
        is_final INTEGER NOT NULL,
        PRIMARY KEY (trajectory_seq, idx)
    ) WITHOUT ROWID;
    CREATE TABLE files (
        hash TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        size INTEGER NOT NULL
    );
    CREATE TABLE attachments (
        trajectory_seq INTEGER NOT NULL REFERENCES trajectories(seq),
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        file_hash TEXT REFERENCES files(hash),
        PRIMARY KEY (trajectory_seq, position)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        trajectory_seq INTEGER NOT NULL REFERENCES trajectories(seq),
        reviewer TEXT NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('decision', 'edit', 'undo', 'claim')),
        decision TEXT,
        reasons TEXT NOT NULL DEFAULT '[]',
        note TEXT NOT NULL DEFAULT '',
        payload TEXT
    );
    CREATE INDEX events_trajectory ON events(trajectory_seq, id);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'review events are append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'review events are append-only'); END;
    CREATE VIRTUAL TABLE search USING fts5(task, answer, tokenize = 'porter unicode61');
    """,
    # 2: what a trajectory is for. Evaluation runs keep theirs for the viewer, out of the curation queue, the
    # stats and every export (benchmark tasks must never reach training). Benchmarks' queries, as evaluation
    # met them, so training can refuse them and report overlap.
    """
    ALTER TABLE trajectories ADD COLUMN purpose TEXT NOT NULL DEFAULT 'curation'
        CHECK (purpose IN ('curation', 'evaluation'));
    UPDATE trajectories SET purpose = 'evaluation' WHERE source LIKE 'eval/%';
    DROP INDEX trajectories_status;
    CREATE INDEX trajectories_status_purpose ON trajectories(status, purpose);
    CREATE TABLE benchmark_queries (
        benchmark TEXT NOT NULL,
        query_id TEXT NOT NULL,
        text TEXT NOT NULL,
        images TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (benchmark, query_id)
    );
    """,
    # 3: claims that hold and decisions made once. An event may carry the id its client made for it, so a retried
    # request finds what it already did. A trajectory carries the outcome of its replay (synthesis reports it through
    # `Store.record_replay`). An edit made after the decision in force returns the trajectory to pending.
    """
    ALTER TABLE events ADD COLUMN request_id TEXT;
    CREATE UNIQUE INDEX events_request ON events(request_id) WHERE request_id IS NOT NULL;
    ALTER TABLE trajectories ADD COLUMN replay TEXT CHECK (replay IN ('reproduced', 'differs'));
    UPDATE trajectories SET status = 'pending', decision_event = NULL
        WHERE decision_event IS NOT NULL AND EXISTS (
            SELECT 1 FROM events e WHERE e.trajectory_seq = trajectories.seq AND e.kind = 'edit'
                AND e.id > trajectories.decision_event
                AND NOT EXISTS (SELECT 1 FROM events u WHERE u.trajectory_seq = e.trajectory_seq AND u.kind = 'undo'
                                AND json_extract(u.payload, '$.undoes') = e.id));
    """,
    # 4: a reviewer's pick among sampled candidate steps (Review's step sampler) is an event too, so the pairs it
    # gives stay derived from events. SQLite cannot widen a CHECK in place: the table is rebuilt with its rows,
    # ids (and AUTOINCREMENT counter), indexes and append-only triggers (DROP TABLE fires no delete trigger).
    """
    CREATE TABLE events_v4 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        trajectory_seq INTEGER NOT NULL REFERENCES trajectories(seq),
        reviewer TEXT NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('decision', 'edit', 'undo', 'claim', 'preference')),
        decision TEXT,
        reasons TEXT NOT NULL DEFAULT '[]',
        note TEXT NOT NULL DEFAULT '',
        payload TEXT,
        request_id TEXT
    );
    INSERT INTO events_v4 (id, trajectory_seq, reviewer, at, kind, decision, reasons, note, payload, request_id)
        SELECT id, trajectory_seq, reviewer, at, kind, decision, reasons, note, payload, request_id FROM events;
    DROP TABLE events;
    ALTER TABLE events_v4 RENAME TO events;
    CREATE INDEX events_trajectory ON events(trajectory_seq, id);
    CREATE INDEX events_kind ON events(kind);
    CREATE UNIQUE INDEX events_request ON events(request_id) WHERE request_id IS NOT NULL;
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'review events are append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'review events are append-only'); END;
    """,
]


register("review", MIGRATIONS)
