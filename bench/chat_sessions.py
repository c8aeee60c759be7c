"""The app's memory against the number of browser sessions: one chat per session, many sessions.

The app (`python app.py`, its own process) answers chats from a local OpenAI-compatible server with scripted
replies (tests/support/openai_server.py); gradio_client opens a fresh session for each chat, as a new visitor's
page would. The app's resident memory (VmRSS, its sandbox workers not counted) is read every `--every` sessions.
Beyond the session cap (MAT_SESSIONS) the oldest sessions' state is dropped, so memory should level off.

    python bench/chat_sessions.py [--sessions 1000] [--every 100] [--cap 200]

The last line is JSON: RSS (MB) per number of sessions, and the growth over the last half of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DONE = "Thought: I know it.\nCode:\n```py\nfinal_answer('42')\n```<end_action>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def connect(url: str, app: subprocess.Popen):
    from gradio_client import Client

    deadline = time.monotonic() + 120
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001 — not up yet
            if app.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the app did not start (exit code {app.poll()})") from None
            time.sleep(0.5)


def main() -> None:
    from tests.support.openai_server import FakeOpenAI

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--cap", type=int, default=None, help="MAT_SESSIONS (default: the app's own)")
    args = parser.parse_args()

    port = free_port()
    with FakeOpenAI(responder=lambda body: DONE) as server, tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "MAT_DATA_DIR": data, "MAT_BASE_URL": server.url, "MAT_API_KEY": "sk-bench",
               "MAT_MODEL": "mat-test", "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1"}
        if args.cap is not None:
            env["MAT_SESSIONS"] = str(args.cap)
        app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            client = connect(f"http://127.0.0.1:{port}/", app)
            figures, started, errors = [(0, round(rss_mb(app.pid), 1))], time.monotonic(), 0
            print(f"{'sessions':>9} {'RSS MB':>8} {'chats/s':>8}", flush=True)
            for number in range(1, args.sessions + 1):
                client.reset_session()
                try:
                    history = client.predict({"text": f"What is six times seven? ({number})", "files": []}, [],
                                             "mat-test (endpoint)", "mat", 4, "", api_name="/chat")[0]
                    errors += "Final answer:** 42" not in str(history[-1])
                except Exception as exc:  # noqa: BLE001 — counted, and the run goes on
                    errors += 1
                    print(f"session {number}: {type(exc).__name__}: {exc}", flush=True)
                if number % args.every == 0:
                    figures.append((number, round(rss_mb(app.pid), 1)))
                    print(f"{number:>9} {figures[-1][1]:>8} {number / (time.monotonic() - started):>8.2f}", flush=True)
        finally:
            app.terminate()
            app.wait(timeout=30)
    half = [mb for n, mb in figures if n >= args.sessions // 2]
    print(json.dumps({"sessions": args.sessions, "cap": args.cap or "default", "errors": errors,
                      "rss_mb": figures, "growth_last_half_mb": round(half[-1] - half[0], 1),
                      "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
