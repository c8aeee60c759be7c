"""Synthesis runs end to end against a local OpenAI-compatible server: all stages into the store,
transient failures retried, persistent ones recorded per task, the Batch API, escaping code contained."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from review.store import Filters, Store
from synthesis.__main__ import main
from tests.support.synthesis_server import SynthesisServer, last_text


@pytest.fixture
def server():
    with SynthesisServer() as running:
        yield running


def synthesize(db: Path, server: SynthesisServer, *extra: str, tasks: int = 3) -> int:
    return main(["run", "--tasks", str(tasks), "--db", str(db), "--base-url", server.url, "--concurrency", "4",
                 "--embedder", "hash", "--backoff", "0.01", "--timeout", "5", *extra])


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_a_run_fills_review_with_pending_verified_trajectories(tmp_path, server, capsys):
    db = tmp_path / "mat.db"
    assert synthesize(db, server, tasks=4) == 0
    store = Store(db)
    (run_id,) = rows(db, "SELECT id FROM runs WHERE kind = 'synthesis'")[0]
    page = store.query(Filters(source=f"synthesis:{run_id}"))
    assert len(page.rows) == 4
    for row in page.rows:
        detail = store.detail(row.id)
        assert detail.status == "pending" and detail.verdict == "yes"
        assert "query-file verifier: yes" in detail.verdict_reason
        assert detail.trajectory.final_answer == "'8'"
        assert all(ref.path is not None and ref.path.is_file() for ref in detail.images)
    assert rows(db, "SELECT DISTINCT stage, status FROM synthesis_tasks") == [("done", "done")]
    replays = rows(db, "SELECT reproduced, report FROM synthesis_replays")
    assert len(replays) == 4 and all(r[0] == 1 for r in replays)
    # Images came from the demo corpus, documents were written by code that ran in the sandbox.
    files = [f for (text,) in rows(db, "SELECT files FROM synthesis_tasks") for f in json.loads(text)]
    assert any(f["type"] == "image" and f["source"].endswith((".png", ".jpg")) for f in files)
    documents = [Path(p) for (text,) in rows(db, "SELECT paths FROM synthesis_tasks")
                 for p in json.loads(text).values() if p.endswith((".csv", ".txt"))]
    assert documents and all(p.read_text().startswith("fruit,count") for p in documents)
    # Tokens and cost by stage; the default price table knows gpt-4o-mini.
    spend = rows(db, "SELECT stage, SUM(input_tokens), SUM(cost) FROM synthesis_requests GROUP BY stage")
    assert {s for s, _, _ in spend} == {"queries", "describe", "files", "check", "solve", "judge"}
    assert all(tokens > 0 and cost > 0 for _, tokens, cost in spend)
    # The agent saw its task's images where the renderer puts them, as Chat (and a tuned model) would.
    laid_out = [m["content"] for body in server.agent_requests for m in body["messages"]
                if m["role"] == "user" and isinstance(m["content"], list)]
    assert laid_out
    for parts in laid_out:
        assert parts[0]["text"].endswith("Picture 1: ") and parts[1]["type"] == "image_url"
        assert parts[1]["image_url"]["url"].startswith("data:image/") and parts[2]["text"].startswith("\nTask:")
    assert main(["status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "replay    done     4" in out and "cost $" in out


def test_transient_failures_and_timeouts_are_retried(tmp_path, server):
    server.fail_every, server.fail_status = 4, 500
    server.hang_every, server.hang_seconds = 9, 3.0
    db = tmp_path / "mat.db"
    assert synthesize(db, server, "--timeout", "1") == 0
    assert rows(db, "SELECT COUNT(*) FROM synthesis_tasks WHERE status = 'done'") == [(3,)]
    retried = rows(db, "SELECT COUNT(*) FROM synthesis_requests WHERE attempts > 1")[0][0]
    assert retried >= 3


def test_a_persistent_failure_fails_that_task_with_its_reason_and_the_run_goes_on(tmp_path, server):
    server.fail_status = 500
    server.fail_when = lambda body: last_text(body).startswith("You check a trajectory") and "Task 0-0" in last_text(body)
    db = tmp_path / "mat.db"
    synthesize(db, server, "--max-retries", "1")
    failed = rows(db, "SELECT query, error FROM synthesis_tasks WHERE status = 'failed'")
    assert len(failed) == 1 and failed[0][0].startswith("Task 0-0")
    assert failed[0][1].startswith("judge: HTTP 500") and "after 2 tries" in failed[0][1]
    assert rows(db, "SELECT COUNT(*) FROM synthesis_tasks WHERE status = 'done'") == [(2,)]
    # Its trajectory was stored before the judge failed: the reviewer still sees it, without a verdict.
    assert rows(db, "SELECT COUNT(*), COUNT(verdict) FROM trajectories") == [(3, 2)]


def test_one_shot_stages_go_through_the_batch_api(tmp_path, server):
    db = tmp_path / "mat.db"
    assert synthesize(db, server, "--batch", "--batch-window", "0.2") == 0
    via = dict(rows(db, "SELECT stage, GROUP_CONCAT(DISTINCT via) FROM synthesis_requests GROUP BY stage"))
    assert via == {"queries": "batch", "describe": "batch", "check": "batch", "judge": "batch",
                   "files": "live", "solve": "live"}
    assert server.batch_lines == rows(db, "SELECT COUNT(*) FROM synthesis_requests WHERE via = 'batch'")[0][0]
    assert rows(db, "SELECT COUNT(*) FROM synthesis_batches WHERE status = 'done'")[0][0] >= 1
    assert rows(db, "SELECT COUNT(*) FROM trajectories WHERE verdict = 'yes'") == [(3,)]
    assert all(n == 1 for n in server.keys.values())


def test_document_code_that_tries_to_escape_is_contained(tmp_path, server, monkeypatch):
    outside = tmp_path / "escaped.txt"
    monkeypatch.setenv("MAT_API_KEY", "sk-secret-key")
    server.document_code = (
        "import os, socket\n"
        "notes = []\n"
        # The working directory is <db folder>/synthesis/<run>/files/<task>/.make-<i>: climb to the db's folder.
        f"for target in ['../../../../../escaped.txt', {str(outside)!r}]:\n"
        "    try:\n        open(target, 'w').write('out')\n    except OSError:\n        notes.append('refused')\n"
        "try:\n    socket.create_connection(('127.0.0.1', 1), timeout=1)\nexcept OSError:\n    notes.append('no net')\n"
        "open(name, 'w').write(repr(dict(os.environ)) + ' ' + ' '.join(notes))\n"
    )
    db = tmp_path / "mat.db"
    synthesize(db, server, tasks=4)
    assert not outside.exists()
    documents = [Path(p) for (text,) in rows(db, "SELECT paths FROM synthesis_tasks")
                 for p in json.loads(text).values() if p.endswith((".csv", ".txt"))]
    assert documents
    for document in documents:
        text = document.read_text()
        assert "sk-secret-key" not in text
        assert "no net" in text


def test_a_symlink_instead_of_a_document_is_refused(tmp_path, server):
    server.document_code = "import os\nos.symlink('/etc/passwd', name)\n"
    db = tmp_path / "mat.db"
    synthesize(db, server, tasks=4)
    failed = rows(db, "SELECT error FROM synthesis_tasks WHERE status = 'failed'")
    assert failed and all(e.startswith("files: the code did not write") for (e,) in failed)
    assert rows(db, "SELECT COUNT(*) FROM synthesis_tasks WHERE status = 'done'")[0][0] >= 1


def test_an_unreachable_endpoint_and_a_bad_corpus_say_why_in_one_line(tmp_path, capsys):
    db = tmp_path / "mat.db"
    code = main(["run", "--tasks", "2", "--db", str(db), "--base-url", "http://127.0.0.1:9/v1", "--embedder", "hash",
                 "--max-retries", "1", "--backoff", "0.01"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "only 0 distinct queries" in err and "cannot reach http://127.0.0.1:9/v1" in err
    (tmp_path / "corpus").mkdir()
    assert main(["run", "--tasks", "2", "--db", str(db), "--images", str(tmp_path / "corpus")]) == 2
    assert capsys.readouterr().err.strip().endswith("no .json or .jsonl caption file in the folder")
