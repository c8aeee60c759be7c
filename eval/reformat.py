"""MAT's GPT re-formatting pass for GAIA, as an option: an LLM rewrites each answer into GAIA's answer format.

MAT scored GAIA after such a pass; GAIA's own leaderboard does not. The rewritten answers are stored beside
the originals (`eval_results.reformatted`) and reported as a separate, labelled score, never in place of
the official one.
"""

from __future__ import annotations

from pathlib import Path

from agent.models.base import Message, Model, ModelError
from review.store import Store

PROMPT = Path(__file__).with_name("prompts") / "reformat.txt"


def reformat_answer(model: Model, question: str, answer: str) -> str:
    prompt = PROMPT.read_text(encoding="utf-8").format(question=question, answer=answer)
    reply = model.generate([Message("user", prompt)], max_new_tokens=128)
    lines = [line.strip() for line in reply.text.strip().splitlines() if line.strip()]
    return lines[0] if lines else answer


def reformat_run(store: Store, run_id: str, model: Model) -> int:
    """Rewrite every answered task of `run_id` not yet rewritten; returns how many were rewritten."""
    rows = store.db.read(
        "SELECT task_id, question, prediction FROM eval_results WHERE run_id = ? AND prediction IS NOT NULL"
        " AND reformatted IS NULL", (run_id,),
    )
    for task_id, question, prediction in rows:
        try:
            rewritten = reformat_answer(model, question, prediction)
        except ModelError:
            continue  # left for the next run of the pass; the official score does not depend on it
        with store.db.transaction() as tx:
            tx.execute("UPDATE eval_results SET reformatted = ? WHERE run_id = ? AND task_id = ?",
                       (rewritten, run_id, task_id))
    return len(rows)
