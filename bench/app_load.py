"""The launched app under a team's load: chat users and reviewers at once, an import running beside them.

The app runs as `python app.py` in its own process, its model a local OpenAI-compatible server whose scripted
replies answer each question with the token the question carries (tests/support/openai_server.py). Then, at once:

- N chat users, each in their own browser session (gradio_client), ask M questions each; every answer must carry
  the asker's own token (an answer with another session's token is cross-session leakage);
- 3 reviewers, each in their own session, take the next pending item and approve it, over and over, for the
  run's duration, while `python -m review import` adds records in another process.

It reports the time to answer (p50, p95), errors, leakage, double decisions (items decided more than once, not a
recorded take-over), and the app's resident memory and open descriptors after warm-up and after each round, with
the browser sessions opened so far (the load runs `--rounds` times on the same app: what still grows shows between
rounds; session state grows until `MAT_SESSIONS`, 200 by default, is reached).

    python bench/app_load.py [--users 16] [--questions 5] [--seconds 60] [--import-records 5000] [--rounds 2]

The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_sessions import connect, free_port, rss_mb  # noqa: E402
from bench.review_store import p95, synthesise  # noqa: E402

MODEL = "mat-test"
TOKEN = re.compile(r"token-\d+-\d+")
REVIEWERS = ("ann", "bob", "cy")


def answer_with_token(body: dict) -> str:
    """The scripted model: a final answer holding the token of the question it was asked."""
    asked = " ".join(part.get("text", "") if isinstance(part, dict) else str(part)
                     for message in body.get("messages", []) if message.get("role") == "user"
                     for part in (message["content"] if isinstance(message["content"], list) else [message["content"]]))
    found = TOKEN.findall(asked)
    return f"Thought: I read it.\nCode:\n```py\nfinal_answer('{found[-1] if found else 'none'}')\n```<end_action>"


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def chat_user(url: str, app, user: int, questions: int, results: dict, lock: threading.Lock) -> None:
    client = connect(url, app)
    for number in range(questions):
        token = f"token-{user}-{number}"
        started = time.perf_counter()
        try:
            history = client.predict({"text": f"Repeat {token} back to me.", "files": []}, [],
                                     f"{MODEL} (endpoint)", "mat", 4, "", api_name="/chat")[0]
        except Exception as exc:  # noqa: BLE001 — counted as an error, and the user goes on
            with lock:
                results["errors"].append(f"user {user}: {type(exc).__name__}: {exc}"[:200])
            continue
        seconds = time.perf_counter() - started
        seen = set(TOKEN.findall(json.dumps(history)))
        with lock:
            results["seconds"].append(seconds)
            if token not in seen:
                results["errors"].append(f"user {user}: no answer with {token}")
            results["leaks"] += len({t for t in seen if not t.startswith(f"token-{user}-")})


def reviewer(url: str, app, name: str, until: float, results: dict, lock: threading.Lock) -> None:
    client = connect(url, app)
    decided = 0
    try:
        client.predict(name, api_name="/review_next_pending")
        while time.monotonic() < until:
            client.predict(name, [], "", True, f"{name}-{decided}-{random.random()}", api_name="/review_approved")
            decided += 1
    except Exception as exc:  # noqa: BLE001 — counted
        with lock:
            results["errors"].append(f"reviewer {name}: {type(exc).__name__}: {exc}"[:200])
    with lock:
        results["decisions"] += decided


def decisions_made(db: Path) -> tuple[int, int]:
    """(decision events, items with more than one decision that no recorded take-over explains)."""
    from core.db import Database

    with Database(db) as database:
        rows = database.read("SELECT trajectory_seq, kind, payload FROM events ORDER BY id")
    decisions: dict[int, int] = {}
    taken_over: set[int] = set()
    for seq, kind, payload in rows:
        if kind == "decision":
            decisions[seq] = decisions.get(seq, 0) + 1
        elif kind == "claim" and payload and "taken_from" in payload:
            taken_over.add(seq)
    doubles = sum(1 for seq, count in decisions.items() if count > 1 and seq not in taken_over)
    return sum(decisions.values()), doubles


def load_round(url: str, app: subprocess.Popen, db: Path, records: Path, args, round_: int, results: dict) -> int:
    """The chat users and the reviewers at once, beside an import of `records`; returns the import's exit code."""
    lock = threading.Lock()
    importing = subprocess.Popen([sys.executable, "-m", "review", "import", str(records), "--db", str(db)],
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until = time.monotonic() + args.seconds
    threads = [threading.Thread(target=chat_user, args=(url, app, round_ * 1000 + user, args.questions, results, lock))
               for user in range(args.users)]
    threads += [threading.Thread(target=reviewer, args=(url, app, name, until, results, lock))
                for name in REVIEWERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return importing.wait()


def main() -> None:
    from tests.support.openai_server import FakeOpenAI
    from tests.support.train_records import sample_records

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the reviewers decide")
    parser.add_argument("--import-records", type=int, default=5000, help="imported during each round")
    parser.add_argument("--rounds", type=int, default=2, help="the load, this many times one after the other")
    args = parser.parse_args()

    rng = random.Random(0)
    templates = sample_records()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with FakeOpenAI(responder=answer_with_token) as server, tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        db = data / "mat.db"
        first = Path(scratch) / "first.json"
        first.write_text(json.dumps(synthesise(templates, 1000, rng)))
        imports = [Path(scratch) / f"import-{n}.json" for n in range(args.rounds)]
        for path in imports:
            path.write_text(json.dumps(synthesise(templates, args.import_records, rng)))
        subprocess.run([sys.executable, "-m", "review", "import", str(first), "--db", str(db)], cwd=ROOT, check=True,
                       capture_output=True)
        env = {**os.environ, "MAT_DATA_DIR": str(data), "MAT_BASE_URL": server.url, "MAT_API_KEY": "sk-bench",
               "MAT_MODEL": MODEL, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1"}
        app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            warm = {"seconds": [], "errors": [], "leaks": 0, "decisions": 0}
            chat_user(url, app, 999, 2, warm, threading.Lock())  # warm-up: first page, first sandbox
            before = {"rss_mb": round(rss_mb(app.pid), 1), "descriptors": descriptors(app.pid)}
            results = {"seconds": [], "errors": [], "leaks": 0, "decisions": 0}
            after, elapsed, import_exits = [], 0.0, []
            for round_ in range(args.rounds):  # the same load again: what is still growing shows between rounds
                started = time.monotonic()
                import_exits.append(load_round(url, app, db, imports[round_], args, round_, results))
                elapsed += time.monotonic() - started
                sessions = 1 + (round_ + 1) * (args.users + len(REVIEWERS))  # one browser session per client
                after.append({"sessions": sessions, "rss_mb": round(rss_mb(app.pid), 1),
                              "descriptors": descriptors(app.pid)})
        finally:
            app.terminate()
            app.wait(timeout=30)
        recorded, doubles = decisions_made(db)
    for error in results["errors"][:10]:
        print(error)
    times = results["seconds"]
    summary = {
        "users": args.users, "questions": args.questions, "answers": len(times),
        "answer_p50_s": round(sorted(times)[len(times) // 2], 2) if times else None,
        "answer_p95_s": round(p95(times), 2) if times else None,
        "errors": len(results["errors"]), "leaks": results["leaks"], "decision_requests": results["decisions"],
        "decisions_recorded": recorded,
        "double_decisions": doubles, "import_records": args.import_records, "import_exits": import_exits,
        "rounds": args.rounds, "seconds": round(elapsed, 1), "before": before, "after_each_round": after,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
