"""Review's step sampler end to end: the launched app over HTTP (gradio_client), a scripted endpoint, real sandboxes.

A stored trajectory measures a picture's width at step 1 (`width = ...`) and adds 6 at step 2. Sampling 3
alternatives at step 2 sends the endpoint exactly what the agent is served there; each candidate runs in a fresh
sandbox where step 1's code was replayed, so `width` is defined; the pick is a review event whose pair the
preference export writes with that very prompt.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from gradio_client import Client
from PIL import Image

from agent.config import Settings
from agent.models.transport import Transport
from agent.parsing import parse_action
from agent.render import render_messages
from agent.steps import Step
from review.errors import StoreError
from review.markup import describe
from review.pairs import iter_pairs, pair_counts
from review.preferences_export import export_pairs
from review.sampler import HEURISTIC, RECORDED, Candidate, Sample, record_pick
from review.store import Store
from tests.support.app_server import running_app
from tests.support.openai_server import FakeOpenAI
from tests.support.review_app import unchanged

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")
PICTURE = "attachments/card.png"
MODEL = "mat-test (endpoint)"
DOUBLE = "Thought: Twice the width.\nCode:\n```py\nprint(width * 2)\n```"
GUESS = "Thought: The height, I think.\nCode:\n```py\nprint(height + 6)\n```"
PLUS = "Thought: The width plus six.\nCode:\n```py\nprint(width + 6)\n```"
RECORD = {"id": "card", "image": PICTURE, "answer": "326", "conversations": [
    {"from": "system", "value": "You solve tasks by writing Python code."},
    {"from": "user", "value": f"Picture 1: <img>{PICTURE}</img>\nTask: How wide is the card, plus 6?\n"},
    {"from": "assistant", "value": "Thought: Measure it.\nCode:\n```py\nfrom PIL import Image\n"
                                   f"width = Image.open({PICTURE!r}).size[0]\nprint(width)\n```"},
    {"from": "user", "value": "[OUTPUT OF STEP 0] Observation:\n320\n"},
    {"from": "assistant", "value": "Thought: Add six.\nCode:\n```py\nprint(width + 6.0)\n```"},
    {"from": "user", "value": "[OUTPUT OF STEP 1] Observation:\n326.0\n"},
    {"from": "assistant", "value": "Thought: Done.\nCode:\n```py\nfinal_answer('326')\n```"},
]}


def judge(body: dict) -> str:
    """The judge's answer: it ranks the candidate that adds six first."""
    prompt = body["messages"][-1]["content"]
    text = prompt if isinstance(prompt, str) else "".join(part.get("text", "") for part in prompt)
    labels = re.findall(r"Candidate (\w+):\n.*?```py\n(.*?)\n```", text, re.S)
    first = [label for label, code in labels if code == "print(width + 6)"]
    return "Six is what was asked.\nRanking: " + " > ".join(first + [label for label, _ in labels if label not in first])


@pytest.fixture()
def app(tmp_path):
    images = tmp_path / "images"
    (images / "attachments").mkdir(parents=True)
    Image.new("RGB", (320, 200), "white").save(images / PICTURE)
    with FakeOpenAI(replies=[f"{reply}<end_action>" for reply in (DOUBLE, GUESS, PLUS)], responder=judge) as server:
        settings = Settings(data_dir=tmp_path / "data", base_url=server.url, model="mat-test", api_key=None)
        with Store(settings.db) as store:
            store.import_records([RECORD], source="fixture", images=images)
        with running_app(settings) as url:
            yield Client(url, verbose=False), server, settings


