"""`python -m synthesis run|resume|status|replay`: the synthesis engine from the terminal.

    python -m synthesis run --tasks 20 --db data/mat.db --base-url http://localhost:8000/v1 --model gpt-4o-mini
    python -m synthesis resume --db data/mat.db [RUN]      # continue a stopped or killed run
    python -m synthesis status --db data/mat.db [RUN] [--json]
    python -m synthesis replay --db data/mat.db --source release   # replay verifier on stored trajectories

The API key comes from MAT_API_KEY or OPENAI_API_KEY, and goes only to the endpoint it was configured for
(MAT_BASE_URL, or api.openai.com when that is unset); a run sent elsewhere gets the key the Synthesize tab was
given beside its URL (MAT_TYPED_API_KEY), or none. Keys are never stored with the run. A run is recorded only
once its endpoint answered.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from core import defaults
from core.errors import UserError
from synthesis.tasks import SynthesisConfig

if TYPE_CHECKING:
    from synthesis.llm import Endpoint


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from core.cli import run_main
    from review.store import Store

    return run_main(lambda: args.handler(Store(args.db), args))


def _run(store, args) -> int:
    from agent.config import Settings
    from core.jobs import progress
    from synthesis.tasks import new_run

    progress(phase="checking the endpoint", run=args.run_id)
    config = SynthesisConfig(tasks=args.tasks, concurrency=args.concurrency,
                             base_url=args.base_url or Settings().base_url, model=args.model,
                             corpus=args.images, threshold=args.threshold, reuse_limit=args.reuse_limit,
                             embedder=args.embedder, seeds=args.seeds, profile=args.profile,
                             max_steps=args.max_steps, timeout=args.timeout, max_retries=args.max_retries,
                             backoff=args.backoff, batch=args.batch, batch_window=args.batch_window,
                             replay=not args.no_replay, prices=args.prices, per_request=args.per_request,
                             dedup=args.dedup)
    _check(config)
    endpoint = _endpoint(config)
    run_id = new_run(store, config, args.run_id)
    print(f"run {run_id} ({config.tasks} tasks) in {store.path}", file=sys.stderr, flush=True)
    return _execute(store, run_id, config, endpoint)


def _resume(store, args) -> int:
    from core.jobs import progress
    from synthesis.tasks import list_runs, run_config

    runs = list_runs(store)
    run_id = args.run or (runs[0].id if runs else None)
    if run_id is None:
        raise UserError(f"no synthesis run in {store.path} to resume")
    config = run_config(store, run_id)
    progress(phase="checking the endpoint", run=run_id)
    endpoint = _endpoint(config)
    if args.retry_failed:
        with store.db.transaction() as tx:
            retried = tx.execute(
                """UPDATE synthesis_tasks SET status = 'active', error = NULL, attempt = attempt + 1
                   WHERE run_id = ? AND status = 'failed'""", (run_id,)).rowcount
        print(f"{retried} failed task(s) get another try", file=sys.stderr)
    if args.concurrency:
        config.concurrency = args.concurrency
    print(f"resuming run {run_id}", file=sys.stderr, flush=True)
    return _execute(store, run_id, config, endpoint)


def _endpoint(config: SynthesisConfig) -> Endpoint:
    """The run's endpoint with the key the key rule allows there, once it has answered (else a refusal)."""
    from agent.config import Settings
    from synthesis.llm import Endpoint, check_endpoint

    api_key = Settings().key_for(config.base_url)
    if not api_key and not config.base_url:
        raise UserError("no endpoint and no API key: give --base-url for a local server, "
                        "or set MAT_API_KEY (or OPENAI_API_KEY) for api.openai.com")
    endpoint = Endpoint(config.base_url, api_key, config.model, timeout=config.timeout,
                        max_retries=config.max_retries, backoff=config.backoff)
    check_endpoint(endpoint)
    return endpoint


def _execute(store, run_id: str, config: SynthesisConfig, endpoint: Endpoint) -> int:
    from synthesis.batch import Batcher
    from synthesis.context import Context
    from synthesis.costs import Prices
    from synthesis.llm import LLM
    from synthesis.pipeline import Pipeline, finish
    from synthesis.status import Monitor, status_lines, run_status
    from synthesis.tasks import set_run_status

    llm = LLM(store, run_id, endpoint, concurrency=config.concurrency, prices=Prices.load(config.prices))
    ctx = Context(store, run_id, config, llm)
    signal.signal(signal.SIGTERM, lambda *_: ctx.stop.set())
    set_run_status(store, run_id, "running")
    ctx.load_in_background()
    batcher = Batcher(ctx).start() if config.batch else None

    def live() -> dict:
        batched = len(batcher.waiting) if batcher is not None else 0
        return {"in_flight": llm.slots.busy + batched, "embedder": ctx.embedder_state}

    try:
        with Monitor(store, run_id, config.tasks, live):
            try:
                note = Pipeline(ctx).run()
            except KeyboardInterrupt:
                ctx.stop.set()
                note = "interrupted"
    finally:
        if batcher is not None:
            batcher.close()
    status = finish(ctx, note)
    final = run_status(store, run_id)
    print("\n".join(status_lines(final)), file=sys.stderr)
    from core.jobs import progress

    progress(status=status, run=run_id, **({"error": final["message"]} if status == "failed" else {}))
    return 0 if status == "done" else 1


