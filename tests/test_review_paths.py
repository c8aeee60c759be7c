"""Paths stay inside their folders: image names in records that climb out (`../`), are absolute, or go through links
import as refused-and-missing, never as a file from elsewhere; zip members likewise; an agent run's record carries
its attachments beside it, where import and training find them with no extra flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from PIL import Image

from agent.steps import Step, Task, Trajectory
from review.store import Store
from review.viewer import image_views
from tests.support.openai_server import FakeOpenAI

REPO = Path(__file__).resolve().parents[1]


def _record(record_id: str, image: str) -> dict:
    step = Step(index=0, model_output='Thought: done.\nCode:\n```py\nfinal_answer("x")\n```', thought="done.",
                code='final_answer("x")', is_final=True, final_answer='"x"')
    return Trajectory(Task(f"Describe picture {record_id}.", images=[image]), "You are an agent.", [step]) \
        .to_record(record_id)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def _stored_bytes(db: Path) -> set[bytes]:
    return {path.read_bytes() for path in (db.parent / "files").rglob("*") if path.is_file()}


def test_import_refuses_names_that_leave_the_image_folder_or_go_through_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (9, 9), "red").save(outside / "secret.png")
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (9, 9), "green").save(images / "ok.png")
    (images / "link.png").symlink_to(outside / "secret.png")
    (images / "linked").symlink_to(outside, target_is_directory=True)
    names = ["ok.png", "../outside/secret.png", "../../../../../../etc/passwd", str(outside / "secret.png"),
             "link.png", "linked/secret.png", "imgs/../../outside/secret.png"]
    evil = tmp_path / "records" / "evil.json"
    evil.parent.mkdir()
    evil.write_text(json.dumps([_record(f"r{n}", name) for n, name in enumerate(names)]))

    done = _cli("-m", "review", "import", str(evil), "--db", str(tmp_path / "db" / "mat.db"), "--images",
                str(images), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "7 added" in done.stdout and "1 images stored, 6 images missing" in done.stdout
    assert "5 of them refused" in done.stdout and "../outside/secret.png" in done.stdout
    stored = _stored_bytes(tmp_path / "db" / "mat.db")
    assert stored == {(images / "ok.png").read_bytes()}  # no secret, no /etc/passwd

    out = tmp_path / "export"
    with Store(tmp_path / "db" / "mat.db") as store:
        for row in store.query().rows:
            store.decide(row.id, "ann", "approved")
        store.export("messages", out)
    shipped = {path.read_bytes() for path in (out / "images").iterdir()}
    assert shipped == {(images / "ok.png").read_bytes()}


def test_zip_members_that_climb_out_or_are_links_are_not_read(tmp_path):
    Image.new("RGB", (9, 9), "blue").save(tmp_path / "inner.png")
    archive = tmp_path / "files.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(tmp_path / "inner.png", "pics/ok.png")
        handle.write(tmp_path / "inner.png", "../escape.png")
        link = zipfile.ZipInfo("pics/link.png")
        link.external_attr = 0o120777 << 16  # a symbolic link entry whose bytes are a path
        handle.writestr(link, "/etc/passwd")
    with Store(tmp_path / "mat.db") as store:
        report = store.import_records([_record("a", "pics/ok.png"), _record("b", "../escape.png"),
                                       _record("c", "escape.png"), _record("d", "pics/link.png")],
                                      source="zip", images=archive)
        assert (report.images_stored, report.missing_images, report.refused) == (1, 3, ["../escape.png"])
        assert _stored_bytes(store.path) == {(tmp_path / "inner.png").read_bytes()}


def test_a_release_file_finds_its_images_beside_it_and_only_there(tmp_path):
    folder = tmp_path / "release"
    (folder / "attachments").mkdir(parents=True)
    Image.new("RGB", (9, 9), "green").save(folder / "attachments" / "photo.png")
    Image.new("RGB", (9, 9), "red").save(tmp_path / "secret.png")
    (folder / "data.json").write_text(json.dumps([_record("a", "attachments/photo.png"),
                                                  _record("b", "../secret.png")]))
    with Store(tmp_path / "mat.db") as store:
        report = store.import_file(folder / "data.json")
        assert (report.images_stored, report.refused) == (1, ["../secret.png"])
        assert _stored_bytes(store.path) == {(folder / "attachments" / "photo.png").read_bytes()}


def test_the_viewer_shows_only_images_inside_its_folder(tmp_path):
    Image.new("RGB", (9, 9), "red").save(tmp_path / "secret.png")
    shown = tmp_path / "run"
    shown.mkdir()
    Image.new("RGB", (9, 9), "green").save(shown / "plot.png")
    (shown / "link.png").symlink_to(tmp_path / "secret.png")
    views = image_views(["plot.png", "../secret.png", str(tmp_path / "secret.png"), "link.png"], shown)
    assert [view.missing for view in views] == [False, True, True, True]
    assert [view.missing for view in image_views(["plot.png"])] == [True]  # no folder: nothing is read


def test_a_recorded_agent_run_imports_and_trains_with_its_attachments_and_no_extra_flag(tmp_path):
    from train.data import iter_release

    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), "green").save(photo)
    answer = "Thought: done.\nCode:\n```py\nfinal_answer('40x30')\n```"
    out = tmp_path / "out" / "run.json"
    with FakeOpenAI(replies=[answer]) as server:
        env = {**os.environ, "PYTHONPATH": str(REPO), "MAT_BASE_URL": server.url, "MAT_API_KEY": "sk-test",
               "MAT_MODEL": "mat-test", "MAT_DATA_DIR": str(tmp_path / "data")}
        done = subprocess.run([sys.executable, "-m", "agent", "run", "How big is the photo?", "--image", str(photo),
                               "--record", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out.parent / "attachments" / "photo.png").read_bytes() == photo.read_bytes()
    assert not [p for p in out.parent.rglob("*.part")]

    imported = _cli("-m", "review", "import", str(out), "--db", str(tmp_path / "db" / "mat.db"), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "1 added" in imported.stdout and "1 images stored, 0 images missing" in imported.stdout
    (record,) = iter_release(out)
    assert record.image_bytes() == [photo.read_bytes()]
