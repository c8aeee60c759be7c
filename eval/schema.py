"""Evaluation tables beside the shared run record (`core.runs`): a run's own columns, one row per (run, task)
and per predicted step. Keyed so that a killed run resumes where it stopped."""

from __future__ import annotations

import core.runs  # noqa: F401 — the shared `runs` table comes first
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
    # 3: what every run has (config, status, progress, times) moves to the shared `runs` table; `eval_runs` keeps
    # evaluation's own columns, and results and steps reference the shared record.
    """
    INSERT OR IGNORE INTO runs (id, kind, config, status, done, total, message, started_at, ended_at)
        SELECT r.id, 'eval', r.config, r.status, (SELECT COUNT(*) FROM eval_results e WHERE e.run_id = r.id),
               r.total, r.message, r.created_at, r.finished_at
        FROM eval_runs r;
    CREATE TABLE eval_runs_new (
        id TEXT PRIMARY KEY REFERENCES runs(id),
        benchmark TEXT NOT NULL CHECK (benchmark IN ('gta', 'gaia')),
        data TEXT NOT NULL,
        split TEXT NOT NULL DEFAULT '',
        profile TEXT NOT NULL,
        model TEXT NOT NULL,
        adapter TEXT NOT NULL DEFAULT '',
        mode TEXT NOT NULL DEFAULT 'end-to-end'
    );
    INSERT INTO eval_runs_new SELECT id, benchmark, data, split, profile, model, adapter, mode FROM eval_runs;
    CREATE TABLE eval_results_new (
        run_id TEXT NOT NULL REFERENCES runs(id),
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
    INSERT INTO eval_results_new SELECT run_id, task_id, position, kind, level, question, truth, gt_tools, prediction,
        reformatted, status, error, trajectory_id, steps, code_steps, code_ok, tools, seconds, input_tokens,
        output_tokens, finished_at FROM eval_results;
    CREATE TABLE eval_steps_new (
        run_id TEXT NOT NULL REFERENCES runs(id),
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
    INSERT INTO eval_steps_new SELECT run_id, task_id, idx, gt_kind, gt_name, gt_args, pred_kind, pred_name, pred_args,
        pred_answer, model_output FROM eval_steps;
    DROP TABLE eval_steps;
    DROP TABLE eval_results;
    DROP TABLE eval_runs;
    ALTER TABLE eval_runs_new RENAME TO eval_runs;
    ALTER TABLE eval_results_new RENAME TO eval_results;
    ALTER TABLE eval_steps_new RENAME TO eval_steps;
    """,
]
register("eval", EVAL_MIGRATIONS)
