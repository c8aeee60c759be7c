"""Scores of a stored run. Each `Score` carries its protocol and its denominator, so no number travels alone.

What each metric means is written once, in `DEFINITIONS`; reports print it beside the scores.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from core.db import Database
from eval.benchmarks import GTA_CATEGORIES
from eval.scoring import PROTOCOL_RULES, gaia_match, gta_match, mat_counts

DEFINITIONS: dict[str, str] = {
    "AnsAcc (GTA)": "objective queries whose final answer matches under the protocol / all objective queries of "
                    "the run (under mat, the objective queries MAT's script scores); a task that failed or timed "
                    "out has no answer and counts as not answered.",
    "AnsAcc+subj (GTA)": "as GTA's answer_acc: objective matches plus, for each subjective query, the best cosine "
                         "similarity (clipped at 0) between the answer and its reference sentences / objective + "
                         "subjective queries. Not part of MAT's procedure, so not given under mat.",
    "ToolAcc precision, recall, F1": "as GTA's evaluator: a reference tool call is matched when the agent called "
                                     "that tool in the same task; recall = matched / reference calls, precision = "
                                     "matched / tool calls the agent wrote, F1 their harmonic mean; per category "
                                     "and overall. With the gta profile names compare as they are; with mat "
                                     "through GTA_TO_MAT (a MAT tool's calls count in each category it stands "
                                     "for), and reference tools MAT does in plain Python (Calculator, Solver, Plot, "
                                     "DrawBox, AddText) are left out.",
    "CodeExec": "steps whose code parsed and ran without error / steps the agent ran (the answer the loop asks for "
                "once steps or errors run out is not run as code, and is left out).",
    "Timed out": "tasks stopped at their time limit / tasks of the run. A task's clock runs only while it has the "
                 "model and its sandbox, not while it waits for a turn; a timed-out task has no answer (it is not a "
                 "wrong one) and `--retry-timeouts` runs it again on resume.",
    "InstAcc, ToolAcc (step), ArgAcc, SummAcc": "GTA's step-by-step mode, see eval.stepwise: the model predicts each "
                                                "reference step from the reference dialog before it.",
    "Accuracy (GAIA)": "questions matched by the official quasi-exact rule / questions with a known answer, per level "
                       "and overall; a failed or timed-out task counts as not answered.",
    "Accuracy (MAT re-formatted, GAIA)": "MAT's examples/gaia/eval.py: every answer the official rule rejects "
                                         "(empty and missing ones included) is rewritten by an LLM with MAT's "
                                         "prompt, then scored again; right answers are kept as they are.",
    "Comparisons": "runs compared side by side are scored on the tasks all of them finished (answered or timed out), "
                   "and the report says how many.",
}
# The paper's T3-Agent numbers (Gao et al., ICLR 2025) as printed, with the count each one is, shown beside the row
# scored by the procedure that produced them: MAT's GTA script (protocol `mat`) and MAT's re-formatted GAIA accuracy.
PAPER: dict[str, dict[str, dict[str, tuple[float, int, int]]]] = {
    "gta": {
        "T3-Agent, Qwen2-VL-7B (paper)": {"AnsAcc": (53.85, 84, 156)},
        "T3-Agent, MiniCPM-V-8.5B (paper)": {"AnsAcc": (52.56, 82, 156)},
    },
    "gaia": {
        "T3-Agent, Qwen2-VL-7B (paper)": {"level 1": (26.42, 14, 53), "level 2": (15.12, 13, 86),
                                          "level 3": (3.84, 1, 26), "overall": (16.97, 28, 165)},
    },
}
PAPER_PROTOCOL = {"gta": "mat", "gaia": "MAT re-formatted"}
# GTA's tools and the MAT tool doing the same job (None: MAT does it in plain Python).
GTA_TO_MAT: dict[str, str | None] = {
    "OCR": "ocr", "MathOCR": "ocr", "ImageDescription": "visualizer", "RegionAttributeDescription": "visualizer",
    "CountGivenObject": "objectlocation", "TextToBbox": "objectlocation", "GoogleSearch": "ask_search_agent",
    "TextToImage": "image_generator", "ImageStylization": "image_edit",
    "Calculator": None, "Solver": None, "Plot": None, "DrawBox": None, "AddText": None,
}
EMBEDDING_ENV = "MAT_EVAL_EMBEDDING_MODEL"
GTA_EMBEDDING_MODEL = "sentence-transformers/all-mpnet-base-v2"


@dataclass
class Score:
    name: str
    value: float | None
    numerator: float
    denominator: int
    protocol: str
    group: str = "overall"
    detail: str = ""  # said instead of the count where a value is no count (F1)

    def short(self) -> str:
        """The value with its count and denominator, for tables that give the protocol in a column."""
        if self.value is None:
            return f"n/a (0 {self.group} tasks)"
        return f"{self.value:.2f}% ({self.detail or f'{self.numerator:g}/{self.denominator}'})"

    def text(self) -> str:
        return f"{self.short()[:-1]}, {self.protocol})" if self.value is not None else self.short()


def score(name: str, hits: float, total: int, protocol: str, group: str = "overall") -> Score:
    value = 100.0 * hits / total if total else None
    return Score(name, value, round(hits, 4), total, protocol, group)


@dataclass
class Result:
    """One row of `eval_results`, decoded."""

    task_id: str
    position: int
    kind: str
    level: str
    question: str
    truth: Any
    gt_tools: list[str]
    prediction: str | None
    reformatted: str | None
    status: str
    error: str
    trajectory_id: str | None
    steps: int
    code_steps: int
    code_ok: int
    tools: list[str]
    seconds: float


RESULT_COLUMNS = ("task_id, position, kind, level, question, truth, gt_tools, prediction, reformatted, status, error,"
                  " trajectory_id, steps, code_steps, code_ok, tools, seconds")


def load_results(db: Database, run_id: str, tasks: set[str] | None = None) -> list[Result]:
    """The run's results in benchmark order; only those of `tasks` when given."""
    rows = db.read(f"SELECT {RESULT_COLUMNS} FROM eval_results WHERE run_id = ? ORDER BY position", (run_id,))
    results = []
    for row in rows:
        if tasks is not None and row[0] not in tasks:
            continue
        values = list(row)
        values[5], values[6], values[15] = json.loads(values[5]), json.loads(values[6]), json.loads(values[15])
        results.append(Result(*values))
    return results


