"""Answer matchers for GAIA and GTA, reproduced from the benchmarks' own scorers.

- `gaia_match`: the GAIA leaderboard's quasi-exact match (`question_scorer` in its `scorer.py`).
- `gta_match(protocol="official")`: GTA's whitelist/blacklist matcher (`GTABenchEvaluator.iscorrect` in
  open-compass/GTA), so numbers are comparable with the GTA leaderboard.
- `gta_match(protocol="mat")`: the rule of MAT's `examples/gta/eval.py`, which gave the paper's GTA numbers.
- `gta_match(protocol="fixed")`: the official rule with one repair, see `_alias_pattern`.

Each protocol's exact rule is written in `PROTOCOL_RULES`, which reports print beside the scores.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Any

GTA_PROTOCOLS = ("official", "mat", "fixed")

PROTOCOL_RULES: dict[str, str] = {
    "official": (
        "GTA official (open-compass/GTA iscorrect): each whitelist group must match one of its aliases as a "
        "case-insensitive regex \\b(alias)\\b, and no blacklist alias may match the same way."
    ),
    "mat": (
        "MAT's examples/gta/eval.py: each whitelist group must have one alias contained in the answer "
        "(case-insensitive substring); the blacklist is not read. Only objective queries count: subjective and "
        "image-generation queries are skipped, and the score is divided by the objective queries (paper: 84/156)."
    ),
    "fixed": (
        "Official rule with symbol-safe boundaries: an alias must not touch a letter, digit or underscore on either "
        "side, instead of needing \\b, which never matches beside a symbol such as '-2', '50%' or '$2697'."
    ),
    "gaia": (
        "GAIA official quasi-exact match (leaderboard scorer.py): numbers compared as floats after removing "
        "'$', '%' and ','; lists split on ',' and ';' and compared element-wise; strings compared without "
        "whitespace, case and punctuation. A missing answer is wrong."
    ),
}


# ------------------------------------------------------------------ GAIA


def gaia_match(prediction: Any, truth: Any) -> bool:
    """GAIA's quasi-exact match; never raises. A missing (None) or unreadable answer is wrong.

    The one departure from `question_scorer`: it turns a None answer into the string "None", which would
    count as right for a question whose truth is literally "None"; here a missing answer is always wrong.
    """
    if prediction is None or truth is None:
        return False
    try:
        return _question_scorer(str(prediction), str(truth))
    except Exception:  # noqa: BLE001 — a scorer must give a verdict, whatever a model wrote
        return False


def _question_scorer(answer: str, truth: str) -> bool:
    if _is_float(truth):
        return _number(answer) == float(truth)
    if any(sep in truth for sep in (",", ";")):
        truths, answers = _split(truth), _split(answer)
        if len(truths) != len(answers):
            return False
        return all(
            _number(a) == float(t) if _is_float(t) else _normal(a, punctuation=False) == _normal(t, punctuation=False)
            for a, t in zip(answers, truths, strict=True)
        )
    return _normal(answer) == _normal(truth)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(text: str) -> float:
    """The answer as a number once '$', '%' and ',' are gone; infinity when it is not one (never equal)."""
    for char in ("$", "%", ","):
        text = text.replace(char, "")
    try:
        return float(text)
    except ValueError:
        return float("inf")


def _split(text: str) -> list[str]:
    return re.split(r"[,;]", text)


def _normal(text: str, punctuation: bool = True) -> str:
    """No whitespace at all (so 'sea gull' == 'seagull'), lower case, and optionally no ASCII punctuation."""
    text = re.sub(r"\s", "", text).lower()
    return text.translate(str.maketrans("", "", string.punctuation)) if punctuation else text


# ------------------------------------------------------------------ GTA


def gta_match(prediction: Any, gt_answer: dict, protocol: str = "official") -> bool:
    """Whether `prediction` answers a GTA objective query under `protocol` (official, mat or fixed).

    `gt_answer` is the record's `{"whitelist": [[alias, ...], ...], "blacklist": [[alias, ...], ...] | None}`;
    a blacklist given as a flat list of strings is read as one group per string. Under official and fixed
    an empty or missing prediction is wrong (GTA scores only non-empty answers); `mat` is MAT's script as it
    is (see `_mat_rule`). Subjective references (a list of sentences) are scored by similarity in
    `eval.metrics`, not here.
    """
    if protocol not in GTA_PROTOCOLS:
        raise ValueError(f"unknown GTA protocol {protocol!r}; choose one of {', '.join(GTA_PROTOCOLS)}")
    if not isinstance(gt_answer, dict) or "whitelist" not in gt_answer:
        raise ValueError("gt_answer must be an objective answer: {'whitelist': [...], 'blacklist': [...] | None}")
    whitelist = [_aliases(group) for group in gt_answer.get("whitelist") or []]
    if protocol == "mat":
        return _mat_rule(prediction, whitelist)
    if prediction is None:
        return False
    text = str(prediction)
    if not text:
        return False
    blacklist = [alias for group in gt_answer.get("blacklist") or [] for alias in _aliases(group)]
    if not all(_contains_regex(text, group, protocol) for group in whitelist):
        return False
    return not (blacklist and _contains_regex(text, blacklist, protocol))


def _aliases(group: Any) -> list[str]:
    if isinstance(group, str):
        return [group]
    return [str(alias) for alias in group]


def _contains_regex(text: str, aliases: Iterable[str], protocol: str) -> bool:
    pattern = "|".join(re.escape(alias) for alias in aliases)
    if protocol == "official":
        pattern = rf"\b(?:{pattern})\b"
    else:
        pattern = rf"(?<!\w)(?:{pattern})(?!\w)"
    return re.search(pattern, text, re.IGNORECASE) is not None


def _mat_rule(prediction: Any, whitelist: list[list[str]]) -> bool:
    """MAT's check, as written: every group has an alias inside str(answer), lowered; blacklist unread.

    A missing answer (a task that failed or timed out, which MAT's agent never left) reads as empty.
    """
    lowered = ("" if prediction is None else str(prediction)).lower()
    return all(any(alias.lower() in lowered for alias in group) for group in whitelist)


def mat_counts(gt_answer: Any) -> bool:
    """Whether MAT's GTA script scores this query: objective, its whitelist a list of alias lists."""
    return isinstance(gt_answer, dict) and all(isinstance(g, list) for g in gt_answer.get("whitelist") or [])
