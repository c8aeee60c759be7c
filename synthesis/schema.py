"""Synthesis tables in the shared store (prefixed `synthesis_`), as numbered migrations.

A run's state lives entirely here, so a run killed at any moment resumes from what is stored:
tasks remember the next stage they need, and every LLM request is kept under a stable key
with its response, so a resumed run reads answers back instead of paying for them again.
"""

from __future__ import annotations

import core.runs  # noqa: F401 — the shared `runs` table comes first
from core.db import register

SYNTHESIS_MIGRATIONS: list[str] = [
    # 1: runs, tasks, requests (the pay-once cache), embeddings, image reuse, replay reports, batches.
    """
    CREATE TABLE synthesis_runs (
        id TEXT PRIMARY KEY,
        created TEXT NOT NULL,
        config TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'running',
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE synthesis_tasks (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES synthesis_runs(id),
        n INTEGER NOT NULL,
        stage TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        query TEXT NOT NULL,
        files TEXT NOT NULL DEFAULT '[]',
        paths TEXT NOT NULL DEFAULT '{}',
        query_verdict TEXT,
        query_reason TEXT,
        trajectory_id TEXT,
        verdict TEXT,
        verdict_reason TEXT,
        replay TEXT,
        error TEXT,
        updated TEXT NOT NULL,
        UNIQUE (run_id, n)
    );
    CREATE INDEX synthesis_tasks_run ON synthesis_tasks(run_id, status, stage);
    CREATE TABLE synthesis_requests (
        key TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        stage TEXT NOT NULL,
        task_id TEXT,
        model TEXT NOT NULL,
        request TEXT NOT NULL,
        response TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0,
        via TEXT NOT NULL DEFAULT 'live',
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created TEXT NOT NULL
    );
    CREATE INDEX synthesis_requests_run ON synthesis_requests(run_id, stage);
    CREATE INDEX synthesis_requests_task ON synthesis_requests(task_id);
    CREATE TABLE synthesis_query_batches (
        run_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, n)
    );
    CREATE TABLE synthesis_embeddings (
        key TEXT PRIMARY KEY,
        vector BLOB NOT NULL
    );
    CREATE TABLE synthesis_image_uses (
        run_id TEXT NOT NULL,
        image TEXT NOT NULL,
        task_id TEXT NOT NULL,
        PRIMARY KEY (run_id, image, task_id)
    );
    CREATE TABLE synthesis_replays (
        trajectory_id TEXT PRIMARY KEY,
        checked_at TEXT NOT NULL,
        reproduced INTEGER NOT NULL,
        flagged TEXT NOT NULL,
        report TEXT NOT NULL
    );
    CREATE TABLE synthesis_batches (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        stage TEXT NOT NULL,
        input_file TEXT NOT NULL,
        keys TEXT NOT NULL,
        status TEXT NOT NULL,
        created TEXT NOT NULL
    );
    """,
    # 2: runs move to the shared `runs` table (core.runs); tasks now reference it.
    """
    INSERT OR IGNORE INTO runs (id, kind, config, status, message, started_at, ended_at)
        SELECT id, 'synthesis', config, status, message, created, CASE WHEN status = 'running' THEN NULL ELSE created END
        FROM synthesis_runs;
    CREATE TABLE synthesis_tasks_new (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs(id),
        n INTEGER NOT NULL,
        stage TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        query TEXT NOT NULL,
        files TEXT NOT NULL DEFAULT '[]',
        paths TEXT NOT NULL DEFAULT '{}',
        query_verdict TEXT,
        query_reason TEXT,
        trajectory_id TEXT,
        verdict TEXT,
        verdict_reason TEXT,
        replay TEXT,
        error TEXT,
        updated TEXT NOT NULL,
        UNIQUE (run_id, n)
    );
    INSERT INTO synthesis_tasks_new SELECT * FROM synthesis_tasks;
    DROP TABLE synthesis_tasks;
    DROP TABLE synthesis_runs;
    ALTER TABLE synthesis_tasks_new RENAME TO synthesis_tasks;
    CREATE INDEX synthesis_tasks_run ON synthesis_tasks(run_id, status, stage);
    """,
    # 3: a task's attempt (a retried task asks afresh instead of reading back the answer it failed on), and
    # whether a request's cost is known (a model with no price is "unpriced", not free). Requests stored before
    # this were priced exactly when they cost something or used no tokens.
    """
    ALTER TABLE synthesis_tasks ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE synthesis_requests ADD COLUMN priced INTEGER NOT NULL DEFAULT 1;
    UPDATE synthesis_requests SET priced = 0 WHERE cost = 0 AND input_tokens + output_tokens > 0;
    """,
]
register("synthesis", SYNTHESIS_MIGRATIONS)
