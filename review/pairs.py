"""Step-level preference pairs, derived from the review events: nothing here is typed in by hand.

A pair is a prompt (the trajectory up to one step), a "chosen" step and a "rejected" step, from three sources:

- `edit`: a reviewer's edit of a step's thought or code, still in force, gives a pair at that step: the prompt is
  the trajectory up to the step as the reviewer left it, "chosen" the edited step, "rejected" the original.
- `rejected-vs-approved`: a rejected and an approved trajectory of the same task (same system prompt, task text,
  attachments and pictures by content) that agree up to a step give a pair at the first step where the model's
  turns differ, "chosen" from the approved one. Where their observations part first, the prompts differ from
  there on, and no pair is made.
- `sampler`: a reviewer's pick among candidate next steps sampled at one step (`review.sampler`, recorded as a
  `preference` event; a later pick of the same sample replaces an earlier one): the picked step against each
  candidate marked bad, or, with none marked, against every other candidate (SPORT's best against the rest of
  its beam). The prompt is the prefix the candidates were sampled after, as the event keeps it.

Pairs whose two sides are nearly the same are dropped, and counted, by a rule per source:

- `sampler`: as SPORT drops theirs (rkoonireddy/SPORT-Agents,
  `data_generation/dpo_gta_traj/data_reformat/data_formating.py`): a rejected step whose BLEU against the chosen
  one is 0.3 or more is dropped, unless it failed (an error, or no Thought/Code), which SPORT keeps whatever its
  BLEU. Their BLEU is NLTK's `sentence_bleu([chosen], rejected)` on the two strings, so it counts character
  n-grams (1 to 4, equal weights, brevity penalty, smoothing method 1); `bleu` computes the same. SPORT's 0.3 is
  meant for candidates sampled from one model, which share most of their wording by chance.
- `edit` and `rejected-vs-approved`: a person made the difference on purpose, so only sides that are the same
  text once whitespace is normalized (`normalized`: line-end spaces and blank lines dropped) are dropped: the
  BLEU of the normalized sides reaching SAME_THRESHOLD (1.0, i.e. identical). On the fixture records' steps
  (191 characters at the median) a one-word change of a thought scores 0.979, a one-character fix of code 0.968
  to 0.996, and whitespace-only changes 0.924 to 0.995 before normalizing: no BLEU threshold below 1 keeps the
  small real fixes and drops the whitespace noise, while normalizing first does.

Everything streams: pairs are made one at a time, so deriving them from a 20K-trajectory store holds one task's
trajectories (or one pick) at a time, besides the ids of the approved and rejected ones by task and a 16-byte key
per pair (to drop repeats).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from agent.render import assistant_text, render_messages
from agent.steps import Step, Trajectory

if TYPE_CHECKING:
    from review.store import Detail, ImageRef, Store

SOURCES = ("edit", "rejected-vs-approved", "sampler")
SAMPLED = "sampler"
BLEU_THRESHOLD = 0.3  # SPORT's --blue_threshold default, for sampled candidates
SAME_THRESHOLD = 1.0  # people's pairs: dropped only when identical once whitespace is normalized
_SMOOTHING_EPSILON = 0.1  # NLTK's SmoothingFunction().method1


@dataclass
class Pair:
    """One preference at one step: `context` holds the task and the steps before `step`."""

    source: str
    trajectory_id: str  # where the chosen step is
    rejected_id: str  # where the rejected step is (the same trajectory for an edit)
    step: int
    context: Trajectory
    chosen: Step
    rejected: Step
    images: list[ImageRef | None]  # the task's pictures as stored, in the order the task shows them
    bleu: float = 0.0

    @property
    def id(self) -> str:
        """Stable across runs: where the pair comes from and what its two sides say."""
        text = json.dumps([self.source, self.trajectory_id, self.rejected_id, self.step,
                           self.chosen.model_output, self.rejected.model_output])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """The pair for a person, its step counted from 1 as Review shows it."""
        other = f" against {self.rejected_id}" if self.rejected_id != self.trajectory_id else ""
        return f"the {self.source} pair at step {self.step + 1} of {self.trajectory_id}{other}"

    def trajectory(self, side: str) -> Trajectory:
        """The prompt followed by one side's step, ending there (no observation after it)."""
        step = self.chosen if side == "chosen" else self.rejected
        return replace(self.context, steps=[*self.context.steps, replace(step, is_final=True)])

    def image_paths(self) -> list[str]:
        return [str(ref.path) for ref in self.images if ref is not None]

    def unrenderable(self) -> str | None:
        """Why the prompt can no longer be shown to a model (a picture gone from the store), or None."""
        return unrenderable(self.trajectory("chosen"), self.images)

    def messages(self, images: list[str] | None = None) -> tuple[list[dict], dict, dict]:
        """(prompt messages, chosen message, rejected message) through the one renderer; `images` are the files
        behind the task's pictures (by default the store's)."""
        files = self.image_paths() if images is None else images
        chosen = render_messages(self.trajectory("chosen"), files)
        rejected = render_messages(self.trajectory("rejected"), files)
        return chosen[:-1], chosen[-1], rejected[-1]


