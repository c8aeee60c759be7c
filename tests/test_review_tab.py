"""The Review tab through a launched server (gradio_client): steps counted alike everywhere, bulk decisions with a
dry run, descriptors that stay flat over many refreshes; and the tab's shape (a layout and its wiring)."""

from __future__ import annotations

import ast
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client

from review.store import Filters, Store
from tests.support.review_app import review_server, unchanged

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")
NO_FILTER = ("any", [], "any", "any", "any", "any", "any", "", "any")
EVENTS = {"click", "change", "submit", "select", "load", "input", "blur", "tick", "upload"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, mmtraj_path):
    with review_server(tmp_path_factory.mktemp("tab"), mmtraj_path) as running:
        yield running



def _step_section(viewer: str, shown_number: int) -> str:
    """The viewer's section headed "Step N"."""
    return re.search(rf'<section class="mat-step"[^>]*><h3>Step {shown_number}<.*?</section>', viewer, re.S).group(0)


def test_step_numbers_are_the_same_in_the_viewer_the_edit_form_and_the_history(server):
    url, _ = server
    client = Client(url, verbose=False)
    client.predict(*NO_FILTER, api_name="/review_filter")
    client.predict("ann", "GGLn7Jma", api_name="/review_open")
    _table, _counts, header, viewer = client.predict("ann", 1, "thought", "Read the budget first.", "edit-1",
                                                     api_name="/review_edit")
    assert "Read the budget first." in _step_section(viewer, 1)
    assert "Read the budget first." not in _step_section(viewer, 2)
    assert "ann: edited step 1 thought" in header and "edited: step 1 thought" in header
    assert unchanged(client.predict("ann", 9, "thought", "x", "edit-2", api_name="/review_edit"))  # no step 9


def test_bulk_decisions_on_the_page_count_first_and_decide_what_was_counted(server):
    url, settings = server
    with Store(settings.db) as store:
        said_yes = [row.id for row in store.query(Filters(verdict="yes", status="pending"), limit=100).rows]
        for trajectory_id in said_yes[:4]:
            store.record_replay(trajectory_id, True)
    client = Client(url, verbose=False)
    client.predict("any", [], "any", "any", "any", "yes", "any", "", "reproduced", api_name="/review_filter")
    assert unchanged(client.predict("ann", "approved", [], "", api_name="/review_bulk_decide"))  # no dry run yet
    message = client.predict("approved", api_name="/review_bulk_count")
    assert message.startswith("4 pending trajectories of this list would be approved. Nothing is recorded yet")
    with Store(settings.db) as store:
        assert store.counts(Filters(replay="reproduced"))["approved"] == 0
    *_, done = client.predict("bob", "approved", [], "", api_name="/review_bulk_decide")
    assert done == "Done: 4 approved."
    with Store(settings.db) as store:
        for trajectory_id in said_yes[:4]:
            assert [(e.kind, e.reviewer, e.decision) for e in store.detail(trajectory_id).events] == [
                ("decision", "bob", "approved")]


def test_open_descriptors_stay_flat_over_hundreds_of_refreshes(server):
    url, _ = server
    clients = [Client(url, verbose=False) for _ in range(6)]

    def refresh(n: int) -> None:
        clients[n % len(clients)].predict(*NO_FILTER[:-2], ["", "calories", "flowers"][n % 3], "any",
                                          api_name="/review_filter")

    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(refresh, range(30)))  # warm up: Gradio's workers, the pools, the clients' connections
        before = descriptors()
        list(pool.map(refresh, range(170)))
    assert descriptors() <= before + 6, (before, descriptors())


def test_the_tab_is_a_layout_and_its_wiring_with_every_handler_attached_through_wire():
    tree = ast.parse((ROOT / "review" / "ui.py").read_text())
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines" for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 60]
    assert long == []
    direct = [f"line {node.lineno}: .{node.func.attr}(...)" for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in EVENTS]
    assert direct == []
