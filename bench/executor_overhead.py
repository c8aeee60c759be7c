"""Median time of a warm sandboxed step vs smolagents' LocalPythonExecutor on the same 10-line snippets.

    python bench/executor_overhead.py [--iterations 300] [--sandbox bwrap|fallback]

Ours is the full round trip the agent loop pays: Sandbox.run (frame out, exec in the
worker, frame back, the working directory scanned for new files). The peer is an
in-process AST interpreter. The last line is JSON for scripts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SNIPPETS = {
    "arithmetic": "a = 17\nb = 5\nc = a * b + a // b\nd = c % 7\ne = c ** 2\nf = e - d\ng = f / 3\nh = round(g, 2)\ni = abs(-h)\nresult = i",
    "list comp": "xs = [i * i for i in range(20)]\nevens = [x for x in xs if x % 2 == 0]\ntotal = sum(evens)\nbig = max(xs)\n"
                 "small = min(xs)\nspan = big - small\nmean = total / len(evens)\nresult = (span, mean)\nlabel = str(result)\nn = len(label)",
    "dict": "counts = {}\nfor word in 'the cat and the hat and the bat'.split():\n    counts[word] = counts.get(word, 0) + 1\n"
            "top = max(counts, key=counts.get)\nkeys = sorted(counts)\nvalues = list(counts.values())\nresult = (top, keys[0])\n"
            "size = len(counts)\nhas_cat = 'cat' in counts\nflag = has_cat and size > 2",
    "strings": "name = 'Multi-modal Agent Tuning'\nwords = name.split()\ninitials = ''.join(w[0] for w in words)\nlower = name.lower()\n"
               "dashes = lower.replace(' ', '-')\ncount = lower.count('a')\ntitle = f'{initials}: {count}'\nparts = title.partition(':')\n"
               "left = parts[0].strip()\nresult = left * 2",
    "function": "def area(w, h):\n    return w * h\n\ndef perimeter(w, h):\n    return 2 * (w + h)\n\nshapes = [(3, 4), (5, 6)]\n"
                "areas = [area(w, h) for w, h in shapes]\nresult = sum(areas) + perimeter(1, 2)",
    "sort": "people = [('ann', 31), ('bob', 25), ('cy', 40), ('dee', 25)]\nby_age = sorted(people, key=lambda p: p[1])\n"
            "youngest = by_age[0][0]\noldest = by_age[-1][0]\nages = [p[1] for p in people]\nages.sort(reverse=True)\n"
            "median = ages[len(ages) // 2]\nnames = ','.join(p[0] for p in by_age)\nresult = (youngest, oldest, median)\nn = len(names)",
    "try/except": "values = ['3', 'x', '5', '']\nparsed = []\nfor v in values:\n    try:\n        parsed.append(int(v))\n"
                  "    except ValueError:\n        parsed.append(0)\ntotal = sum(parsed)\nresult = total",
    "math": "import math\nr = 2.5\ncircle = math.pi * r ** 2\nhyp = math.hypot(3, 4)\nang = math.degrees(math.atan2(1, 1))\n"
            "fl = math.floor(circle)\nce = math.ceil(circle)\ng = math.gcd(48, 18)\nresult = (fl, ce, hyp, ang, g)",
    "print": "rows = [('a', 1), ('b', 2), ('c', 3)]\nfor name, value in rows:\n    print(name, value)\ntotal = sum(v for _, v in rows)\n"
             "print('total', total)\nlabel = 'done'\nprint(label)\nwidth = 10\nline = '-' * width\nprint(line)",
    "while": "n = 27\nsteps = 0\nwhile n != 1 and steps < 30:\n    n = n // 2 if n % 2 == 0 else 3 * n + 1\n    steps += 1\n"
             "peak = n\nresult = steps\nflag = steps >= 30\nmsg = 'capped' if flag else 'reached 1'",
}


def time_runs(run, code: str, iterations: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        run(code)
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        run(code)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--sandbox", choices=["bwrap", "fallback"], default=None, help="level (default: strongest here)")
    args = parser.parse_args()

    from smolagents.local_python_executor import LocalPythonExecutor

    from agent.sandbox import Sandbox

    peer = LocalPythonExecutor(additional_authorized_imports=["math"])
    peer.send_tools({})
    rows, ours_all, peer_all = [], [], []
    with tempfile.TemporaryDirectory() as workdir, Sandbox(Path(workdir), level=args.sandbox) as sandbox:
        for name, code in SNIPPETS.items():
            check = sandbox.run(code)
            if check.error:
                raise SystemExit(f"snippet {name!r} failed in the sandbox: {check.error}")
            ours = time_runs(sandbox.run, code, args.iterations)
            theirs = time_runs(peer, code, args.iterations)
            ours_all += ours
            peer_all += theirs
            rows.append((name, statistics.median(ours), statistics.median(theirs)))
        level = sandbox.level

    print(f"warm step, {args.iterations} iterations per snippet, sandbox: {level}")
    print(f"{'snippet':<12} {'ours p50 ms':>12} {'smolagents p50 ms':>18} {'ratio':>7}")
    for name, ours, theirs in rows:
        print(f"{name:<12} {ours:>12.3f} {theirs:>18.3f} {ours / theirs:>7.2f}")
    ours_p50, peer_p50 = statistics.median(ours_all), statistics.median(peer_all)
    print(f"{'all':<12} {ours_p50:>12.3f} {peer_p50:>18.3f} {ours_p50 / peer_p50:>7.2f}")
    print(json.dumps({"ours_p50_ms": round(ours_p50, 4), "peer_p50_ms": round(peer_p50, 4),
                      "ratio": round(ours_p50 / peer_p50, 3), "sandbox": level}))


if __name__ == "__main__":
    main()