# ------------------------------------------------------------------ similarity for subjective answers


@dataclass
class Similarity:
    """How subjective answers are compared; `name` goes into the protocol label."""

    name: str
    fn: Callable[[str, str], float]
    note: str = ""

    def best(self, prediction: str, references: Sequence[str]) -> float:
        return max((max(0.0, self.fn(prediction, ref)) for ref in references), default=0.0)


def lexical_similarity() -> Similarity:
    """Cosine of word-count vectors: offline and deterministic, but not GTA's embedding score."""

    def cosine(a: str, b: str) -> float:
        ca, cb = Counter(re.findall(r"\w+", a.lower())), Counter(re.findall(r"\w+", b.lower()))
        dot = sum(ca[w] * cb[w] for w in ca)
        norm = math.sqrt(sum(v * v for v in ca.values())) * math.sqrt(sum(v * v for v in cb.values()))
        return dot / norm if norm else 0.0

    return Similarity("bag-of-words cosine (offline fallback, not comparable with GTA)", cosine,
                      note=f"no embedding model found offline; set {EMBEDDING_ENV} to a local copy of "
                           f"{GTA_EMBEDDING_MODEL} for GTA's own subjective score")


def embedding_similarity(model: str) -> Similarity:
    """Mean-pooled sentence embeddings of a local transformers encoder (GTA uses all-mpnet-base-v2)."""
    encode = _encoder(model)

    def cosine(a: str, b: str) -> float:
        va, vb = encode(a), encode(b)
        return float((va * vb).sum())

    return Similarity(f"embedding cosine ({model})", cosine)


