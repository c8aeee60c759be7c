"""Review's step sampler: SPORT's beam (rkoonireddy/SPORT-Agents, arXiv 2504.21561) with a person as the ranker.

At a chosen step of a trajectory, `sample` asks a model for K candidate next steps after the same prefix, through
the agent loop itself (`agent.loop.run`), so each request is the one renderer's: exactly what the agent is served
at that step. Each candidate runs in a fresh sandbox that `agent.replay` brought to the prefix's state, so its
observation is what its code really gives there. A judge suggests a ranking: a model, with the prompt in
`prompts/sampler_judge.txt`, or, where no model can judge, a heuristic (a step that ran without error before one
that failed, then the order sampled); the sample says which ranked it and why. The recorded step stands beside
the candidates, so a person may prefer it or reject it too.

The person picks the best and may mark others bad; `record_pick` stores that as a `preference` event (nothing
else changes), from which `review.pairs` derives the `sampler` pairs. `continue_from` runs the agent on from the
pick and stores the run as a new curation trajectory whose id names the trajectory and the pick it came from.
"""

from __future__ import annotations

import copy
import re
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.steps import Step, Trajectory
from core import defaults
from core.errors import UserError
from review.errors import StoreError
from review.pairs import unrenderable

if TYPE_CHECKING:
    from agent.config import Settings
    from agent.models import Choice, Model
    from review.store import Detail, Event, ImageRef, Store

MAX_K = defaults.SAMPLER_MAX_K
RECORDED = "recorded"  # the trajectory's own step, shown and ranked beside the sampled ones
HEURISTIC = "heuristic: ran without error first"  # the judge choice that asks no model
JUDGE_PROMPT = Path(__file__).with_name("prompts") / "sampler_judge.txt"
SAMPLES = "samples"  # data/samples/<id>: the images each candidate's code saved
Report = Callable[[str, str], None]  # (candidate label, what it is doing), for progress


@dataclass
class Candidate:
    """A candidate step as it ran: `images` maps each image its code saved to a kept copy."""

    label: str
    step: Step
    images: dict[str, str] = field(default_factory=dict)
    replay: str = ""  # how the prefix replayed in its sandbox

    @property
    def failed(self) -> bool:
        return self.step.error is not None


@dataclass
class Sample:
    """K candidates at one step (`step` counts from 0) after `context`, ranked; kept by the page until a pick."""

    id: str
    trajectory_id: str
    step: int
    context: Trajectory
    model: str
    candidates: list[Candidate]
    ranking: list[str]
    ranked_by: str
    failures: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [candidate.label for candidate in self.candidates]

    def candidate(self, label: str) -> Candidate:
        found = next((candidate for candidate in self.candidates if candidate.label == label), None)
        if found is None:
            raise StoreError(f"this sample has no candidate {label!r}: pick one of {', '.join(self.labels)}")
        return found


# ---------------------------------------------------------------- sampling


def check_request(settings: Settings, k: Any, model: str | None) -> tuple[int, Choice]:
    """K and the model to sample from, refused in one line before anything runs."""
    from agent.models import choice_named

    if isinstance(k, bool) or not isinstance(k, (int, float)) or k != int(k) or not 1 <= k <= MAX_K:
        raise StoreError(f"K is how many candidates to sample: a whole number from 1 to {MAX_K}, not {k}")
    if not (model or "").strip():
        raise StoreError("no model is configured to sample from: add one in the Settings tab (or set MAT_MODEL "
                         "with MAT_BASE_URL, or MAT_LOCAL_MODEL), or pick the tiny smoke model")
    return int(k), choice_named(settings, model.strip())


