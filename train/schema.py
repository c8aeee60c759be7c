"""The training package's tables in the shared store (`review.schema.migrate(conn, "train", TRAIN_MIGRATIONS)`)."""

from __future__ import annotations

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
]
