"""The training package's own columns of a run, beside the shared run record (`core.runs`)."""

from __future__ import annotations

import core.runs  # noqa: F401 — the shared `runs` table comes first
from core.db import register

TRAIN_MIGRATIONS: list[str] = [
    # 1: one row per training run: where its data came from, its config, where its outputs and metrics are.
    """
    CREATE TABLE train_runs (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        status TEXT NOT NULL,
        base_model TEXT NOT NULL,
        data TEXT NOT NULL,
        examples INTEGER,
        out_dir TEXT NOT NULL,
        adapter_dir TEXT,
        merged_dir TEXT,
        metrics_path TEXT NOT NULL,
        config TEXT NOT NULL,
        steps_done INTEGER NOT NULL DEFAULT 0,
        steps_total INTEGER,
        last_loss REAL,
        job_id TEXT,
        message TEXT
    );
    CREATE INDEX train_runs_created ON train_runs(created_at);
    """,
    # 2: what every run has (status, progress, folder, config, times) moves to the shared `runs` table.
    """
    INSERT OR IGNORE INTO runs (id, kind, config, status, done, total, folder, job_id, message, started_at, ended_at)
        SELECT id, 'train', config, CASE WHEN status IN ('running', 'done', 'failed', 'stopped') THEN status
               ELSE 'failed' END, steps_done, steps_total, out_dir, job_id, COALESCE(message, ''), created_at,
               CASE WHEN status = 'running' THEN NULL ELSE updated_at END
        FROM train_runs;
    CREATE TABLE train_runs_new (
        id TEXT PRIMARY KEY REFERENCES runs(id),
        base_model TEXT NOT NULL,
        data TEXT NOT NULL,
        examples INTEGER,
        adapter_dir TEXT,
        merged_dir TEXT,
        metrics_path TEXT NOT NULL,
        last_loss REAL
    );
    INSERT INTO train_runs_new SELECT id, base_model, data, examples, adapter_dir, merged_dir, metrics_path, last_loss
        FROM train_runs;
    DROP TABLE train_runs;
    ALTER TABLE train_runs_new RENAME TO train_runs;
    """,
]
register("train", TRAIN_MIGRATIONS)
