"""Import and export of MM-Traj records: lossless round trips, refused files, images, training shape."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from review.formats import parse_verification
from review.store import Store, StoreError

IMAGE_NAME = "data/open_llava_next/llava/llava_pretrain/images/00023/000235843.jpg"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store(tmp_path / "db" / "mat.db")
    yield opened
    opened.close()


def _snapshot(store: Store) -> tuple:
    """Everything a refused import must leave untouched."""
    tables = ("tasks", "trajectories", "steps", "attachments", "files", "events", "trajectory_tools", "search")
    return tuple(store.db.read(f"SELECT * FROM {table} ORDER BY 1") for table in tables)


def _jpeg(path: Path, colour: str) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), colour).save(path, format="JPEG")
    return path.read_bytes()


def test_release_file_round_trips_to_an_equal_list(store: Store, fidelity_mmtraj_path: Path, tmp_path: Path):
    store.import_file(fidelity_mmtraj_path)
    out = tmp_path / "export" / "mmtraj.json"
    assert store.export("mmtraj", out) == 30
    assert json.loads(out.read_text()) == json.loads(fidelity_mmtraj_path.read_text())


def test_truncated_file_is_refused_with_its_position_and_nothing_changes(store, mmtraj_path, tmp_path):
    store.import_file(mmtraj_path)
    store.decide("v7xej1k3", "ann", "approved")
    before = _snapshot(store)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(mmtraj_path.read_text()[:5000])
    with pytest.raises(StoreError, match=r"^truncated\.json: the file ends early: truncated JSON at line \d+, column \d+$") as refused:
        store.import_file(truncated)
    assert "\n" not in str(refused.value)
    assert _snapshot(store) == before


def test_wrong_field_type_in_record_7_refuses_the_whole_file(store, mmtraj_records, tmp_path):
    broken = json.loads(json.dumps(mmtraj_records))
    broken[7]["conversations"] = "not a list"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    before = _snapshot(store)
    with pytest.raises(StoreError, match=r"record 7 \(id '-UHI-qvJ'\): field 'conversations' must be a list, got a str"):
        store.import_file(path)
    assert _snapshot(store) == before
    assert store.counts()["total"] == 0  # records 0-6 were not imported either


def test_records_that_are_not_mmtraj_are_refused(store, mmtraj_records):
    bad_role = json.loads(json.dumps(mmtraj_records[0]))
    bad_role["conversations"][2]["from"] = "robot"
    with pytest.raises(StoreError, match=r"record 1 \(id 'FQ8cj0s_'\): field 'conversations': turn 2: unknown role 'robot'"):
        store.import_records([mmtraj_records[1], bad_role], source="x")
    with pytest.raises(StoreError, match="record 0: field 'id' must be a string"):
        store.import_records([{"conversations": []}], source="x")
    with pytest.raises(StoreError, match=r"field 'answer' must be a string, got int"):
        store.import_records([{**mmtraj_records[0], "answer": 320}], source="x")
    assert store.counts()["total"] == 0


def test_jsonl_import_and_a_bad_line_number(store, mmtraj_records, tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in mmtraj_records[:5]) + "\n")
    report = store.import_file(path)
    assert report.added == 5 and store.detail(mmtraj_records[4]["id"]).source == "records"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(mmtraj_records[5]) + "\n" + json.dumps(mmtraj_records[6])[:-3] + "\n")
    with pytest.raises(StoreError, match=r"^bad\.jsonl: line 2 is not JSON \(it ends early at column \d+\)$"):
        store.import_file(bad)
    assert store.counts()["total"] == 5


def test_hf_export_and_parquet_import_back_to_the_same_records(store, mmtraj_path, mmtraj_records, tmp_path):
    store.import_file(mmtraj_path)
    folder = tmp_path / "hf"
    assert store.export("hf", folder) == 30
    import datasets

    saved = datasets.load_from_disk(str(folder))
    saved.to_parquet(str(tmp_path / "parquet" / "train-00000.parquet"))

    for location in (folder, tmp_path / "parquet"):
        other = Store(tmp_path / location.name / "fresh.db")
        assert other.import_file(location, source="hub").added == 30
        out = tmp_path / f"{location.name}.json"
        other.export("mmtraj", out)
        assert json.loads(out.read_text()) == mmtraj_records
        assert other.import_file(location).skipped == 30  # same content, so no duplicates
        other.close()


def test_images_from_a_folder_are_stored_by_hash_and_missing_ones_recorded(store, mmtraj_records, tmp_path):
    data = _jpeg(tmp_path / "images" / "llava" / "llava_pretrain" / "images" / "00023" / "000235843.jpg", "red")
    report = store.import_records(mmtraj_records, source="release", images=tmp_path / "images")
    assert report.images_stored == 1 and report.missing_images == 20
    present, missing = store.detail("v7xej1k3").images
    digest = hashlib.sha256(data).hexdigest()
    assert (present.name, present.missing) == (IMAGE_NAME, False)
    assert present.path == store.files_dir / digest[:2] / f"{digest}.jpg" and present.path.read_bytes() == data
    assert missing.missing and missing.path is None
    stored = store.db.value("SELECT path FROM files")
    assert stored == f"files/{digest[:2]}/{digest}.jpg"  # relative to the database


def test_images_from_the_release_zip(store, mmtraj_records, tmp_path):
    data = _jpeg(tmp_path / "pic.jpg", "blue")
    archive = tmp_path / "files.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("files/" + IMAGE_NAME, data)
    release = tmp_path / "release"
    release.mkdir()
    (release / "mmtraj.json").write_text(json.dumps(mmtraj_records))
    (release / "files.zip").write_bytes(archive.read_bytes())
    report = store.import_file(release)
    assert report.images_stored == 1
    assert store.detail("v7xej1k3").images[0].path.read_bytes() == data
    with pytest.raises(StoreError, match="not a zip file"):
        store.import_file(release / "mmtraj.json", images=release / "mmtraj.json")


def test_messages_export_is_chat_shaped_with_images_alongside(store, mmtraj_records, tmp_path):
    _jpeg(tmp_path / "images" / IMAGE_NAME, "red")
    _jpeg(tmp_path / "images" / "data/open_llava_next/llava/llava_pretrain/images/00017/000174008.jpg", "green")
    store.import_records(mmtraj_records, source="release", images=tmp_path / "images")
    store.decide("v7xej1k3", "ann", "approved")
    store.decide("FQ8cj0s_", "ann", "approved")
    out = tmp_path / "train"
    assert store.export("messages", out, status="approved") == 2
    examples = {e["id"]: e for e in map(json.loads, (out / "messages.jsonl").read_text().splitlines())}
    example = examples["v7xej1k3"]
    roles = [m["role"] for m in example["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    record = next(r for r in mmtraj_records if r["id"] == "v7xej1k3")
    assistant = [m["content"][0]["text"] for m in example["messages"] if m["role"] == "assistant"]
    assert assistant == [t["value"] for t in record["conversations"] if t["from"] == "assistant"]
    task = example["messages"][1]["content"]
    assert [part["type"] for part in task] == ["text", "image", "text", "image", "text"]
    assert task[0]["text"] == "Picture 1: " and task[-1]["text"].startswith("\nTask: Check my calendar")
    assert len(example["images"]) == 2 and all((out / p).is_file() for p in example["images"])
    assert examples["FQ8cj0s_"]["images"] == []


def test_messages_export_leaves_out_records_with_missing_images(store, mmtraj_records, tmp_path):
    store.import_records(mmtraj_records, source="release")
    assert store.export("messages", tmp_path / "train") == 14  # the 14 records without images
    with pytest.raises(StoreError, match="unknown export format 'csv'"):
        store.export("csv", tmp_path / "x")


def test_a_hub_id_offline_gets_a_clear_message(store, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StoreError, match="Mat-Agent/MM-Traj: not a local file, and the Hugging Face Hub is offline"):
        store.import_file(Path("Mat-Agent/MM-Traj"))


def test_verifier_verdicts_are_parsed(mmtraj_records):
    verdict, reason = parse_verification(mmtraj_records[0]["traj_verification"])
    assert verdict == "yes" and reason.startswith("The trajectory correctly identifies the need")
    fenced = parse_verification('```json\n{"thought": "Answer is wrong.", "correct": "no"}\n```')
    assert fenced == ("no", "Answer is wrong.")
    assert parse_verification('### start json {"correct": "no", oops ### end json') == ("no", None)
    assert parse_verification(None) == (None, None)
