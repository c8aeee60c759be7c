"""The one database on a real SQLite file: migrations per package, transactions, reads beside writers, bounds."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from core import db as core_db
from core.db import Database, DatabaseError, SchemaTooNew, register


@pytest.fixture
def database(tmp_path: Path):
    register("test_notes", ["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"])
    opened = Database(tmp_path / "mat.db")
    yield opened
    opened.close()


def _versions(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT package, MAX(version) FROM schema_version GROUP BY package").fetchall())


def test_database_is_wal_with_foreign_keys_and_each_package_migrated_once(database: Database):
    assert database.value("PRAGMA journal_mode") == "wal"
    assert database.value("PRAGMA foreign_keys") == 1
    assert database.versions()["test_notes"] == 1
    applied = sqlite3.connect(database.path).execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
    Database(database.path).close()  # reopening migrates nothing twice
    assert sqlite3.connect(database.path).execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == applied


def test_a_package_registered_later_is_migrated_on_the_next_use(database: Database):
    register("test_later", ["CREATE TABLE later (id INTEGER PRIMARY KEY);"])
    assert database.read("SELECT COUNT(*) FROM later") == [(0,)]
    assert _versions(database.path)["test_later"] == 1


def test_a_newer_database_is_refused_naming_the_package(database: Database, tmp_path: Path):
    with database.transaction() as tx:
        tx.execute("INSERT INTO schema_version VALUES ('test_notes', 99, 'later')")
    with pytest.raises(SchemaTooNew, match="test_notes schema version 99"):
        Database(database.path)


def test_a_first_release_database_is_keyed_by_package_on_open(tmp_path: Path):
    from review.schema import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
    for statement in core_db._statements(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1, 'then')")
    conn.close()
    with Database(path):
        rows = sqlite3.connect(path).execute("SELECT package, version FROM schema_version ORDER BY version")
        assert [tuple(row) for row in rows if row[0] == "review"] == [("review", n + 1) for n in range(len(MIGRATIONS))]


def test_a_failed_transaction_leaves_nothing_and_a_nested_one_joins_it(database: Database):
    with pytest.raises(RuntimeError), database.transaction() as tx:
        tx.execute("INSERT INTO notes (text) VALUES ('kept?')")
        with database.transaction() as inner:
            assert inner is tx
            inner.execute("INSERT INTO notes (text) VALUES ('inner')")
        raise RuntimeError("boom")
    assert database.read("SELECT text FROM notes") == []
    with database.transaction() as tx:
        tx.execute("INSERT INTO notes (text) VALUES ('saved')")
        assert tx.read("SELECT text FROM notes") == [("saved",)]
    assert database.read("SELECT text FROM notes") == [("saved",)]


def test_reads_refuse_to_write(database: Database):
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        database.read("INSERT INTO notes (text) VALUES ('sneaked in')")
    assert database.read("SELECT COUNT(*) FROM notes") == [(0,)]


def test_reads_and_opening_do_not_wait_for_a_writer_of_another_process(database: Database):
    """An import holding the write lock must not stall the page: opening and reading take no lock."""
    writer = sqlite3.connect(database.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO notes (text) VALUES ('uncommitted')")
    try:
        started = time.perf_counter()
        with Database(database.path) as reopened:
            assert reopened.read("SELECT COUNT(*) FROM notes") == [(0,)]
        assert time.perf_counter() - started < 1.0
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_connections_stay_bounded_as_threads_come_and_go(database: Database):
    def work() -> None:
        database.read("SELECT COUNT(*) FROM notes")
        with database.transaction() as tx:
            tx.execute("INSERT INTO notes (text) VALUES ('x')")

    for _ in range(5):
        threads = [threading.Thread(target=work) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert database.read("SELECT COUNT(*) FROM notes") == [(60,)]
    assert database.open_connections() <= 2 * core_db.IDLE_CONNECTIONS


def test_a_full_database_is_one_line_naming_the_file(database: Database):
    with database.transaction() as tx:  # the page count caps the file, as a full disk would
        tx.execute(f"PRAGMA max_page_count = {tx.value('PRAGMA page_count')}")
    with pytest.raises(DatabaseError, match=r"cannot use the database .*mat\.db.*full"):
        with database.transaction() as tx:
            tx.executemany("INSERT INTO notes (text) VALUES (?)", [("x" * 4000,)] * 100)


def test_a_database_whose_folder_cannot_exist_is_one_line_naming_it(tmp_path: Path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(DatabaseError, match="cannot use the database .*not-a-folder/mat.db"):
        Database(blocker / "mat.db")