def columns(candidates_html: str) -> dict[str, str]:
    """Each candidate's column of the side-by-side view, by its label."""
    parts = re.split(r'<div data-candidate="(\w+)">', candidates_html)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def events(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, kind, payload FROM events ORDER BY id").fetchall()


def test_sampled_candidates_run_after_the_prefix_and_a_pick_becomes_an_exported_pair(app, tmp_path):
    client, server, settings = app
    client.predict("", "card", api_name="/review_open")
    progress, shown, best, bad = client.predict(2, 3, MODEL, MODEL, api_name="/review_sample")

    by_label = columns(shown)
    assert set(by_label) == {"recorded", "1", "2", "3"}
    double, guess, plus = (next(label for label, html in by_label.items() if marker in html)
                           for marker in ("Twice the width", "The height, I think", "The width plus six"))
    assert "640" in by_label[double] and "346" not in by_label[double]  # width came from the replayed step 1
    assert "name &#x27;height&#x27; is not defined" in by_label[guess]
    assert "326" in by_label[plus] and "the 1 prefix step with code reproduced" in by_label[plus]
    assert f"by {MODEL} as judge (prompt review/prompts/sampler_judge.txt)" in shown
    assert f"Suggested ranking: candidate {plus} &gt; 0 · recorded step &gt;" in shown
    assert best["value"] == plus and bad["value"] == [] and "3 candidates sampled at step 2" in progress
    assert [value for _, value in best["choices"]] == ["recorded", "1", "2", "3"]

    sent = [request.body["messages"] for request in server.chat_requests[:3]]
    assert sent[0] == sent[1] == sent[2]  # K requests after the same prefix

    message, *_ = client.predict("ann", plus, [guess], False, api_name="/review_pick")
    assert message.startswith(f"Recorded: candidate {plus} over candidate {guess}")
    (_, kind, payload), = [event for event in events(settings.db) if event[1] == "preference"]
    assert json.loads(payload)["best"] == plus and json.loads(payload)["bad"] == [guess]

    *_, pairs_plot, _, counts = client.predict(api_name="/review_stats")  # Review's Stats view, by source
    assert "- sampler: 1 pairs; 0 near-duplicates dropped (BLEU >= 0.3, failed steps kept, as SPORT)" in counts
    assert "- edit: 0 pairs" in counts and pairs_plot is not None
    with Store(settings.db) as store:
        (pair,) = [pair for pair in iter_pairs(store) if pair.source == "sampler"]
        assert pair.chosen.model_output == PLUS and pair.rejected.error is not None  # kept: SPORT keeps failures
        report = export_pairs(store, "trl-preference", tmp_path / "trl")
    assert report.written == 1
    (line,) = [json.loads(text) for text in (tmp_path / "trl" / "preferences.jsonl").read_text().splitlines()]
    assert (line["source"], line["step"]) == ("sampler", 1)
    in_place = [{**message, "content": [{**part, "image": str(tmp_path / "trl" / part["image"])}
                                        if part["type"] == "image" else part for part in message["content"]]}
                for message in line["prompt"]]
    assert Transport(server.url, None).messages(in_place) == sent[0]  # what the agent was served, to the byte
    assert line["chosen"][0]["content"][0]["text"] == PLUS

    with Store(settings.db) as store:  # the card's picture gone from the store: the export says so, in one line
        next(ref.path for ref in store.detail("card").images if ref.path is not None).unlink()
        before = events(settings.db)
        summary = export_pairs(store, "trl-preference", tmp_path / "again").summary()
    assert summary == (f"0 preference pairs written; 1 left out because their prompt no longer renders (the sampler "
                       f"pair at step 2 of card: its picture '{PICTURE}' is missing from the store)")
    assert events(settings.db) == before


def test_the_page_shows_what_each_candidate_is_doing_while_they_are_sampled(app):
    client, server, settings = app
    server.latency = 1.5  # a slow endpoint
    client.predict("", "card", api_name="/review_open")
    job = client.submit(2, 3, MODEL, HEURISTIC, api_name="/review_sample")
    job.result()
    progress = [outputs[0] for outputs in job.outputs()]
    assert any(text.startswith("Sampling… ") and "- candidate 1: the model is writing" in text for text in progress)
    assert progress[-1].startswith("3 candidates sampled at step 2")


def test_bad_requests_are_refused_in_one_line_and_nothing_is_stored(app, tmp_path):
    client, server, settings = app
    client.predict("", "card", api_name="/review_open")
    before = events(settings.db)
    for k, model in ((0, MODEL), (9, MODEL), (-1, MODEL), (3, "")):
        assert unchanged(client.predict(2, k, model, MODEL, api_name="/review_sample"))
    assert unchanged(client.predict(9, 3, MODEL, MODEL, api_name="/review_sample"))  # no step 9
    assert unchanged(client.predict("ann", None, [], False, api_name="/review_pick"))  # nothing sampled yet
    assert server.chat_requests == [] and events(settings.db) == before


def test_refusals_say_why_in_one_line(tmp_path):
    from review import sampler

    settings = Settings(data_dir=tmp_path, db_path=stored_card(tmp_path), base_url=None, model=None, api_key=None,
                        local_model=None)
    with Store(settings.db) as store:
        with pytest.raises(StoreError, match=r"^K is how many candidates to sample: a whole number from 1 to 8, not 0$"):
            sampler.sample(store, settings, "card", 2, 0, "anything")
        with pytest.raises(StoreError, match=r"^no model is configured to sample from: add one in the Settings tab"):
            sampler.sample(store, settings, "card", 2, 3, None)
        next(ref.path for ref in store.detail("card").images if ref.path is not None).unlink()
        with pytest.raises(StoreError, match=r"^cannot sample at step 2 of card: its prompt no longer renders "
                                             rf"\(its picture '{PICTURE}' is missing from the store\)$"):
            sampler.sample(store, settings, "card", 2, 3, "tiny random Qwen2-VL (smoke test)")



def stored_card(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    (images / "attachments").mkdir(parents=True)
    Image.new("RGB", (320, 200), "white").save(images / PICTURE)
    with Store(tmp_path / "mat.db") as store:
        store.import_records([RECORD], source="fixture", images=images)
    return tmp_path / "mat.db"


def ran(text: str, observation: str | None = None, error: str | None = None) -> Step:
    thought, code = parse_action(text)
    return Step(index=1, model_output=text, thought=thought, code=code, observation=observation, error=error)


def test_the_latest_pick_of_a_sample_gives_its_pairs_by_sports_rule(tmp_path):
    db = stored_card(tmp_path)
    with Store(db) as store:
        detail = store.detail("card")
        context = replace(detail.trajectory, steps=detail.trajectory.steps[:1])
        candidates = [Candidate(RECORDED, detail.trajectory.steps[1]), Candidate("1", ran(PLUS, "326\n")),
                      Candidate("2", ran(DOUBLE, "640\n")), Candidate("3", ran(GUESS, error="name 'height'..."))]
        shown = Sample("s1", "card", 1, context, MODEL, candidates, ["1", "recorded", "2", "3"], "the heuristic")
        for best, bad in ((None, []), ("1", ["1"]), ("4", []), ("1", ["9"])):
            with pytest.raises(StoreError):
                record_pick(store, shown, "ann", best, bad)
        assert store.db.value("SELECT COUNT(*) FROM events WHERE kind = 'preference'") == 0

        record_pick(store, shown, "ann", "1", [])  # none marked bad: the best against the rest, as SPORT pairs
        pairs = [pair for pair in iter_pairs(store) if pair.source == "sampler"]
        assert [pair.rejected.model_output for pair in pairs] == [GUESS]  # the failed one, whatever its BLEU
        assert pair_counts(store)["sampler"] == {"pairs": 1, "near_duplicates": 2, "repeats": 0}
        assert pair_counts(store, threshold=0.99)["sampler"]["pairs"] == 3

        record_pick(store, shown, "ben", "2", ["3"])  # a later pick of the same sample replaces the first
        (pair,) = [pair for pair in iter_pairs(store) if pair.source == "sampler"]
        assert (pair.chosen.model_output, pair.rejected.model_output, pair.step) == (DOUBLE, GUESS, 1)
        assert pair.messages()[0] == render_messages(context, [str(detail.images[0].path)])
        assert "picked 2 at step 2 over 3" in describe(store.detail("card").events[-1])


def test_an_older_events_table_takes_picks_after_its_migration_and_keeps_its_history(tmp_path):
    from core import db as core_db
    from review.schema import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (package TEXT NOT NULL, version INTEGER NOT NULL, applied_at TEXT NOT NULL,"
                 " PRIMARY KEY (package, version))")
    for version, script in enumerate(MIGRATIONS[:3], start=1):
        for statement in core_db._statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES ('review', ?, 'then')", (version,))
    conn.execute("INSERT INTO tasks (id, text) VALUES (1, 'a task')")
    conn.execute("INSERT INTO trajectories (seq, id, task_id, record_id, content_hash, source, record, steps, tools,"
                 " has_error, imported_at, updated) VALUES (1, 't', 1, 't', 'h', 's', '{}', 0, '[]', 0, 'now', 'now')")
    conn.execute("INSERT INTO events (trajectory_seq, reviewer, at, kind, decision, request_id)"
                 " VALUES (1, 'ann', 'then', 'decision', 'approved', 'r1')")
    with pytest.raises(sqlite3.IntegrityError):  # version 3 knows no such kind
        conn.execute("INSERT INTO events (trajectory_seq, reviewer, at, kind) VALUES (1, 'ann', 'then', 'preference')")
    conn.close()

    with Store(path) as store:
        event = store.record_preference("t", "ben", {"sample": "s", "best": "1"})
        rows = store.db.read("SELECT id, kind, reviewer, request_id FROM events ORDER BY id")
    assert rows == [(1, "decision", "ann", "r1"), (event.id, "preference", "ben", None)] and event.id == 2
    conn = sqlite3.connect(path)
    for statement in ("UPDATE events SET reviewer = 'eve'", "DELETE FROM events",
                      "INSERT INTO events (trajectory_seq, reviewer, at, kind, request_id) VALUES (1, 'x', 'y', 'claim', 'r1')"):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(statement)


def test_the_trajectory_continues_from_the_pick_as_a_new_one_linked_to_it(app):
    client, server, settings = app
    client.predict("", "card", api_name="/review_open")
    _, shown, _, _ = client.predict(2, 3, MODEL, MODEL, api_name="/review_sample")
    plus = next(label for label, html in columns(shown).items() if "The width plus six" in html)
    server.replies.append("Thought: That is the answer.\nCode:\n```py\nfinal_answer(str(width + 6))\n```<end_action>")
    message, *_ = client.predict("ann", plus, [], True, api_name="/review_pick")
    event_id = next(event[0] for event in events(settings.db) if event[1] == "preference")
    assert message.endswith(f"Continued as `card~pick{event_id}`: pending in the queue (Open by id).")
    with Store(settings.db) as store:
        continued = store.detail(f"card~pick{event_id}")
        original = store.detail("card").trajectory
    steps = continued.trajectory.steps
    assert (continued.source, continued.status) == ("sampler", "pending")
    assert steps[0].model_output == original.steps[0].model_output  # its history: the prefix, then the pick
    assert steps[1].model_output == PLUS and steps[1].observation == "326\n"
    assert steps[2].is_final and continued.answer == "326"  # width was there again after the replay
    assert continued.trajectory.task == original.task and continued.images[0].path.is_file()


@pytest.mark.browser
def test_picks_from_the_keyboard(app):
    from playwright.sync_api import expect

    from tests.support.browser import chromium_page

    client, server, settings = app
    with chromium_page(1400, 1600) as page:
        page.goto(client.src)
        page.get_by_role("tab", name="Review", exact=True).click()
        page.locator("#review-reviewer textarea, #review-reviewer input").first.fill("ann")
        page.locator("#review-open textarea, #review-open input").first.fill("card")
        page.keyboard.press("Enter")
        expect(page.locator("#mat-viewer")).to_contain_text("Measure it.", timeout=15_000)
        page.get_by_text("Sample alternatives at a step").click()
        page.locator("#review-sample-step input").first.fill("2")
        page.locator("#review-sample-run").click()
        expect(page.locator("#review-sample-candidates [data-candidate]")).to_have_count(4, timeout=30_000)
        page.locator("#mat-viewer").click()  # away from any field: the keys are the page's
        shown = columns(page.locator("#review-sample-candidates").inner_html())
        plus = next(label for label, html in shown.items() if "The width plus six" in html)
        guess = next(label for label, html in shown.items() if "The height, I think" in html)
        page.keyboard.press(plus)
        page.keyboard.press(f"Shift+Digit{guess}")
        expect(page.locator(f"#review-sample-best input[value='{plus}']")).to_be_checked()
        expect(page.locator(f"#review-sample-bad input[name='{guess}']")).to_be_checked()
        page.keyboard.press("p")
        expect(page.locator("#review-sample-message")).to_contain_text("Recorded", timeout=15_000)
    (_, _, payload), = [event for event in events(settings.db) if event[1] == "preference"]
    assert (json.loads(payload)["best"], json.loads(payload)["bad"]) == (plus, [guess])
