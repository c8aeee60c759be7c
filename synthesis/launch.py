"""Synthesis runs started, stopped and resumed from the page, as background jobs (`python -m synthesis ...`).

A run is a job, so it survives a page reload and an app restart. What the job is told about its endpoint
follows the key rule (agent.config): the operator's MAT_API_KEY goes only to the operator's endpoint; a URL
typed in the page gets the key typed beside it, handed over in the job's environment as MAT_TYPED_API_KEY
(never argv, the store or a log), or no key at all. The form's values are the run's config, so the next page
load fills the form with the last run's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from agent.config import TYPED_KEY, Settings, same_endpoint
from core import jobs
from core.errors import UserError
from review.store import Store
from synthesis.tasks import list_runs, new_run_id


@dataclass
class RunRequest:
    """The Synthesize form."""

    base_url: str = ""  # empty: the operator's endpoint (MAT_BASE_URL, or api.openai.com)
    model: str = ""
    tasks: float | None = 10
    concurrency: float = 8
    corpus: str = ""
    seeds: str = ""
    topics: str = ""
    batch: bool = False
    api_key: str = ""  # for the typed endpoint only; never stored


def start_run(settings: Settings, store: Store, request: RunRequest) -> str:
    """Start a run as a job; returns its id."""
    count = int(request.tasks or 0)
    if count < 1:
        raise UserError("Number of tasks must be at least 1.")
    model, url, corpus = request.model.strip(), request.base_url.strip(), request.corpus.strip()
    if not model:
        raise UserError("Give the model to ask (for example gpt-4o-mini).")
    if corpus and not Path(corpus).exists():
        raise UserError(f"Corpus {corpus}: no such folder or caption file.")
    if not (url or settings.base_url) and not (request.api_key.strip() or settings.api_key):
        raise UserError("No endpoint and no API key: give an endpoint URL, or set MAT_API_KEY for api.openai.com.")
    run_id = new_run_id()
    argv = ["-m", "synthesis", "run", "--run-id", run_id, "--db", str(store.path), "--tasks", str(count),
            "--concurrency", str(int(request.concurrency)), "--model", model]
    argv += ["--base-url", url] if url else []
    argv += ["--images", corpus] if corpus else []
    seeds_file = _seeds_file(store, request.seeds, request.topics)
    argv += ["--seeds", str(seeds_file)] if seeds_file else []
    argv += ["--batch"] if request.batch else []
    jobs.start(store.db, "synthesis", argv, env=job_env(settings, url or settings.base_url, request.api_key))
    return run_id


def stop_run(store: Store, run_id: str | None) -> str:
    job = job_for(store, run_id)
    if job is None or not job.running:
        raise UserError("This run is not running.")
    jobs.stop(store.db, job.id)
    return f"Stopping run {run_id}; resume it to continue where it stopped."


def resume_run(settings: Settings, store: Store, run_id: str | None, form: RunRequest) -> str:
    """Resume a run as a new job; the key typed in the form goes along only if the form names the run's endpoint."""
    if not run_id:
        raise UserError("Choose a run to resume.")
    job = job_for(store, run_id)
    if job is not None and job.running:
        raise UserError("This run is already running.")
    runs = {run.id: run for run in list_runs(store)}
    if run_id not in runs:
        raise UserError(f"No run {run_id} in this database.")
    url = runs[run_id].config.get("base_url")
    typed = form.api_key if same_endpoint(form.base_url.strip() or settings.base_url, url) else ""
    jobs.start(store.db, "synthesis", ["-m", "synthesis", "resume", "--db", str(store.path), run_id],
               env=job_env(settings, url, typed))
    return f"Resuming run {run_id}."


def job_for(store: Store, run_id: str | None) -> jobs.Job | None:
    """The latest job that ran (or resumed) this run."""
    if not run_id:
        return None
    return next((job for job in jobs.list_jobs(store.db, "synthesis") if run_id in job.argv), None)


def run_ids(store: Store) -> list[str]:
    """Runs to choose from, newest first: those starting (their job has not recorded them yet), then the recorded."""
    recorded = [run.id for run in list_runs(store)]
    starting = [job.argv[job.argv.index("--run-id") + 1] for job in jobs.list_jobs(store.db, "synthesis")
                if job.running and "--run-id" in job.argv[:-1]]
    return [run_id for run_id in starting if run_id not in recorded] + recorded


def last_request(store: Store) -> RunRequest | None:
    """The form as it was for the latest run (seeds and topics left empty where they were the built-in ones)."""
    from synthesis.queries import load_seeds

    runs = list_runs(store)
    if not runs:
        return None
    config = runs[0].config
    seeds = topics = ""
    if config.get("seeds"):
        try:
            given, named = load_seeds(config["seeds"])
        except UserError:  # the file is gone: the form starts from the built-in ones
            given, named = load_seeds(None)
        builtin_seeds, builtin_topics = load_seeds(None)
        seeds = "" if given == builtin_seeds else "\n".join(given)
        topics = "" if named == builtin_topics else "\n".join(named)
    return RunRequest(base_url=config.get("base_url") or "", model=config.get("model") or "",
                      tasks=config.get("tasks", 10), concurrency=config.get("concurrency", 8),
                      corpus=config.get("corpus") or "", seeds=seeds, topics=topics, batch=bool(config.get("batch")))


def job_env(settings: Settings, url: str | None, typed_key: str) -> dict[str, str]:
    """The job's endpoint settings: the operator's as configured (so the job applies the same key rule), the
    operator's key only when `url` is the operator's endpoint, and a key typed in the page through TYPED_KEY."""
    operators = same_endpoint(url, settings.base_url)
    return {"MAT_BASE_URL": settings.base_url or "", "OPENAI_BASE_URL": "", "OPENAI_API_KEY": "",
            "MAT_API_KEY": (settings.api_key or "") if operators else "", TYPED_KEY: typed_key.strip()}


def _seeds_file(store: Store, seeds: str, topics: str) -> Path | None:
    """The form's seeds and topics as a JSON file beside the store (built-in ones fill what is empty)."""
    from synthesis.queries import load_seeds

    given = [s.strip() for s in (seeds or "").splitlines() if s.strip()]
    named = [t.strip() for t in (topics or "").splitlines() if t.strip()]
    if not given and not named:
        return None
    builtin_seeds, builtin_topics = load_seeds(None)
    text = json.dumps({"seeds": given or builtin_seeds, "topics": named or builtin_topics}, indent=1)
    folder = store.path.parent / "synthesis"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"seeds-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    path.write_text(text)
    return path