def prefix_at(store: Store, trajectory_id: str | None, step: Any) -> tuple[Detail, int, Trajectory]:
    """The trajectory, the step's index and the prefix before it (as the reviewer left it); refused when the
    prompt at that step no longer renders or its files are gone."""
    from agent.replay import task_files
    from review.actions import step_index

    if not trajectory_id:
        raise StoreError("open a trajectory first (select a row or press n)")
    try:
        detail = store.detail(trajectory_id)
    except KeyError:
        raise StoreError(f"no trajectory {trajectory_id!r}") from None
    index = step_index(step, detail)
    prefix = replace(detail.trajectory, steps=copy.deepcopy(detail.trajectory.steps[:index]))
    problem = unrenderable(prefix, task_refs(detail, prefix))
    if problem is not None:
        raise StoreError(f"cannot sample at step {index + 1} of {detail.id}: its prompt no longer renders ({problem})")
    task_files(prefix, stored_files(detail))  # FilesMissing, before any sandbox starts
    return detail, index, prefix


def sample(store: Store, settings: Settings, trajectory_id: str | None, step: Any, k: Any, model: str | None,
           judge: str | None = HEURISTIC, report: Report | None = None) -> Sample:
    """Sample `k` candidates at `step` (counted from 1, as shown) of `trajectory_id` with the picker's `model`,
    each run in its own sandbox, in parallel; `judge` (a model's label, or HEURISTIC) suggests the ranking."""
    from agent.models import load_choice

    k, choice = check_request(settings, k, model)
    detail, index, prefix = prefix_at(store, trajectory_id, step)
    report = report or (lambda label, text: None)
    sampler = load_choice(settings, choice)
    folder = _new_folder(settings)
    recorded = detail.trajectory.steps[index]
    kept = {ref.name: str(ref.path) for ref in detail.images if ref.path is not None and not ref.missing}
    candidates = [Candidate(RECORDED, recorded, {name: kept[name] for name in recorded.images if name in kept})]
    sampled, failures = {}, []
    with ThreadPoolExecutor(k, thread_name_prefix="sampler") as pool:
        futures = {pool.submit(_candidate, str(n), prefix, recorded.prompt is not None, stored_files(detail), sampler,
                               choice, settings, folder / f"c{n}", report): str(n) for n in range(1, k + 1)}
        for future in as_completed(futures):
            label = futures[future]
            try:
                sampled[label] = future.result()
            except UserError as exc:
                failures.append(f"candidate {label}: {exc}")
                report(label, f"failed: {exc}")
    if not sampled:
        raise StoreError(f"no candidate could be sampled ({failures[0]})")
    candidates += [sampled[label] for label in sorted(sampled, key=int)]
    ranking, ranked_by = rank(candidates, prefix, *_judge(settings, judge),
                              images=[str(p) for p in _task_images(detail, prefix)])
    return Sample(folder.name, detail.id, index, prefix, choice.label, candidates, ranking, ranked_by, failures)


def _candidate(label: str, prefix: Trajectory, ask: bool, files: dict[str, Path], model: Model, choice: Choice,
               settings: Settings, workdir: Path, report: Report) -> Candidate:
    """One candidate: the prefix replayed in a fresh sandbox, then one turn of the agent loop there."""
    from agent.loop import Delta
    from agent.replay import replay
    from agent.sandbox import Limits
    from agent.session import AgentRun, loop_limits, tool_models

    report(label, "replaying the prefix's code in a fresh sandbox")
    vlm, llm = tool_models(settings, model, tiny=choice.tiny)
    state = replay(prefix, files, workdir, profile=settings.profile, vlm=vlm, llm=llm,
                   limits=Limits(step_seconds=settings.step_timeout, memory_mb=settings.memory_mb))
    run = AgentRun(trajectory=copy.deepcopy(prefix), workdir=workdir, attachments=state.attachments,
                   sandbox=state.sandbox)
    # The loop's own limits make it write exactly this step: the next one, or (where the loop asked for an answer
    # at this step) its answer to that request.
    limits = loop_limits(settings, len(prefix.steps) + (0 if ask else 1), tiny=choice.tiny)
    step = None
    try:
        report(label, "the model is writing")
        for event in run.steps(model, limits):
            if isinstance(event, Delta):
                report(label, f"the model is writing ({len(event.text)} characters so far)")
                continue
            step = event
            break
    finally:
        run.close()
        shutil.rmtree(workdir, ignore_errors=True)
    if step is None:
        raise StoreError("the model wrote no step")
    report(label, "done: " + ("its code failed" if step.error is not None else "ran without error"))
    return Candidate(label, step, {name: str(path) for name, path in run.kept.items()}, state.summary())


