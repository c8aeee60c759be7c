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
from eval.scoring import PROTOCOL_RULES, gaia_match, gta_match

DEFINITIONS: dict[str, str] = {
    "AnsAcc (GTA)": "objective queries whose final answer matches under the protocol / all objective queries of "
                    "the run; a task that failed or timed out counts as wrong.",
    "AnsAcc+subj (GTA)": "as GTA's answer_acc: objective matches plus, for each subjective query, the best cosine "
                         "similarity (clipped at 0) between the answer and its reference sentences / objective + "
                         "subjective queries.",
    "ToolAcc": "of the tool calls in GTA's reference dialogs, the share whose tool the agent called at least once "
               "in the same task. With the gta profile names compare as they are; with mat through GTA_TO_MAT, and "
               "reference tools MAT does in plain Python (Calculator, Solver, Plot, DrawBox, AddText) are left out.",
    "CodeExec": "steps whose code parsed and ran without error / steps the agent ran (the answer the loop asks for "
                "once steps or errors run out is not run as code, and is left out).",
    "InstAcc, ToolAcc (step), ArgAcc, SummAcc": "GTA's step-by-step mode, see eval.stepwise: the model predicts each "
                                                "reference step from the reference dialog before it.",
    "Accuracy (GAIA)": "questions matched by the official quasi-exact rule / questions with a known answer, per level "
                       "and overall; a failed or timed-out task counts as wrong.",
}
# The paper's T3-Agent numbers (Gao et al., ICLR 2025), shown beside ours.
PAPER: dict[str, dict[str, dict[str, float]]] = {
    "gta": {
        "T3-Agent, Qwen2-VL-7B (paper)": {"AnsAcc": 53.85},
        "T3-Agent, MiniCPM-V-8.5B (paper)": {"AnsAcc": 52.56},
    },
    "gaia": {
        "T3-Agent, Qwen2-VL-7B (paper)": {"level 1": 26.42, "level 2": 15.12, "level 3": 3.84, "overall": 16.97},
    },
}
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

    def short(self) -> str:
        """The value with its count and denominator, for tables that give the protocol in a column."""
        if self.value is None:
            return f"n/a (0 {self.group} tasks)"
        return f"{self.value:.2f}% ({self.numerator:g}/{self.denominator})"

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


def load_results(db: Database, run_id: str) -> list[Result]:
    rows = db.read(f"SELECT {RESULT_COLUMNS} FROM eval_results WHERE run_id = ? ORDER BY position", (run_id,))
    results = []
    for row in rows:
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
    """AnsAcc (objective), AnsAcc with subjective answers, ToolAcc per category and overall, CodeExec."""
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
    """ToolAcc overall and per GTA tool category (perception, operation, logic, creativity)."""
    label = "tool names as GTA's" if profile == "gta" else "GTA tools mapped to MAT's"
    found: Counter = Counter()
    wanted: Counter = Counter()
    for result in results:
        used = set(result.tools)
        for tool in result.gt_tools:
            name = tool if profile == "gta" else GTA_TO_MAT.get(tool)
            if name is None:
                continue
            category = _category(tool)
            wanted[category] += 1
            found[category] += name in used
    scores = [score("ToolAcc", sum(found.values()), sum(wanted.values()), label)]
    scores += [score("ToolAcc", found[c], wanted[c], label, c) for c in GTA_CATEGORIES if wanted[c]]
    return scores


def _category(tool: str) -> str:
    return next((c for c, tools in GTA_CATEGORIES.items() if tool in tools), "other")


def code_exec(results: list[Result]) -> Score:
    return score("CodeExec", sum(r.code_ok for r in results), sum(r.code_steps for r in results),
                 "steps whose code ran without error / steps run")


def stepwise_scores(db: Database, run_id: str, protocol: str, similarity: Similarity | None = None) -> list[Score]:
    """GTA's step-by-step metrics (see eval.stepwise for the denominators and the one departure)."""
    truths = {r.task_id: r.truth for r in load_results(db, run_id)}
    answered = sum(1 for truth in truths.values() if truth)
    rows = db.read("SELECT task_id, gt_kind, gt_name, gt_args, pred_kind, pred_name, pred_args, pred_answer"
                   " FROM eval_steps WHERE run_id = ?", (run_id,))
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
    """Accuracy per level and overall; `reformatted` scores MAT's GPT re-formatted answers instead (labelled)."""
    protocol = "GAIA official" if not reformatted else "GAIA official on MAT's GPT re-formatted answers (not official)"
    known = [r for r in results if r.truth is not None]
    answer = (lambda r: r.reformatted) if reformatted else (lambda r: r.prediction)
    name = "Accuracy" if not reformatted else "Accuracy (re-formatted)"
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
    if isinstance(result.truth, dict):
        return gta_match(result.prediction, result.truth, protocol)
    return None


def rules() -> dict[str, str]:
    """Every protocol's rule in words, for reports."""
    return dict(PROTOCOL_RULES)
