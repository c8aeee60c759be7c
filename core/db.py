"""The one database: a SQLite file every package shares, reached only through this module.

- Reads run on pooled read-only connections and never wait for the write lock: in WAL mode a reader
  sees the last commit while a writer works.
- Every write runs in `transaction()`, which takes the write lock up front (BEGIN IMMEDIATE), so two
  writers, in threads or processes, queue instead of failing halfway. Short writers of this process
  queue on a lock and only the head polls SQLite; a bulk writer (an import) steps aside between batches.
- Each package registers its migrations once (`register`); a database applies whatever it lacks when it
  is opened, and again if a package registers later. The write lock is taken only when something is
  missing. A database written by a newer MAT Studio is refused, per package.
- Connections are pooled per database and bounded, so threads that come and go (Gradio's workers) leave
  none open behind them.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from core.errors import UserError

BUSY_TIMEOUT_MS = 60_000
IDLE_CONNECTIONS = 4  # kept open per database and kind (readers, writers); more are opened while busy, then closed

_MIGRATIONS: dict[str, list[str]] = {}
_MIGRATIONS_LOCK = threading.Lock()


class DatabaseError(UserError):
    """The database file cannot be opened or written; the message names it and says what to do."""


class SchemaTooNew(DatabaseError):
    """The database was written by a newer version of MAT Studio."""


def register(package: str, migrations: Sequence[str]) -> None:
    """Declare `package`'s tables as numbered migrations (scripts applied in order, never edited once shipped)."""
    with _MIGRATIONS_LOCK:
        _MIGRATIONS[package] = list(migrations)


class Transaction:
    """One write transaction's statements; it commits when the `with` block ends, and rolls back on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] | dict = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        return self._conn.executemany(sql, rows)

    def read(self, sql: str, params: Sequence[Any] | dict = ()) -> list[tuple]:
        """Rows as this transaction sees them (its own writes included)."""
        return self._conn.execute(sql, params).fetchall()

    def read_one(self, sql: str, params: Sequence[Any] | dict = ()) -> tuple | None:
        return self._conn.execute(sql, params).fetchone()

    def value(self, sql: str, params: Sequence[Any] | dict = (), default: Any = None) -> Any:
        row = self.read_one(sql, params)
        return default if row is None else row[0]


class Database:
    """A SQLite file shared by threads and processes; safe to use from any thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _open_error(self.path, exc) from None
        self._readers = _Pool(lambda: self._connect(query_only=True))
        self._writers = _Pool(lambda: self._connect(query_only=False))
        self._migrated: set[str] = set()
        self._migrating = threading.Lock()
        self._local = threading.local()
        with self._writers.connection():  # a new file becomes WAL before any reader opens it
            pass
        self._ensure_schema()

    # ------------------------------------------------------------ reading

    def read(self, sql: str, params: Sequence[Any] | dict = ()) -> list[tuple]:
        """All rows of a query, read without the write lock."""
        with self._reader() as conn:
            return conn.execute(sql, params).fetchall()

    def read_one(self, sql: str, params: Sequence[Any] | dict = ()) -> tuple | None:
        with self._reader() as conn:
            return conn.execute(sql, params).fetchone()

    def value(self, sql: str, params: Sequence[Any] | dict = (), default: Any = None) -> Any:
        """The first column of the first row, or `default` when there is none."""
        row = self.read_one(sql, params)
        return default if row is None else row[0]

    def stream(self, sql: str, params: Sequence[Any] | dict = ()) -> Iterator[tuple]:
        """Rows one at a time, for results too large to hold (an export of the whole release)."""
        with self._reader() as conn:
            yield from conn.execute(sql, params)

    # ------------------------------------------------------------ writing

    @contextmanager
    def transaction(self, *, bulk: bool = False) -> Iterator[Transaction]:
        """One write transaction. A short writer announces itself so a bulk writer lets it in between batches.

        Inside a transaction, a second `transaction()` on the same thread joins the first: helpers that
        write can be called on their own or as part of a larger change.
        """
        joined = getattr(self._local, "transaction", None)
        if joined is not None:
            yield joined
            return
        self._ensure_schema()
        with self._writers.connection() as conn, _translated(self.path):
            with nullcontext() if bulk else _WRITERS.turn(self.path):
                if bulk:
                    conn.execute("BEGIN IMMEDIATE")
                else:
                    _begin_soon(conn)
                self._local.transaction = Transaction(conn)
                try:
                    yield self._local.transaction
                except BaseException:
                    if conn.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                        conn.execute("ROLLBACK")
                    raise
                else:
                    conn.execute("COMMIT")
                finally:
                    self._local.transaction = None

    def let_writers_in(self, longest: float = 2.0) -> None:
        """For a bulk writer between batches: wait until this process's queued short writers have had their turn."""
        _WRITERS.let_waiting_in(self.path, longest)

    # ------------------------------------------------------------ schema

    def versions(self) -> dict[str, int]:
        """Each package's schema version in this file."""
        with self._reader() as conn:
            return _versions(conn)

    def _ensure_schema(self) -> None:
        """Apply the migrations registered since this database last checked; the write lock only if needed."""
        with _MIGRATIONS_LOCK:
            pending = {name: steps for name, steps in _MIGRATIONS.items() if name not in self._migrated}
        if not pending:
            return
        with self._migrating:
            with self._readers.connection() as conn, _translated(self.path):
                current = _versions(conn)
            for package, steps in pending.items():
                _refuse_newer(package, current.get(package, 0), steps)
            needed = {name: steps for name, steps in pending.items() if current.get(name, 0) < len(steps)}
            if needed:
                with self._writers.connection() as conn, _translated(self.path):
                    _migrate(conn, needed)
            self._migrated.update(pending)

    # ------------------------------------------------------------ connections

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        with self._readers.connection() as conn, _translated(self.path, writing=False):
            yield conn

    def _connect(self, *, query_only: bool) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            if not query_only:
                _enable_wal(conn)
            conn.execute(f"PRAGMA query_only = {int(query_only)}")
        except sqlite3.Error as exc:
            raise _open_error(self.path, exc) from None
        return conn

    def close(self) -> None:
        """Close every idle connection now; those in use close when their work ends."""
        self._readers.close()
        self._writers.close()

    def open_connections(self) -> int:
        """Connections this database holds open (idle and in use), for leak checks."""
        return self._readers.open + self._writers.open

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Pool:
    """Connections of one kind, borrowed for one read or one transaction and given back after."""

    def __init__(self, connect) -> None:
        self._connect = connect
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.open = 0

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
            with self._lock:
                self.open += 1
        try:
            yield conn
        finally:
            with self._lock:
                keep = not self._closed and len(self._idle) < IDLE_CONNECTIONS and not conn.in_transaction
                if keep:
                    self._idle.append(conn)
                else:
                    self.open -= 1
            if not keep:
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self.open -= len(idle)
        for conn in idle:
            conn.close()