@dataclass
class Tally:
    """Pairs kept and dropped, by source: what the Stats view and `python -m review pairs` show."""

    kept: Counter = field(default_factory=Counter)
    near_duplicates: Counter = field(default_factory=Counter)
    repeats: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {source: {"pairs": self.kept[source], "near_duplicates": self.near_duplicates[source],
                         "repeats": self.repeats[source]} for source in SOURCES}


def pair_counts(store: Store, threshold: float = BLEU_THRESHOLD,
                same: float = SAME_THRESHOLD) -> dict[str, dict[str, int]]:
    """{source: {"pairs", "near_duplicates", "repeats"}} for every source, zero where there are none."""
    tally = Tally()
    for _ in iter_pairs(store, threshold=threshold, same=same, tally=tally):
        pass
    return tally.as_dict()


def iter_pairs(store: Store, *, threshold: float = BLEU_THRESHOLD, same: float = SAME_THRESHOLD,
               tally: Tally | None = None) -> Iterator[Pair]:
    """Every pair the review events give, near-duplicates and repeats left out (and counted in `tally`):
    `threshold` is the BLEU that drops a sampler pair, `same` the normalized BLEU that drops a person's pair."""
    tally = tally if tally is not None else Tally()
    seen: set[bytes] = set()
    for pair in _candidates(store):
        key = _content_key(pair)
        if key in seen:
            tally.repeats[pair.source] += 1
            continue
        seen.add(key)
        if nearly_the_same(pair, threshold, same):
            tally.near_duplicates[pair.source] += 1
            continue
        tally.kept[pair.source] += 1
        yield pair


def nearly_the_same(pair: Pair, threshold: float = BLEU_THRESHOLD, same: float = SAME_THRESHOLD) -> bool:
    """Whether the pair is dropped by its source's rule (module docstring); sets `pair.bleu` to the score compared."""
    chosen, rejected = assistant_text(pair.chosen.model_output), assistant_text(pair.rejected.model_output)
    if pair.source == SAMPLED:
        pair.bleu = bleu(chosen, rejected)
        return pair.bleu >= threshold and not failed(pair.rejected)
    pair.bleu = bleu(normalized(chosen), normalized(rejected))
    return pair.bleu >= same


def normalized(text: str) -> str:
    """A step's text without what does not change its meaning to a reader: spaces at line ends, blank lines."""
    return "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())


def _candidates(store: Store) -> Iterator[Pair]:
    yield from edit_pairs(store)
    yield from contrast_pairs(store)
    yield from sampler_pairs(store)


# ---------------------------------------------------------------- edits


def edit_pairs(store: Store) -> Iterator[Pair]:
    """A pair at every step whose thought or code a reviewer edited (edits in force; undone ones are not)."""
    edited = store.db.read(
        """SELECT t.id FROM events e JOIN trajectories t ON t.seq = e.trajectory_seq
           WHERE e.kind = 'edit' AND t.purpose = 'curation' GROUP BY t.seq ORDER BY t.seq""")
    for (trajectory_id,) in edited:
        detail = store.detail(trajectory_id)
        for index, (now, was) in enumerate(zip(detail.trajectory.steps, detail.original.steps, strict=True)):
            if now.model_output != was.model_output:
                yield _pair("edit", detail, detail.id, index, now, was)