@lru_cache(maxsize=2)
def _encoder(model: str) -> Callable[[str], Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    encoder = AutoModel.from_pretrained(model, local_files_only=True).eval()

    @torch.no_grad()
    def encode(text: str):
        batch = tokenizer(text, return_tensors="pt", truncation=True, max_length=384)
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)[0]

    return encode


def default_similarity() -> Similarity:
    """GTA's embedding model when a local copy loads offline, else the labelled lexical fallback."""
    model = os.environ.get(EMBEDDING_ENV) or GTA_EMBEDDING_MODEL
    try:
        return embedding_similarity(model)
    except Exception:  # noqa: BLE001 — not downloaded, offline, or not an encoder: fall back and say so
        return lexical_similarity()


# ------------------------------------------------------------------ GTA


def gta_scores(results: list[Result], protocol: str, profile: str, similarity: Similarity | None = None) -> list[Score]:
    """AnsAcc (objective), AnsAcc with subjective answers, tool precision/recall/F1, CodeExec."""
    if protocol == "mat":  # MAT's script: objective queries it reads, no subjective score
        counted = [r for r in results if mat_counts(r.truth)]
        hits = sum(gta_match(r.prediction, r.truth, "mat") for r in counted)
        scores = [score("AnsAcc", hits, len(counted), protocol, "objective")]
    else:
        objective = [r for r in results if isinstance(r.truth, dict)]
        subjective = [r for r in results if isinstance(r.truth, list)]
        hits = sum(gta_match(r.prediction, r.truth, protocol) for r in objective)
        scores = [score("AnsAcc", hits, len(objective), protocol, "objective")]
        if subjective:
            similarity = similarity or default_similarity()
            soft = sum(similarity.best(r.prediction, r.truth) for r in subjective if r.prediction)
            scores.append(score("AnsAcc+subj", hits + soft, len(objective) + len(subjective),
                                f"{protocol} + {similarity.name}", "objective+subjective"))
    scores += tool_scores(results, profile)
    scores.append(code_exec(results))
    return scores


def tool_scores(results: list[Result], profile: str) -> list[Score]:
    """GTA's tool metrics (GTABenchEvaluator, `every` mode): precision, recall and F1, overall and per category."""
    label = "tool names as GTA's" if profile == "gta" else "GTA tools mapped to MAT's"
    matched: Counter = Counter()
    wanted: Counter = Counter()
    called: Counter = Counter()
    for result in results:
        for call in result.tools:
            categories = _categories_served(call, profile)
            called.update(categories)
            called["overall"] += bool(categories)
        used = set(result.tools)
        for tool in result.gt_tools:
            name = tool if profile == "gta" else GTA_TO_MAT.get(tool)
            if name is None:
                continue
            for group in ("overall", _category(tool)):
                wanted[group] += 1
                matched[group] += name in used
    scores = []
    for group in ("overall", *(c for c in GTA_CATEGORIES if wanted[c])):
        precision = score("ToolAcc precision", matched[group], called[group], f"{label}; / tool calls written", group)
        recall = score("ToolAcc recall", matched[group], wanted[group], f"{label}; / reference tool calls", group)
        scores += [precision, recall, _f1(precision, recall, label, group)]
    return scores


def _f1(precision: Score, recall: Score, label: str, group: str) -> Score:
    p, r = precision.value or 0.0, recall.value or 0.0
    value = 2 * p * r / (p + r) if p + r else 0.0
    return Score("ToolAcc F1", value if recall.value is not None else None, 0, 0, label, group,
                 detail=f"P {p:.2f}%, R {r:.2f}%")


def _categories_served(tool: str, profile: str) -> set[str]:
    """The GTA categories an agent's tool call counts in: its own (gta), or those of the GTA tools it stands for."""
    if profile == "gta":
        return {_category(tool)} - {"other"}
    return {_category(gta) for gta, mat in GTA_TO_MAT.items() if mat == tool}


