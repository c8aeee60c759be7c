"""The store's tables, as numbered migrations applied in order, per package.

One database file is shared by review, synthesis, training and evaluation. Each package
keeps its own numbered list of migrations and its own version in `schema_version`, keyed
by package name, so a package can add tables without colliding with another's numbering:

    from review.schema import migrate
    migrate(conn, "train", TRAIN_MIGRATIONS)

A database written by a newer MAT Studio (a version above what this code knows) is refused
with `SchemaTooNew` rather than half-read.
"""

from __future__ import annotations

import sqlite3

from review.errors import StoreError

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


class SchemaTooNew(StoreError):
    """The database was written by a newer version of MAT Studio."""


def migrate(conn: sqlite3.Connection, package: str = "review", migrations: list[str] | None = None) -> int:
    """Bring `package`'s tables to the latest version; returns that version.

    Runs under BEGIN IMMEDIATE so two processes opening a fresh file at once do not both
    create the tables. Raises SchemaTooNew for a database from a newer release.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    conn.execute("BEGIN IMMEDIATE")
    try:
        _ensure_version_table(conn)
        current = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version WHERE package = ?", (package,)
        ).fetchone()[0]
        if current > len(migrations):
            raise SchemaTooNew(
                f"this database was written by a newer MAT Studio ({package} schema version {current}; "
                f"this one knows up to {len(migrations)}). Upgrade MAT Studio, or point MAT_DB at another file."
            )
        for version, script in enumerate(migrations[current:], start=current + 1):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))", (package, version)
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(migrations)


def _ensure_version_table(conn: sqlite3.Connection) -> None:
    """Create `schema_version`, or key the first release's table (review's versions only) by package."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(schema_version)")]
    if not columns:
        conn.execute(
            "CREATE TABLE schema_version (package TEXT NOT NULL, version INTEGER NOT NULL, applied_at TEXT NOT NULL,"
            " PRIMARY KEY (package, version))"
        )
    elif "package" not in columns:
        conn.execute("ALTER TABLE schema_version RENAME TO schema_version_unkeyed")
        _ensure_version_table(conn)
        conn.execute("INSERT INTO schema_version SELECT 'review', version, applied_at FROM schema_version_unkeyed")
        conn.execute("DROP TABLE schema_version_unkeyed")


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit our transaction)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return [s for s in statements if s]
