"""The store's tables, as numbered migrations applied in order.

`PRAGMA user_version` would do for one package, but the store is shared with synthesis,
training and evaluation, so the version lives in a `schema_version` table that any of them
can read and extend with their own numbered steps.
"""

from __future__ import annotations

import sqlite3

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
]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to the latest version; returns that version.

    Runs under BEGIN IMMEDIATE so two processes opening a fresh file at once do not both
    create the tables.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))", (version,)
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return [s for s in statements if s]