# ---------------------------------------------------------------- rejected against approved


def contrast_pairs(store: Store) -> Iterator[Pair]:
    """For each task with both an approved and a rejected trajectory, a pair per (rejected, approved) that share
    a prefix, at the first step where their model turns differ."""
    for ids in _tasks_with_both(store):
        details = {trajectory_id: store.detail(trajectory_id) for group in ids.values() for trajectory_id in group}
        for rejected_id in ids["rejected"]:
            for approved_id in ids["approved"]:
                approved, rejected = details[approved_id], details[rejected_id]
                step = first_difference(approved, rejected)
                if step is not None:
                    yield _pair("rejected-vs-approved", approved, rejected_id, step, approved.trajectory.steps[step],
                                rejected.trajectory.steps[step])


def _tasks_with_both(store: Store) -> Iterator[dict[str, list[str]]]:
    """Trajectory ids by status, per task text, for the texts that have both an approved and a rejected one."""
    groups: dict[str, dict[str, list[str]]] = {}
    for trajectory_id, status, text in store.db.stream(
            """SELECT t.id, t.status, k.text FROM trajectories t JOIN tasks k ON k.id = t.task_id
               WHERE t.purpose = 'curation' AND t.status IN ('approved', 'rejected') ORDER BY t.seq"""):
        groups.setdefault(text, {"approved": [], "rejected": []})[status].append(trajectory_id)
    for ids in groups.values():
        if ids["approved"] and ids["rejected"]:
            yield ids


def first_difference(approved: Detail, rejected: Detail) -> int | None:
    """The first step where the two model turns differ after the same prompt; None when the tasks differ, the
    observations part first, or one ends before they differ."""
    a, r = approved.trajectory, rejected.trajectory
    if a.system_prompt != r.system_prompt or _task_key(approved) != _task_key(rejected):
        return None
    for index, (mine, theirs) in enumerate(zip(a.steps, r.steps, strict=False)):
        if mine.prompt != theirs.prompt:
            return None
        if assistant_text(mine.model_output) != assistant_text(theirs.model_output):
            return index
        if mine.feedback_message() != theirs.feedback_message():
            return None
    return None


def _task_key(detail: Detail) -> tuple:
    """What the model is asked: the task text, attachments and pictures by content (stored files are named by
    their hash), so two runs of one task with copies of the same picture match."""
    task = detail.trajectory.task
    return task.text, tuple(task.attachments), tuple(_pictures(task.images, _task_refs(detail)))


def _pictures(names: list[str], refs: list[ImageRef | None]) -> list[str]:
    """Each picture by its stored file (named by content hash), or by its name where it was never stored."""
    return [ref.path.name if ref is not None and ref.path is not None else f"missing:{name}"
            for name, ref in zip(names, refs, strict=True)]


# ---------------------------------------------------------------- the step sampler's picks


def sampler_pairs(store: Store) -> Iterator[Pair]:
    """The pairs of each sample's latest pick (`preference` events, payload as `review.sampler.pick_payload`)."""
    latest = store.db.stream(
        """SELECT t.id, e.payload FROM events e JOIN trajectories t ON t.seq = e.trajectory_seq
           WHERE e.id IN (SELECT MAX(id) FROM events WHERE kind = 'preference'
                          GROUP BY trajectory_seq, json_extract(payload, '$.sample'))
             AND t.purpose = 'curation' ORDER BY e.id""")
    for trajectory_id, payload in latest:
        pick = json.loads(payload)
        context = Trajectory.from_conversations(pick["context"])
        refs = {ref.name: ref for ref in store.detail(trajectory_id).images}
        images = [refs.get(name) for name in context.task.images]
        candidates = {entry["label"]: Step.from_dict(entry["step"]) for entry in pick["candidates"]}
        worse = pick["bad"] or [label for label in candidates if label != pick["best"]]
        for label in worse:
            yield Pair(SAMPLED, trajectory_id, trajectory_id, pick["step"], context, candidates[pick["best"]],
                       candidates[label], images)


