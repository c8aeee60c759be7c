"""MAT's GAIA re-formatting pass (`examples/gaia/eval.py`), as an option reported apart from the official score.

What MAT's script does, and so what this does: every answer GAIA's matcher rejects, an empty or missing
one included, goes to an LLM with MAT's prompt (`prompts/mat_gaia_format.txt`: FORMAT_ANSWER_PROMPT_GAIA of
MAT's tongagent/prompt.py, word for word; MIT License, (c) 2024 Machine Learning Lab @ BIGAI), which also
asks for an "educated guess" when there is no answer; "Educated guess:" is cut from the reply, and the
reply is scored again. Right answers are kept as they are. The score is right answers after the pass /
all questions, per level (MAT ran one level per file) and overall. GAIA's own leaderboard has no such pass,
so the rewritten answers are stored beside the originals (`eval_results.reformatted`) and never replace
the official score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agent.models.base import Message, Model, ModelError
from eval.scoring import gaia_match
from review.store import Store

PROMPT = Path(__file__).with_name("prompts") / "mat_gaia_format.txt"


@dataclass
class Pass:
    """What one run of the pass did."""

    rewritten: int = 0
    kept: int = 0
    failed: int = 0
    error: str = ""


def reformat_answer(model: Model, question: str, answer: str | None) -> str:
    """MAT's rewrite of one answer: the whole reply, with "Educated guess:" cut out (then stripped) as MAT does."""
    prompt = PROMPT.read_text(encoding="utf-8").format(question=question, answer="" if answer is None else answer)
    reply = model.generate([Message("user", prompt)]).text
    if "Educated guess:" in reply:
        reply = reply.replace("Educated guess:", "").strip()
    return reply


def reformat_run(store: Store, run_id: str, model: Model) -> Pass:
    """Pass over the questions of `run_id` with a known answer not yet through it; a row left by an error waits."""
    rows = store.db.read(
        "SELECT task_id, question, prediction, truth FROM eval_results WHERE run_id = ? AND reformatted IS NULL",
        (run_id,),
    )
    done = Pass()
    for task_id, question, prediction, truth in rows:
        truth = json.loads(truth)
        if truth is None:
            continue  # the test split: nothing to score against, so MAT's script has nothing to rewrite
        if gaia_match(prediction, truth):
            rewritten, done.kept = prediction, done.kept + 1
        else:
            try:
                rewritten = reformat_answer(model, question, prediction)
            except ModelError as exc:
                done.failed, done.error = done.failed + 1, str(exc).splitlines()[0] if str(exc) else "model error"
                continue
            done.rewritten += 1
        with store.db.transaction() as tx:
            tx.execute("UPDATE eval_results SET reformatted = ? WHERE run_id = ? AND task_id = ?",
                       (rewritten, run_id, task_id))
    return done