# ---------------------------------------------------------------- the suggested ranking


def _judge(settings: Settings, label: str | None) -> tuple[Model | None, str]:
    """(the judge model, or None, with why none judges)."""
    from agent.models import ModelError, choice_named, load_choice

    if not label or label == HEURISTIC:
        return None, "no judge model was chosen"
    try:
        choice = choice_named(settings, label)
        if choice.tiny:
            return None, "the tiny smoke model cannot judge"
        return load_choice(settings, choice), choice.label
    except ModelError as exc:
        return None, f"the judge model could not be loaded: {exc}"


def rank(candidates: list[Candidate], prefix: Trajectory, judge: Model | None, name: str,
         images: list[str] = ()) -> tuple[list[str], str]:
    """(labels best first, what ranked them): the judge's ranking when it gives a complete one, else the
    heuristic, with why."""
    from agent.models import Message, ModelError

    labels = [candidate.label for candidate in candidates]
    why = name
    if judge is not None:
        try:
            reply = judge.generate([Message("user", judge_prompt(prefix, candidates), images=list(images))],
                                   max_new_tokens=defaults.MAX_NEW_TOKENS).text
        except ModelError as exc:
            why = f"the judge failed: {exc}"
        else:
            ranking = parse_ranking(reply, labels)
            if ranking is not None:
                return ranking, f"{name} as judge (prompt review/prompts/{JUDGE_PROMPT.name})"
            why = "the judge's answer named no complete ranking"
    ordered = sorted(candidates, key=lambda candidate: (candidate.failed, labels.index(candidate.label)))
    return ([candidate.label for candidate in ordered],
            f"the heuristic: a step that ran without error before one that failed, then the order sampled ({why})")


def judge_prompt(prefix: Trajectory, candidates: list[Candidate]) -> str:
    history = "\n\n".join(f"Step {step.index + 1}:\n{_step_text(step)}" for step in prefix.steps) or "(nothing yet)"
    shown = "\n\n".join(f"Candidate {candidate.label}:\n{_step_text(candidate.step)}" for candidate in candidates)
    example = " > ".join(candidate.label for candidate in candidates)
    return JUDGE_PROMPT.read_text().format(task=prefix.task.text, history=history, candidates=shown,
                                           example=example).strip()


def _step_text(step: Step, limit: int = 800) -> str:
    """A step as the judge reads it: its turn, then what running it gave (long outputs cut)."""
    result = step.error if step.error is not None else (
        f"final answer: {step.final_answer}" if step.is_final else step.observation or "")
    label = "Error" if step.error is not None else "Observation"
    result = result if len(result) <= limit else result[:limit] + " [...]"
    return f"{step.model_output.strip()}\n{label}: {result.strip()}"


def parse_ranking(reply: str, labels: list[str]) -> list[str] | None:
    """The judge's last `Ranking:` line as labels, best first; None unless it names each label exactly once."""
    lines = [line for line in reply.splitlines() if "ranking:" in line.lower()]
    if not lines:
        return None
    named = re.findall(r"[A-Za-z]+|\d+", lines[-1].lower().split("ranking:", 1)[1])
    ranking = [name for name in named if name in labels]
    return ranking if sorted(ranking) == sorted(labels) else None


# ---------------------------------------------------------------- the pick


def pick_payload(sample: Sample, best: str | None, bad: list[str] | None) -> dict[str, Any]:
    """The `preference` event's payload: what was sampled after which prefix, and what the person chose."""
    if not best:
        raise StoreError("pick the best step first (its number on the keyboard, 0 for the recorded one)")
    sample.candidate(best)
    marked = set(bad or ())
    for label in marked:
        sample.candidate(label)
    if best in marked:
        raise StoreError(f"candidate {best} cannot be both the best and marked bad")
    return {"sample": sample.id, "step": sample.step, "context": sample.context.to_conversations(),
            "model": sample.model, "ranking": sample.ranking, "ranked_by": sample.ranked_by, "best": best,
            "bad": [label for label in sample.labels if label in marked],
            "candidates": [{"label": candidate.label, "step": _kept_step(candidate.step)}
                           for candidate in sample.candidates]}


