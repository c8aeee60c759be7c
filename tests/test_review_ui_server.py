"""The Review tab through a launched Gradio server, driven over HTTP by gradio_client."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from review.store import Store
from tests.support.review_app import review_server, unchanged

# gradio's own Dataframe code trips pandas 3 deprecation notices; they are not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")
NO_FILTER = ("any", [], "any", "any", "any", "any", "any", "")


@pytest.fixture(scope="module")
def server(tmp_path_factory, mmtraj_path):
    with review_server(tmp_path_factory.mktemp("review"), mmtraj_path) as running:
        yield running



def _count(counts_html: str, status: str) -> int:
    return int(re.search(rf'id="review-count-{status}">(\d+)<', counts_html).group(1))


def test_filtering_lists_only_matching_trajectories(server, mmtraj_records):
    url, _ = server
    client = Client(url, verbose=False)
    table, counts, header, _ = client.predict("any", [], "any", "any", "yes", "any", "any", "", api_name="/review_filter")
    with_errors = {r["id"] for r in mmtraj_records if any("] Error:" in t["value"][:40] for t in r["conversations"])}
    assert {row[0] for row in table["data"]} == with_errors
    table, *_ = client.predict("any", [], "any", "any", "any", "any", "any", "vacation", api_name="/review_filter")
    assert "GGLn7Jma" in {row[0] for row in table["data"]}
    assert "Page 1" in header


def test_open_decide_and_undo_over_http(server, mmtraj_records):
    url, settings = server
    client = Client(url, verbose=False)
    client.predict(*NO_FILTER, api_name="/review_filter")
    table, counts, header, viewer = client.predict("", "GGLn7Jma", api_name="/review_open")
    assert "Error in code parsing" in viewer and 'id="review-status">pending<' in header
    approved_before = _count(counts, "approved")

    assert unchanged(client.predict("", [], "", False, api_name="/review_approved"))
    table, counts, header, viewer, reasons, note = client.predict("ann", [], "", False, api_name="/review_approved")
    assert _count(counts, "approved") == approved_before + 1
    assert 'id="review-status">approved<' in header and "ann: approved" in header
    assert dict((row[0], row[1]) for row in table["data"])["GGLn7Jma"] == "approved"

    assert unchanged(client.predict("ann", [], "", False, api_name="/review_rejected"))
    client.predict("ann", api_name="/review_undo")
    with Store(settings.db) as store:
        assert store.detail("GGLn7Jma").status == "pending"


def test_export_downloads_the_approved_records(server, mmtraj_records):
    url, _ = server
    client = Client(url, verbose=False)
    client.predict(*NO_FILTER, api_name="/review_filter")
    client.predict("bob", "FQ8cj0s_", api_name="/review_open")
    client.predict("bob", [], "", False, api_name="/review_approved")
    downloaded, message = client.predict("mmtraj", "approved", api_name="/review_export")
    assert message.startswith("Exported as mmtraj: ") and "trajectories written" in message
    exported = json.loads(Path(downloaded).read_text())
    original = next(r for r in mmtraj_records if r["id"] == "FQ8cj0s_")
    assert next(r for r in exported if r["id"] == "FQ8cj0s_") == original


def test_upload_imports_new_records_and_refuses_a_broken_file(server, tmp_path, mmtraj_records):
    url, _ = server
    client = Client(url, verbose=False)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a"}\n{not json\n')
    message, *rest = client.predict([handle_file(str(broken))], "", api_name="/review_import")
    assert message == "Not imported: broken.jsonl: line 2 is not JSON (column 2: a field name in double quotes is expected)"
    assert unchanged(rest)
    fresh = tmp_path / "fresh.jsonl"
    fresh.write_text("".join(json.dumps({**r, "id": f"new-{r['id']}"}) + "\n" for r in mmtraj_records[:2]))
    message, _tools, sources, _verdicts, table, counts, *_ = client.predict(
        [handle_file(str(fresh))], "mine", api_name="/review_import")
    assert "2 added" in message and _count(counts, "pending") >= 2
    assert "mine" in [choice[0] for choice in sources["choices"]]


def test_with_auth_on_the_login_names_the_reviewer(tmp_path, mmtraj_path):
    with review_server(tmp_path, mmtraj_path, auth="ann:secret") as (url, settings):
        client = Client(url, auth=("ann", "secret"), verbose=False)
        client.predict(*NO_FILTER, api_name="/review_filter")
        client.predict("", "FQ8cj0s_", api_name="/review_open")
        client.predict("", [], "", False, api_name="/review_approved")
        with Store(settings.db) as store:
            assert store.detail("FQ8cj0s_").events[-1].reviewer == "ann"