def _category(tool: str) -> str:
    return next((c for c, tools in GTA_CATEGORIES.items() if tool in tools), "other")


def timeouts(results: list[Result]) -> Score:
    return score("Timed out", sum(r.status == "timeout" for r in results), len(results),
                 "tasks stopped at their own time limit (no answer, not a wrong one)")


def code_exec(results: list[Result]) -> Score:
    return score("CodeExec", sum(r.code_ok for r in results), sum(r.code_steps for r in results),
                 "steps whose code ran without error / steps run")


def stepwise_scores(db: Database, run_id: str, protocol: str, similarity: Similarity | None = None,
                    tasks: set[str] | None = None) -> list[Score]:
    """GTA's step-by-step metrics (see eval.stepwise for the denominators and the one departure)."""
    truths = {r.task_id: r.truth for r in load_results(db, run_id, tasks)}
    answered = sum(1 for truth in truths.values() if truth)
    rows = db.read("SELECT task_id, gt_kind, gt_name, gt_args, pred_kind, pred_name, pred_args, pred_answer"
                   " FROM eval_steps WHERE run_id = ?", (run_id,))
    rows = [row for row in rows if row[0] in truths]
    inst = tool = arg = summ = 0.0
    tool_steps = 0
    for task_id, gt_kind, gt_name, gt_args, pred_kind, pred_name, pred_args, pred_answer in rows:
        inst += pred_kind == gt_kind
        if gt_kind == "tool":
            tool_steps += 1
            same_tool = pred_kind == "tool" and pred_name == gt_name
            tool += same_tool
            arg += same_tool and json.loads(pred_args) == json.loads(gt_args)
        elif pred_kind == "answer" and pred_answer:
            truth = truths.get(task_id)
            if isinstance(truth, dict):
                summ += gta_match(pred_answer, truth, protocol)
            elif isinstance(truth, list):
                similarity = similarity or default_similarity()
                summ += similarity.best(pred_answer, truth)
    label = "step-by-step, reference dialog as context"
    return [score("InstAcc", inst, len(rows), f"{label}; / all reference steps"),
            score("ToolAcc (step)", tool, tool_steps, f"{label}; / reference tool steps"),
            score("ArgAcc", arg, tool_steps, f"{label}; / reference tool steps"),
            score("SummAcc", summ, answered, f"{label}, {protocol}; / queries with a reference answer")]


# ------------------------------------------------------------------ GAIA


def gaia_scores(results: list[Result], reformatted: bool = False) -> list[Score]:
    """Accuracy per level and overall; `reformatted` scores MAT's re-formatting pass instead (labelled).

    A row the pass has not reached yet keeps its own answer, as MAT keeps the answers it does not rewrite.
    """
    protocol = "GAIA official" if not reformatted else "MAT re-formatted (examples/gaia/eval.py; not official)"
    known = [r for r in results if r.truth is not None]
    answer = (lambda r: r.prediction if r.reformatted is None else r.reformatted) if reformatted \
        else (lambda r: r.prediction)
    name = "Accuracy" if not reformatted else "Accuracy (MAT re-formatted)"
    scores = []
    for level in sorted({r.level for r in known}):
        group = [r for r in known if r.level == level]
        scores.append(score(name, sum(gaia_match(answer(r), r.truth) for r in group), len(group), protocol,
                            f"level {level}"))
    scores.append(score(name, sum(gaia_match(answer(r), r.truth) for r in known), len(known), protocol))
    return scores


def correct(result: Result, benchmark: str, protocol: str = "official") -> bool | None:
    """Whether one task was answered right (None where the task has no objective answer)."""
    if benchmark == "gaia":
        return None if result.truth is None else gaia_match(result.prediction, result.truth)
    if isinstance(result.truth, dict) and (protocol != "mat" or mat_counts(result.truth)):
        return gta_match(result.prediction, result.truth, protocol)
    return None


def rules() -> dict[str, str]:
    """Every protocol's rule in words, for reports."""
    return dict(PROTOCOL_RULES)
