"""Preference pairs derived from review events in a real store: edits, rejected against approved, SPORT's filter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from review.pairs import bleu, iter_pairs, pair_counts
from review.store import Store
from tests.support.preferences import CHART_CODE, GUESS, PACE_CODE, RETYPED, preference_records, preference_store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def db(tmp_path, mmtraj_records, release_image_dir) -> Path:
    return preference_store(tmp_path / "mat.db", mmtraj_records, release_image_dir)


def test_edits_and_a_rejected_retry_give_pairs_at_their_steps(db):
    with Store(db) as store:
        pairs = {(p.source, p.trajectory_id, p.step): p for p in iter_pairs(store)}
        original = store.detail("Tp3nWc8e").original
    assert set(pairs) == {("edit", "Tp3nWc8e", 1), ("edit", "Qz1hKd6c", 1),
                          ("rejected-vs-approved", "-UHI-qvJ", 1)}

    chart = pairs["edit", "Tp3nWc8e", 1]
    assert chart.chosen.code == CHART_CODE and chart.rejected.model_output == original.steps[1].model_output
    assert chart.context.steps[0].thought == RETYPED  # the prompt as the reviewer left it
    prompt, chosen, rejected = chart.messages()
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1]["content"][1]["type"] == "image" and Path(prompt[1]["content"][1]["image"]).is_file()
    assert prompt[3]["content"][0]["text"].startswith("[OUTPUT OF STEP 0] Observation:")
    assert CHART_CODE in chosen["content"][0]["text"] and "months = " in rejected["content"][0]["text"]

    pace = pairs["edit", "Qz1hKd6c", 1]
    assert pace.chosen.code == PACE_CODE and pace.rejected.code.startswith("pacing = ask_search_agent")
    assert pace.images == [] and pace.unrenderable() is None

    retry = pairs["rejected-vs-approved", "-UHI-qvJ", 1]
    assert retry.rejected_id == "-UHI-qvJ-guess" and retry.rejected.model_output == GUESS
    assert retry.context.steps[0].error is not None  # the shared step 0 and its error are the prompt
    assert retry.bleu < 0.3


def test_near_duplicates_are_dropped_and_counted_and_repeats_counted_once(db, mmtraj_records, release_image_dir):
    copy = dict(preference_records(mmtraj_records)[1], id="-UHI-qvJ-copy")  # a second, identical approved run
    with Store(db) as store:
        store.import_records([copy], source="fixture", images=release_image_dir)
        store.decide("-UHI-qvJ-copy", "ben", "approved")
        counts = pair_counts(store)
    assert counts == {"edit": {"pairs": 2, "near_duplicates": 1, "repeats": 0},
                      "rejected-vs-approved": {"pairs": 1, "near_duplicates": 0, "repeats": 1},
                      "sampler": {"pairs": 0, "near_duplicates": 0, "repeats": 0}}


def test_a_persons_small_fix_is_kept_and_only_a_whitespace_change_is_dropped(tmp_path, mmtraj_records,
                                                                            release_image_dir):
    """SPORT's 0.3 would drop both fixes: a one-word fix of a query scores 0.97, a one-word fix of a thought 0.98."""
    with Store(tmp_path / "mat.db") as store:
        store.import_records(preference_records(mmtraj_records)[:2], source="fixture", images=release_image_dir)
        query = store.detail("-UHI-qvJ").trajectory.steps[0]
        store.edit("-UHI-qvJ", "ana", step=0, field="code", value=query.code.replace("weekend", "Saturday"))
        thought = store.detail("Tp3nWc8e").trajectory.steps[0].thought
        store.edit("Tp3nWc8e", "ana", step=0, field="thought", value=thought.replace("each", "every"))
        code = store.detail("Tp3nWc8e").trajectory.steps[1].code  # typed again: spaces and blank lines added
        store.edit("Tp3nWc8e", "ana", step=1, field="code", value=code.replace("\n", "  \n\n") + "\n")
        kept = {(pair.trajectory_id, pair.step): pair for pair in iter_pairs(store)}
        assert pair_counts(store)["edit"] == {"pairs": 2, "near_duplicates": 1, "repeats": 0}
        assert pair_counts(store, same=0.95)["edit"] == {"pairs": 0, "near_duplicates": 3, "repeats": 0}
    assert set(kept) == {("-UHI-qvJ", 0), ("Tp3nWc8e", 0)}
    for pair in kept.values():
        assert 0.9 < pair.bleu < 1 and bleu(pair.chosen.model_output, pair.rejected.model_output) >= 0.3


def test_bleu_is_sports_character_bleu():
    """Values from NLTK 3.10.4's sentence_bleu([chosen], rejected, smoothing_function=method1), as SPORT calls it."""
    assert bleu("The cat sat on the mat", "A dog lay on a rug nearby") == pytest.approx(0.12142567939068623)
    chosen = 'Thought: I will use ocr.\nCode:\n```py\nprint(ocr(image_path="a.png"))\n```'
    assert bleu(chosen, chosen.replace("a.png", "b.png")) == pytest.approx(0.9636162552773174)
    assert bleu(chosen, chosen) == pytest.approx(1.0) and bleu(chosen, "") == 0.0
    assert bleu("abc", "xyz") == 0.0  # no character in common


def test_cli_prints_counts_by_source(db):
    result = subprocess.run([sys.executable, "-m", "review", "pairs", "--db", str(db)], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "edit: 2 pairs; 1 near-duplicate dropped (identical once whitespace is normalized), 0 repeated"
    assert lines[1].startswith("rejected-vs-approved: 1 pairs; 0 near-duplicates dropped")
    assert lines[2] == "sampler: 0 pairs; 0 near-duplicates dropped (BLEU >= 0.3, failed steps kept, as SPORT), 0 repeated"
    assert lines[3] == "total: 3 pairs"