# ---------------------------------------------------------------- shared


def unrenderable(trajectory: Trajectory, images: list[ImageRef | None]) -> str | None:
    """Why `trajectory` can no longer be shown to a model (a picture gone from the store), or None; `images` are
    the task's pictures as stored, in the order the task shows them."""
    for name, ref in zip(trajectory.task.images, images, strict=True):
        if ref is None or ref.missing:
            return f"its picture {name!r} is missing from the store"
    try:
        render_messages(trajectory, [str(ref.path) for ref in images if ref is not None])
    except ValueError as exc:
        return str(exc)
    return None



def _pair(source: str, chosen: Detail, rejected_id: str, step: int, better: Step, worse: Step) -> Pair:
    """A pair whose prompt is `chosen`'s trajectory (as the reviewer left it) up to `step`."""
    context = replace(chosen.trajectory, steps=chosen.trajectory.steps[:step])
    return Pair(source, chosen.id, rejected_id, step, context, better, worse, _task_refs(chosen))


def _task_refs(detail: Detail) -> list[ImageRef | None]:
    by_name = {ref.name: ref for ref in detail.images}
    return [by_name.get(name) for name in detail.trajectory.task.images]


def _content_key(pair: Pair) -> bytes:
    """The same prompt, chosen and rejected text from two sources (or two trajectory pairs) is one pair."""
    context = pair.context.to_conversations()
    images = _pictures(pair.context.task.images, pair.images)
    text = json.dumps([context, images, pair.chosen.prompt, pair.chosen.model_output, pair.rejected.model_output])
    return hashlib.sha256(text.encode()).digest()[:16]


def failed(step: Step) -> bool:
    """SPORT keeps these as rejected whatever their BLEU: the step raised, or it is not Thought + Code."""
    output = step.model_output.lower()
    return step.error is not None or "thought:" not in output or "code" not in output


def bleu(reference: str, hypothesis: str, max_order: int = 4) -> float:
    """NLTK's `sentence_bleu([reference], hypothesis, smoothing_function=SmoothingFunction().method1)` on two
    strings (so over characters), as SPORT calls it."""
    if not hypothesis:
        return 0.0
    log_sum = 0.0
    for order in range(1, max_order + 1):
        wanted = Counter(reference[i:i + order] for i in range(len(reference) - order + 1))
        found = Counter(hypothesis[i:i + order] for i in range(len(hypothesis) - order + 1))
        matches = sum(min(count, wanted[gram]) for gram, count in found.items())
        total = max(1, sum(found.values()))
        if order == 1 and matches == 0:
            return 0.0
        log_sum += math.log((matches or _SMOOTHING_EPSILON) / total) / max_order
    brevity = 1.0 if len(hypothesis) > len(reference) else math.exp(1 - len(reference) / len(hypothesis))
    return brevity * math.exp(log_sum)


def describe_counts(counts: dict[str, dict[str, Any]], threshold: float = BLEU_THRESHOLD,
                    same: float = SAME_THRESHOLD) -> list[str]:
    """One line per source and a total, for the command line."""
    lines = []
    for source in SOURCES:
        entry = counts[source]
        dropped = entry["near_duplicates"]
        lines.append(f"{source}: {entry['pairs']} pairs; {dropped} near-duplicate{'s' * (dropped != 1)} dropped "
                     f"({rule(source, threshold, same)}), {entry['repeats']} repeated")
    lines.append(f"total: {sum(entry['pairs'] for entry in counts.values())} pairs")
    return lines


def rule(source: str, threshold: float = BLEU_THRESHOLD, same: float = SAME_THRESHOLD) -> str:
    """The near-duplicate rule of a source, in a few words."""
    if source == SAMPLED:
        return f"BLEU >= {threshold:g}, failed steps kept, as SPORT"
    if same >= 1:
        return "identical once whitespace is normalized"
    return f"BLEU >= {same:g} once whitespace is normalized"