def record_pick(store: Store, sample: Sample, reviewer: str, best: str | None, bad: list[str] | None,
                request_id: str | None = None) -> Event:
    """Store the pick as a `preference` event on the sampled trajectory (a retried request records nothing new)."""
    return store.record_preference(sample.trajectory_id, reviewer, pick_payload(sample, best, bad),
                                   request_id=request_id)


def continue_from(store: Store, settings: Settings, sample: Sample, event: Event, report: Report | None = None) -> str:
    """Run the agent on from the picked step, in a sandbox replayed to it, until it answers or runs out of steps;
    store the run as a new pending curation trajectory (source `sampler`, id `<trajectory>~pick<event>`)."""
    from agent.models import choice_named, load_choice
    from agent.replay import replay
    from agent.sandbox import Limits
    from agent.session import AgentRun, loop_limits, tool_models

    report = report or (lambda label, text: None)
    picked = sample.candidate(event.payload["best"])
    if picked.label == RECORDED:
        raise StoreError("the recorded step was picked: the trajectory itself goes on from it")
    detail = store.detail(sample.trajectory_id)
    choice = choice_named(settings, sample.model)
    model = load_choice(settings, choice)
    trajectory = copy.deepcopy(sample.context)
    trajectory.steps.append(copy.deepcopy(picked.step))
    workdir = Path(_folder(settings) / sample.id / "continued")
    images = {**stored_files(detail), **{name: Path(path) for name, path in picked.images.items()}}
    if not picked.step.is_final:
        report("continued", "replaying the prefix and the pick in a fresh sandbox")
        vlm, llm = tool_models(settings, model, tiny=choice.tiny)
        state = replay(trajectory, stored_files(detail), workdir, profile=settings.profile, vlm=vlm, llm=llm,
                       limits=Limits(step_seconds=settings.step_timeout, memory_mb=settings.memory_mb))
        run = AgentRun(trajectory=trajectory, workdir=workdir, attachments=state.attachments, sandbox=state.sandbox)
        try:
            for step in run.steps(model, loop_limits(settings, tiny=choice.tiny)):
                if isinstance(step, Step):
                    report("continued", f"step {step.index + 1} done")
        finally:
            run.close()
            shutil.rmtree(workdir, ignore_errors=True)
        images.update(run.kept)
    return store.add_trajectory(trajectory, source="sampler", record_id=continuation_id(sample.trajectory_id, event.id),
                                image_files=images)


def continuation_id(trajectory_id: str, event_id: int) -> str:
    """The record id of the trajectory continued from a pick: it names where it came from."""
    return f"{trajectory_id}~pick{event_id}"


# ---------------------------------------------------------------- helpers


def task_refs(detail: Detail, trajectory: Trajectory) -> list[ImageRef | None]:
    by_name = {ref.name: ref for ref in detail.images}
    return [by_name.get(name) for name in trajectory.task.images]


def stored_files(detail: Detail) -> dict[str, Path]:
    """The store's copy of each file the trajectory names that is there."""
    return {ref.name: ref.path for ref in detail.images if ref.path is not None and not ref.missing}


def _task_images(detail: Detail, trajectory: Trajectory) -> list[Path]:
    return [ref.path for ref in task_refs(detail, trajectory) if ref is not None and ref.path is not None]


def _kept_step(step: Step) -> dict[str, Any]:
    """A step as a pick keeps it: what the model wrote and what running it gave."""
    kept = step.to_dict()
    for name in ("files", "input_tokens", "output_tokens", "seconds"):
        kept.pop(name, None)
    return kept


def _folder(settings: Settings) -> Path:
    return settings.data_dir / SAMPLES


def _new_folder(settings: Settings) -> Path:
    """A fresh folder for a sample's images; only the newest MAT_KEEP_RUNS samples' folders are kept."""
    root = _folder(settings)
    folder = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    for old in sorted((p for p in root.iterdir() if p.is_dir()), reverse=True)[settings.keep_runs:]:
        shutil.rmtree(old, ignore_errors=True)
    return folder
