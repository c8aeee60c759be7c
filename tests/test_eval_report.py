"""The HTML report opened in Debian's Chromium, and base-vs-tuned flips, on two runs of the GTA sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import Settings
from eval.report import flips, html_report
from eval.runner import open_store
from eval.ui import side_by_side
from tests.support.browser import chromium_page
from tests.test_eval_run import gta_folder, oracle_answer, run


@pytest.fixture(scope="module")
def two_runs(gta_path, tmp_path_factory) -> Path:
    """A store with a 'base' run answering wrong and a 'tuned' run answering right; returns the database."""
    tmp = tmp_path_factory.mktemp("report")
    folder = gta_folder(gta_path, tmp / "gta")
    run(tmp, folder, lambda truth: "no idea", "base")
    run(tmp, folder, oracle_answer, "tuned")
    return Settings(data_dir=tmp / "data").db


def test_flips_list_fixed_tasks_first_and_pair_steps_side_by_side(two_runs):
    with open_store(two_runs) as store:
        listed = flips(store, "base", "tuned")
        assert [f.change for f in listed[:6]] == ["fixed"] * 6
        assert {f.change for f in listed[6:]} == {"same"}  # image-generation tasks have no verdict to flip
        assert [f.change for f in flips(store, "tuned", "base")[:6]] == ["broken"] * 6
        pair = side_by_side(store, "base", "tuned", "130")
    assert "eval-pair" in pair and "no idea" in pair and 'mat-text">68<' in pair  # each run's answer
    assert pair.index("base") < pair.index("tuned")


@pytest.mark.browser
def test_html_report_opens_in_chromium_with_its_charts_drawn(two_runs, tmp_path):
    with open_store(two_runs) as store:
        page_html = html_report(store, ["base", "tuned"])
    out = tmp_path / "report.html"
    out.write_text(page_html, encoding="utf-8")
    fetched = []
    with chromium_page() as page:
        page.on("request", lambda request: fetched.append(request.url))
        page.goto(out.as_uri())
        bars = page.locator("svg.mat-chart rect.mat-bar")
        assert bars.count() >= 3
        heights = [bars.nth(i).bounding_box()["height"] for i in range(bars.count())]
        assert max(heights) > 100  # the tuned run's 100% AnsAcc bar is drawn tall
        assert page.locator("svg.mat-chart").bounding_box()["width"] > 200
        scores = page.locator("table").nth(1).inner_text()
        assert ("AnsAcc\tobjective\tofficial\t0.00% (0/6)\t100.00% (6/6)\t53.85% (84/156), mat\t"
                "52.56% (82/156), mat") in scores
        assert page.get_by_text("Tasks that flipped").is_visible()
        assert page.locator(".mat-viewer").count() >= 2  # example trajectories through the shared viewer
        assert page.get_by_text("AnsAcc (GTA)").is_visible()  # definitions travel with the numbers
        from tests.test_eval_browser import LABELS_OUTSIDE

        assert page.locator("svg.mat-chart").evaluate_all(LABELS_OUTSIDE) == []  # every label inside its chart
    assert all(url.startswith(("file:", "data:")) for url in fetched)  # self-contained: nothing fetched


@pytest.mark.parametrize("protocol", ["official", "mat", "fixed"])
def test_text_report_columns_line_up_on_screen_under_every_protocol(two_runs, protocol):
    """Each column starts at the same screen column on every line, wide characters (two columns each) included."""
    import sqlite3

    from eval.report import _screen_width, text_report

    with sqlite3.connect(two_runs) as conn:
        conn.execute("UPDATE eval_runs SET model = '通义千问-VL' WHERE id = 'base'")
    with open_store(two_runs) as store:
        note, *table = text_report(store, ["base", "tuned"], protocol).splitlines()
    assert note.startswith("Compared on the 12 task(s) all 2 runs finished")
    screens = ["".join(ch * _screen_width(ch) for ch in line) for line in table]  # one character per column
    starts = [i for i, ch in enumerate(screens[0]) if ch != " " and (i == 0 or screens[0][i - 2:i] == "  ")]
    assert len(starts) == 7
    for screen in screens:  # at each column's start on screen, every line begins a cell (or has ended)
        assert all(screen[start - 2:start] == "  " and screen[start] != " " or not screen[start:].strip()
                   for start in starts[1:]), (protocol, screen)
    header = table[0]
    assert "通义千问-VL" in header


def test_a_comparison_uses_only_the_tasks_both_runs_finished_and_says_how_many(two_runs, tmp_path):
    import shutil
    import sqlite3

    from eval.report import comparison, comparison_note, text_report

    db = tmp_path / "mat.db"
    shutil.copy(two_runs, db)
    with sqlite3.connect(db) as conn:  # the tuned run stopped early: tasks 130 and 115 have no result yet
        conn.execute("DELETE FROM eval_results WHERE run_id = 'tuned' AND task_id IN ('130', '115')")
        conn.execute("UPDATE eval_results SET status = 'error' WHERE run_id = 'base' AND task_id = '199'")
    with open_store(db) as store:
        header, rows = comparison(store, ["base", "tuned"])
        note = comparison_note(store, ["base", "tuned"])
        alone = {(r[0], r[1]): r[3] for r in comparison(store, ["base"])[1]}
        report = text_report(store, ["base", "tuned"])
    table = {(r[0], r[1]): r[3:5] for r in rows}
    assert table[("AnsAcc", "objective")] == ["0.00% (0/3)", "100.00% (3/3)"]  # 6 objective tasks less 130, 115, 199
    assert note.startswith("Compared on the 9 task(s) all 2 runs finished (results stored: base: 12, tuned: 10)")
    assert report.splitlines()[0] == note
    assert alone[("AnsAcc", "objective")] == "0.00% (0/6)"  # one run alone keeps all its rows