def _status(store, args) -> int:
    from synthesis.status import run_status, status_lines
    from synthesis.tasks import list_runs

    runs = list_runs(store)
    if not runs:
        print(f"no synthesis runs in {store.path}")
        return 0
    run_id = args.run or runs[0].id
    status = run_status(store, run_id)
    print(json.dumps(status, indent=1) if args.json else "\n".join(status_lines(status)))
    return 0


def _replay(store, args) -> int:
    from tqdm import tqdm

    from review.store import Filters
    from synthesis.replay import replay_stored

    ids = args.id or [row.id for row in _all_rows(store, Filters(source=args.source))]
    skipped = flagged = 0
    for trajectory_id in tqdm(ids, desc="replay"):
        report = replay_stored(store, trajectory_id, profile=args.profile)
        skipped += bool(report.missing)
        flagged += bool(report.flagged)
        print(f"{trajectory_id}: {report.summary()}")
    print(f"{len(ids) - skipped} replayed, {skipped} skipped (files missing), "
          f"{flagged} with steps that did not reproduce", file=sys.stderr)
    return 0


def _all_rows(store, filters):
    cursor = None
    while True:
        page = store.query(filters, cursor=cursor, limit=200)
        yield from page.rows
        cursor = page.next_cursor
        if not cursor:
            return


def _check(config: SynthesisConfig) -> None:
    if config.tasks < 1:
        raise UserError("--tasks must be at least 1")
    if config.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    if config.corpus:
        from synthesis.corpus import load_corpus

        load_corpus(config.corpus)  # a corpus that cannot be used is refused before anything is paid for


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m synthesis", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(required=True)

    run = sub.add_parser("run", help="start a new run")
    run.add_argument("--tasks", type=int, required=True)
    run.add_argument("--run-id", help="the new run's id (default: date and a random suffix)")
    run.add_argument("--concurrency", type=int, default=8)
    run.add_argument("--images", help="image-caption corpus: folder with a .json/.jsonl caption file (default: demo)")
    run.add_argument("--base-url")
    run.add_argument("--model", default="gpt-4o-mini")
    run.add_argument("--threshold", type=float, default=0.35, help="least caption similarity for an image")
    run.add_argument("--reuse-limit", type=int, default=1, help="tasks that may share one corpus image")
    run.add_argument("--dedup", type=float, default=0.9, help="drop queries at least this similar to an earlier one")
    run.add_argument("--embedder", default="minilm", help="minilm, hash, or a sentence-transformers model")
    run.add_argument("--seeds", help='JSON {"seeds": [...], "topics": [...]} (default: built-in)')
    run.add_argument("--per-request", type=int, default=5, help="queries asked for per request")
    run.add_argument("--profile", default="mat")
    run.add_argument("--max-steps", type=int, default=6)
    run.add_argument("--timeout", type=float, default=defaults.SYNTHESIS_TIMEOUT, help="seconds per request")
    run.add_argument("--max-retries", type=int, default=defaults.SYNTHESIS_RETRIES)
    run.add_argument("--backoff", type=float, default=defaults.BACKOFF)
    run.add_argument("--batch", action="store_true", help="one-shot stages through the OpenAI Batch API")
    run.add_argument("--batch-window", type=float, default=5.0, help="seconds to gather requests into one batch")
    run.add_argument("--no-replay", action="store_true", help="skip the replay verifier")
    run.add_argument("--prices", help='JSON {"model": [input $/1M, output $/1M]}')
    run.set_defaults(handler=_run)

    resume = sub.add_parser("resume", help="continue a run (the latest by default)")
    resume.add_argument("run", nargs="?")
    resume.add_argument("--concurrency", type=int)
    resume.add_argument("--retry-failed", action="store_true", help="give failed tasks another try at their stage")
    resume.set_defaults(handler=_resume)

    status = sub.add_parser("status", help="tasks per stage, failures, tokens and cost")
    status.add_argument("run", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    replay = sub.add_parser("replay", help="replay verifier on stored trajectories (e.g. imported records)")
    replay.add_argument("--id", action="append")
    replay.add_argument("--source")
    replay.add_argument("--profile", default="mat")
    replay.set_defaults(handler=_replay)

    for command in (run, resume, status, replay):
        command.add_argument("--db", required=True, type=Path)
    return parser


if __name__ == "__main__":
    sys.exit(main())
