"""Evaluation tables: one row per run, one per (run, task). Keyed so that a killed run resumes where it stopped."""

from __future__ import annotations

from core.db import register

EVAL_MIGRATIONS: list[str] = [
    """
    CREATE TABLE eval_runs (
        id TEXT PRIMARY KEY,
        benchmark TEXT NOT NULL CHECK (benchmark IN ('gta', 'gaia')),
        data TEXT NOT NULL,
        split TEXT NOT NULL DEFAULT '',
        profile TEXT NOT NULL,
        model TEXT NOT NULL,
        adapter TEXT NOT NULL DEFAULT '',
        config TEXT NOT NULL,
        total INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'stopped')),
        message TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE eval_results (
        run_id TEXT NOT NULL REFERENCES eval_runs(id),
        task_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        kind TEXT NOT NULL,
        level TEXT NOT NULL DEFAULT '',
        question TEXT NOT NULL,
        truth TEXT NOT NULL,
        gt_tools TEXT NOT NULL DEFAULT '[]',
        prediction TEXT,
        reformatted TEXT,
        status TEXT NOT NULL CHECK (status IN ('done', 'timeout', 'error')),
        error TEXT NOT NULL DEFAULT '',
        trajectory_id TEXT,
        steps INTEGER NOT NULL DEFAULT 0,
        code_steps INTEGER NOT NULL DEFAULT 0,
        code_ok INTEGER NOT NULL DEFAULT 0,
        tools TEXT NOT NULL DEFAULT '[]',
        seconds REAL NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        finished_at TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id)
    );
    """,
    # 2: GTA's step-by-step mode (eval.stepwise): a run's mode, and one row per predicted step.
    """
    ALTER TABLE eval_runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'end-to-end';
    CREATE TABLE eval_steps (
        run_id TEXT NOT NULL REFERENCES eval_runs(id),
        task_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        gt_kind TEXT NOT NULL,
        gt_name TEXT NOT NULL DEFAULT '',
        gt_args TEXT NOT NULL DEFAULT '{}',
        pred_kind TEXT NOT NULL,
        pred_name TEXT NOT NULL DEFAULT '',
        pred_args TEXT NOT NULL DEFAULT '{}',
        pred_answer TEXT,
        model_output TEXT NOT NULL,
        PRIMARY KEY (run_id, task_id, idx)
    );
    """,
]
register("eval", EVAL_MIGRATIONS)
