"""What a newcomer met in the Review tab's first hour, driven over HTTP by gradio_client against the launched app.

Images for the sample records are made here (release records ship without their files.zip).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image

from review.formats import ImageFiles
from review.store import Store
from tests.support.review_app import review_server, unchanged

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")
NO_FILTER = ("any", [], "any", "any", "any", "any", "any", "")
IMG = re.compile(r"<img>(.*?)</img>")


@pytest.fixture(scope="module")
def server(tmp_path_factory, mmtraj_path):
    with review_server(tmp_path_factory.mktemp("newcomer"), mmtraj_path) as running:
        yield running



def _with_images(records: list[dict], prefix: str) -> list[dict]:
    """Copies (new ids) of the sample records whose task shows pictures."""
    chosen = [r for r in records if IMG.search(r["conversations"][1]["value"])][:3]
    return [{**r, "id": f"{prefix}-{r['id']}"} for r in chosen]


def _picture_files(records: list[dict], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, name in enumerate(sorted({m for r in records for m in IMG.findall(r["conversations"][1]["value"])})):
        path = folder / Path(name).name
        Image.new("RGB", (40, 30), (10 * n, 90, 200)).save(path)
        paths.append(path)
    return paths


def _filter(client: Client, search: str):
    return client.predict(*NO_FILTER[:-1], search, api_name="/review_filter")


def test_import_takes_image_files_or_a_zip_and_says_how_to_supply_missing_ones(server, tmp_path, mmtraj_records):
    url, settings = server
    client = Client(url, verbose=False)
    loose = _with_images(mmtraj_records, "loose")
    data = tmp_path / "loose.json"
    data.write_text(json.dumps(loose))
    pictures = _picture_files(loose, tmp_path / "pics")
    message, *_ = client.predict([handle_file(str(data)), *(handle_file(str(p)) for p in pictures)], "",
                                 api_name="/review_import")
    needed = sum(len(IMG.findall(r["conversations"][1]["value"])) for r in loose)
    assert f"3 added, 0 already present (skipped), {needed} images stored, 0 images missing" in message

    zipped = _with_images(mmtraj_records, "zipped")
    data = tmp_path / "zipped.json"
    data.write_text(json.dumps(zipped))
    message, *_ = client.predict([handle_file(str(data))], "", api_name="/review_import")
    assert f"{needed} images missing" in message and "files.zip" in message and "image files" in message
    archive = tmp_path / "files.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for record in zipped:
            for name in IMG.findall(record["conversations"][1]["value"]):
                handle.write(tmp_path / "pics" / Path(name).name, name)
    message, *_ = client.predict([handle_file(str(data)), handle_file(str(archive))], "", api_name="/review_import")
    assert f"0 added, 3 already present (skipped), {needed} images stored, 0 images missing" in message
    _table, _counts, _header, viewer = client.predict("", zipped[0]["id"], api_name="/review_open")
    assert "data:image/jpeg;base64," in viewer and "missing image" not in viewer


def test_a_malformed_upload_is_named_in_words_without_the_servers_temp_path(server, tmp_path):
    url, _ = server
    client = Client(url, verbose=False)
    cut = tmp_path / "cut.json"
    cut.write_text('[\n {"id": "a", "conversations": [\n  {"from": "system", "value": "You are')
    message, *rest = client.predict([handle_file(str(cut))], "", api_name="/review_import")
    assert message == "Not imported: cut.json: the file ends early: truncated JSON at line 3, column 39"
    assert unchanged(rest)


def test_page_export_says_what_it_left_out_and_why(server, tmp_path, mmtraj_records):
    url, settings = server
    client = Client(url, verbose=False)
    records = _with_images(mmtraj_records, "export")
    data = tmp_path / "export.json"
    data.write_text(json.dumps(records))
    pictures = _picture_files(records, tmp_path / "pics")
    client.predict([handle_file(str(data)), *(handle_file(str(p)) for p in pictures)], "", api_name="/review_import")
    for record in records:
        client.predict("cat", record["id"], api_name="/review_open")
        client.predict("cat", [], "", False, api_name="/review_approved")
    with Store(settings.db) as store:
        gone = store.detail(records[0]["id"]).images[0]
    gone.path.unlink()
    _file, message = client.predict("messages", "approved", api_name="/review_export")
    assert "2 trajectories written; 1 left out because an image is missing" in message
    assert gone.name in message


def test_search_treats_what_people_type_as_words(server):
    url, _ = server
    client = Client(url, verbose=False)
    for typed in ('"', '""', "(", "AND", "a OR", "NEAR(", "*", "calor*)"):
        table, *_ = _filter(client, typed)
        assert isinstance(table, dict) and "data" in table, typed
    for typed in ("calor*", "calor", "CALORIES"):
        table, *_ = _filter(client, typed)
        assert {"FQ8cj0s_", "PVEzDQ9Z"} <= {row[0] for row in table["data"]}, typed


def test_undo_takes_back_only_the_reviewers_own_decision(server):
    url, settings = server
    ann, bob = Client(url, verbose=False), Client(url, verbose=False)
    for client in (ann, bob):
        client.predict(*NO_FILTER, api_name="/review_filter")
        client.predict("", "gmLQQPIv", api_name="/review_open")
    ann.predict("ann", [], "", False, api_name="/review_approved")
    # bob's page still shows it pending: a decision on what ann changed since is refused until he looks again
    assert unchanged(bob.predict("bob", ["wrong_answer"], "", False, api_name="/review_rejected"))
    bob.predict("", "gmLQQPIv", api_name="/review_open")
    bob.predict("bob", ["wrong_answer"], "", False, api_name="/review_rejected")
    ann.predict("ann", api_name="/review_undo")
    with Store(settings.db) as store:
        assert store.detail("gmLQQPIv").status == "rejected"  # bob's decision stands
    assert unchanged(ann.predict("ann", api_name="/review_undo"))  # nothing of ann's is left to take back

    ann.predict("ann", [], "", False, api_name="/review_approved")
    bob.predict("", "gmLQQPIv", api_name="/review_open")
    bob.predict("bob", ["wrong_answer"], "", False, api_name="/review_rejected")
    undos = [threading.Thread(target=c.predict, args=(name,), kwargs={"api_name": "/review_undo"})
             for c, name in ((ann, "ann"), (bob, "bob"))]
    for thread in undos:
        thread.start()
    for thread in undos:
        thread.join()
    with Store(settings.db) as store:
        detail = store.detail("gmLQQPIv")
    assert detail.status == "rejected"  # bob's first rejection; the second of each was taken back
    undone = {event.payload["undoes"]: event.reviewer for event in detail.events if event.kind == "undo"}
    by_id = {event.id: event.reviewer for event in detail.events}
    assert all(by_id[target] == who for target, who in undone.items()) and len(undone) == 3


def test_browsing_with_j_and_k_does_not_claim_decided_trajectories(server):
    url, settings = server
    ann, bob = Client(url, verbose=False), Client(url, verbose=False)
    ann.predict(*NO_FILTER, api_name="/review_filter")
    table, *_ = bob.predict(*NO_FILTER, api_name="/review_filter")
    first, second = table["data"][0][0], table["data"][1][0]
    ann.predict("", first, api_name="/review_open")
    ann.predict("ann", [], "", False, api_name="/review_approved")
    bob.predict("", second, api_name="/review_open")
    _table, _counts, header, _viewer = bob.predict("bob", api_name="/review_previous")
    assert f"<b>{first}</b>" in header
    with Store(settings.db) as store:
        assert store.detail(first).holder is None


def test_cli_export_with_the_files_folder_gone_names_the_missing_files(tmp_path, mmtraj_records):
    import subprocess
    import sys

    records = _with_images(mmtraj_records, "cli")
    data = tmp_path / "cli.json"
    data.write_text(json.dumps(records))
    pictures = ImageFiles(_picture_files(records, tmp_path / "pics"))
    db = tmp_path / "store" / "mat.db"
    with Store(db) as store:
        store.import_file(data, images=pictures)
        for record in records:
            store.decide(record["id"], "ann", "approved")
    shutil.rmtree(db.parent / "files")
    result = subprocess.run([sys.executable, "-m", "review", "export", "--db", str(db), "--format", "messages",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "0 trajectories written; 3 left out because an image is missing" in result.stdout
    first = IMG.findall(records[0]["conversations"][1]["value"])[0]
    assert first in result.stdout and "files" in result.stderr


@pytest.mark.usefixtures("timed_heap")
def test_a_decision_during_a_long_import_is_not_kept_waiting(tmp_path, mmtraj_records):
    """The import runs on a thread beside the decisions, as an upload in the app does."""
    db = tmp_path / "mat.db"
    with Store(db) as store:
        store.import_records(mmtraj_records[:1], source="first")
    many = [{**record, "id": f"bulk{n}-{record['id']}"} for n in range(200) for record in mmtraj_records]
    importer = Store(db)
    running = threading.Thread(target=importer.import_records, args=(many,), kwargs={"source": "bulk"})
    waits = []  # (seconds a decision took, whether the import had begun writing when it was asked for)
    with Store(db) as reviewer:
        running.start()
        while running.is_alive():
            writing = reviewer.counts()["total"] > 1  # the import checks every record before it writes any
            before = time.monotonic()
            reviewer.decide(mmtraj_records[0]["id"], "ann", "approved" if len(waits) % 2 else "skipped")
            waits.append((time.monotonic() - before, writing))
            time.sleep(0.05)
        running.join()
        assert reviewer.counts()["total"] == 1 + len(many)
    importer.close()
    assert sum(writing for _, writing in waits) >= 3, "the import ended before decisions could be timed"
    assert max(seconds for seconds, _ in waits) < 1.0, waits


@pytest.mark.usefixtures("timed_heap")
def test_a_decision_is_not_kept_waiting_by_an_import_in_another_process(tmp_path, mmtraj_records):
    import subprocess
    import sys

    db = tmp_path / "mat.db"
    many = tmp_path / "many.json"
    many.write_text(json.dumps([{**r, "id": f"cli{n}-{r['id']}"} for n in range(120) for r in mmtraj_records]))
    with Store(db) as reviewer:
        reviewer.import_records(mmtraj_records[:1], source="first")
        importing = subprocess.Popen([sys.executable, "-m", "review", "import", str(many), "--db", str(db)],
                                     cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
        waits = []
        while importing.poll() is None:
            before = time.monotonic()
            reviewer.decide(mmtraj_records[0]["id"], "ann", "approved")
            waits.append(time.monotonic() - before)
            time.sleep(0.05)
        assert importing.returncode == 0 and reviewer.counts()["total"] == 1 + 120 * len(mmtraj_records)
    assert len(waits) >= 10 and max(waits) < 1.0, sorted(waits)[-3:]
