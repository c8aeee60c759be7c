"""Synthesis throughput against an endpoint of fixed latency: how close the pipeline keeps its request
slots busy. A local OpenAI-compatible server (tests/support/synthesis_server.py, in its own process)
answers every stage after `--latency` seconds; the engine (`python -m synthesis run`, its own process)
runs `--tasks` tasks through all seven stages at `--concurrency`.

    python bench/synthesis_throughput.py [--tasks 1000] [--concurrency 32] [--latency 1.0]

efficiency = achieved requests/s ÷ (concurrency ÷ latency), over the whole run (start-up, the first
queries, and the tail where the last tasks pass their last stages included). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the test server at {url} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--embedder", default="minilm")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.support.synthesis_server", "--port", str(port),
                               "--latency", str(args.latency)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_up(url)
        with tempfile.TemporaryDirectory(prefix="mat-bench-") as folder:
            db = Path(folder) / "mat.db"
            argv = [sys.executable, "-m", "synthesis", "run", "--tasks", str(args.tasks), "--db", str(db),
                    "--base-url", url, "--concurrency", str(args.concurrency), "--embedder", args.embedder,
                    "--reuse-limit", str(args.tasks), "--timeout", str(max(30.0, 10 * args.latency))]
            started, cpu_before = time.perf_counter(), _children_cpu()
            subprocess.run(argv, cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - started
            engine_cpu = _children_cpu() - cpu_before
            with sqlite3.connect(db) as conn:
                requests = conn.execute("SELECT COUNT(*) FROM synthesis_requests WHERE response IS NOT NULL")
                requests = requests.fetchone()[0]
                by_stage = dict(conn.execute("SELECT stage, COUNT(*) FROM synthesis_requests GROUP BY stage"))
                tasks = dict(conn.execute("SELECT status, COUNT(*) FROM synthesis_tasks GROUP BY status"))
                trajectories = conn.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0]
                first, last = conn.execute("SELECT MIN(created), MAX(created) FROM synthesis_requests").fetchone()
    finally:
        server.terminate()
        server.wait()
    server_cpu = _children_cpu() - cpu_before - engine_cpu

    achieved = requests / seconds
    ideal = args.concurrency / args.latency
    # The same figure over the requests' own window (first sent .. last sent + one latency), without the
    # processes' start-up and shutdown: for reference only; `efficiency` is the whole run's.
    window = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() + args.latency
    print(f"{args.tasks} tasks, concurrency {args.concurrency}, latency {args.latency:g} s: "
          f"{requests} requests in {seconds:.1f} s")
    print(f"requests by stage: {by_stage}")
    print(f"tasks: {tasks}; trajectories stored: {trajectories}")
    print(f"CPU seconds: engine (with its sandboxes) {engine_cpu:.1f}, server {server_cpu:.1f}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"achieved {achieved:.2f} requests/s of an ideal {ideal:.2f}: efficiency {achieved / ideal:.3f} "
          f"(over the requests' own window of {window:.1f} s: {requests / window / ideal:.3f})")
    print(json.dumps({"tasks": args.tasks, "concurrency": args.concurrency, "latency_s": args.latency,
                      "requests": requests, "seconds": round(seconds, 2), "requests_per_s": round(achieved, 3),
                      "ideal_requests_per_s": round(ideal, 3), "task_status": tasks, "trajectories": trajectories,
                      "engine_cpu_s": round(engine_cpu, 1), "server_cpu_s": round(server_cpu, 1),
                      "window_efficiency": round(requests / window / ideal, 4), "efficiency": round(achieved / ideal, 4)}))


if __name__ == "__main__":
    main()
