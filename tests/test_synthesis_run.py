"""Synthesis runs end to end against a local OpenAI-compatible server: all stages into the store,
transient failures retried, persistent ones recorded per task, the Batch API, escaping code contained."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time
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


def test_an_endpoint_that_cannot_be_used_is_refused_before_the_run_is_recorded(tmp_path, capsys):
    db = tmp_path / "mat.db"
    started = time.monotonic()
    code = main(["run", "--tasks", "2", "--db", str(db), "--base-url", "http://127.0.0.1:9/v1", "--embedder", "hash"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started <= 15
    assert err.startswith("error: cannot reach http://127.0.0.1:9/v1") and len(err.strip().splitlines()) == 1
    with silent_server() as url:  # accepts connections, never answers
        code = main(["run", "--tasks", "2", "--db", str(db), "--base-url", url, "--timeout", "2"])
    assert code == 2 and f"{url} did not answer within 2 s" in capsys.readouterr().err
    # No key and no URL: refused before anything is stored, so `resume` has nothing half-made to pick up.
    assert main(["run", "--tasks", "2", "--db", str(db)]) == 2
    assert capsys.readouterr().err.startswith("error: no endpoint and no API key")
    assert rows(db, "SELECT COUNT(*) FROM runs") == [(0,)]
    assert main(["resume", "--db", str(db)]) == 2
    assert "no synthesis run" in capsys.readouterr().err


def test_a_bad_corpus_says_why_in_one_line(tmp_path, capsys):
    (tmp_path / "corpus").mkdir()
    assert main(["run", "--tasks", "2", "--db", str(tmp_path / "mat.db"), "--images", str(tmp_path / "corpus")]) == 2
    assert capsys.readouterr().err.strip().endswith("no .json or .jsonl caption file in the folder")


@contextlib.contextmanager
def silent_server():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


def test_a_trajectory_stores_the_plot_its_agent_saved_not_a_same_named_file_elsewhere(tmp_path, server,
                                                                                     monkeypatch):
    from PIL import Image

    server.agent_code = "from PIL import Image\nImage.new('RGB', (32, 32), 'red').save('plot.png')\nprint('saved')"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    Image.new("RGB", (8, 8), "blue").save(elsewhere / "plot.png")
    monkeypatch.chdir(elsewhere)  # where a bare-name lookup would find the wrong plot
    db = tmp_path / "mat.db"
    assert synthesize(db, server, "--no-replay", tasks=1) == 0
    store = Store(db)
    (row,) = store.query(Filters()).rows
    plots = [ref for ref in store.detail(row.id).images if ref.name == "plot.png"]
    assert len(plots) == 1 and plots[0].path is not None
    with Image.open(plots[0].path) as stored:
        assert stored.size == (32, 32) and stored.convert("RGB").getpixel((0, 0)) == (255, 0, 0)


def test_the_embedder_loads_while_the_first_requests_are_in_flight(tmp_path, server, monkeypatch):
    from synthesis.embed import HashEmbedder

    loading: list[float] = []

    def slow_embedder(spec):
        loading.append(time.monotonic())
        time.sleep(1.0)
        return HashEmbedder()

    monkeypatch.setattr("synthesis.embed.get_embedder", slow_embedder)
    server.latency = 2.0

    def quicken():  # only the first requests are slow: the rest of the run need not wait
        while not server.received:
            time.sleep(0.01)
        server.latency = 0.0

    threading.Thread(target=quicken, daemon=True).start()
    assert synthesize(tmp_path / "mat.db", server, "--no-replay", tasks=1) == 0
    assert loading and server.received
    # The load began before the first answer was back (it came 2 s after the first request arrived).
    assert loading[0] < server.received[0] + 1.0, (loading[0] - server.received[0])


def test_batch_requests_cost_the_batch_rate_and_an_unpriced_model_says_so(tmp_path, server, capsys):
    from synthesis.costs import Prices

    prices = Prices()
    assert prices.cost("gpt-4o-2024-08-06", 10**6, 0) == prices.cost("gpt-4o", 10**6, 0) == 2.5
    assert prices.cost("gpt-4o-mini-2024-07-18", 0, 10**6) == 0.6
    assert prices.cost("gpt-4o", 10**6, 10**6, batch=True) == pytest.approx(6.25)
    assert prices.cost("my-local-model", 10**6, 10**6) is None

    db = tmp_path / "mat.db"
    assert synthesize(db, server, "--batch", "--batch-window", "0.2", "--no-replay", tasks=1) == 0
    for via, tokens_in, tokens_out, cost in rows(db, "SELECT via, input_tokens, output_tokens, cost FROM synthesis_requests"):
        live = prices.cost("gpt-4o-mini", tokens_in, tokens_out)
        assert cost == pytest.approx(live / 2 if via == "batch" else live)

    other = tmp_path / "other.db"
    assert synthesize(other, server, "--model", "my-local-model", "--no-replay", tasks=1) == 0
    capsys.readouterr()
    assert main(["status", "--db", str(other)]) == 0
    out = capsys.readouterr().out
    assert "cost unpriced" in out and "$0.0000" not in out