class _Writers:
    """Short writers of this process, per database file: queued one at a time, and counted.

    SQLite's busy handler polls, so a bulk import that commits and at once begins again could keep a
    waiting decision out for as long as the import lasts; between batches the import waits until the
    writers that were queued have had their turn. Only the writer at the head of the queue polls SQLite;
    the rest sleep on a lock (32 synthesis threads polling at once burnt more CPU than their work).
    """

    def __init__(self) -> None:
        self._counts: dict[Path, int] = {}
        self._locks: dict[Path, threading.Lock] = {}
        self._changed = threading.Condition()

    @contextmanager
    def turn(self, path: Path) -> Iterator[None]:
        with self._changed:
            self._counts[path] = self._counts.get(path, 0) + 1
            lock = self._locks.setdefault(path, threading.Lock())
        try:
            with lock:
                yield
        finally:
            with self._changed:
                self._counts[path] -= 1
                self._changed.notify_all()

    def let_waiting_in(self, path: Path, longest: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._counts.get(path, 0) == 0, timeout=longest)


_WRITERS = _Writers()


def _begin_soon(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, retried every few milliseconds rather than on SQLite's own busy schedule (which
    sleeps up to 100 ms between tries), so a short write slips into the pause a bulk writer of another
    process leaves between its batches."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.002)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _enable_wal(conn: sqlite3.Connection) -> None:
    import sqlite_utils

    database = sqlite_utils.Database(conn, execute_plugins=False)
    if database.journal_mode != "wal":
        database.enable_wal()


# ---------------------------------------------------------------- migrations


def _versions(conn: sqlite3.Connection) -> dict[str, int]:
    columns = [row[1] for row in conn.execute("PRAGMA table_info(schema_version)")]
    if "package" not in columns:  # a new file, or the first release's unkeyed table (review's versions)
        return {"review": conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]} \
            if columns else {}
    return dict(conn.execute("SELECT package, MAX(version) FROM schema_version GROUP BY package").fetchall())


def _refuse_newer(package: str, current: int, steps: list[str]) -> None:
    if current > len(steps):
        raise SchemaTooNew(
            f"this database was written by a newer MAT Studio ({package} schema version {current}; "
            f"this one knows up to {len(steps)}). Upgrade MAT Studio, or point MAT_DB at another file."
        )


def _migrate(conn: sqlite3.Connection, packages: dict[str, list[str]]) -> None:
    """Bring each package's tables to their latest version, in one transaction under the write lock
    (two processes opening a fresh file at once must not both create the tables)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        _ensure_version_table(conn)
        for package, steps in packages.items():
            current = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version WHERE package = ?", (package,)).fetchone()[0]
            _refuse_newer(package, current, steps)
            for version, script in enumerate(steps[current:], start=current + 1):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                             (package, version))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _ensure_version_table(conn: sqlite3.Connection) -> None:
    """Create `schema_version`, or key the first release's table (review's versions only) by package."""
    columns = [row[1] for row in conn.execute("PRAGMA table_info(schema_version)")]
    if not columns:
        conn.execute("CREATE TABLE schema_version (package TEXT NOT NULL, version INTEGER NOT NULL,"
                     " applied_at TEXT NOT NULL, PRIMARY KEY (package, version))")
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


# ---------------------------------------------------------------- errors a person can act on


@contextmanager
def _translated(path: Path, *, writing: bool = True) -> Iterator[None]:
    """SQLite's failures that come from the file's surroundings, in one line naming the file.

    On a reader, "readonly" is a write through `read()`: a bug, left as it is.
    """
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "readonly" in text and writing or "unable to open" in text or "disk" in text or "locked" in text:
            raise _open_error(path, exc) from None
        raise


def _open_error(path: Path, exc: BaseException) -> DatabaseError:
    text = str(exc)
    if "disk" in text and "full" in text or getattr(exc, "errno", None) == errno.ENOSPC:
        advice = "the disk is full: free some space, or set MAT_DB to a file on another disk"
    elif "locked" in text:
        advice = "another process held it locked for too long: try again, or stop the other process"
    else:
        advice = "check that the file and its folder exist and are writable, or set MAT_DB to another file"
    reason = getattr(exc, "strerror", None) or text
    return DatabaseError(f"cannot use the database {path}: {reason} ({advice})")
