"""MM-Traj records in and out: reading files, checking records, finding images, exporting.

Reading never half-succeeds: a file is parsed and every record checked before the store
sees any of it, and the first problem is reported with its place in the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.render import render_messages
from agent.steps import Trajectory
from core.files import atomic_folder, atomic_write
from review.errors import StoreError

if TYPE_CHECKING:
    from review.store import Detail, Store

EXPORT_FORMATS = ("mmtraj", "messages", "hf")
# Not a release field: the images each step of an agent run saved ({"0": ["chart.png"]}), kept so Review shows them.
STEP_IMAGES = "step_images"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass
class ParsedRecord:
    """A checked release record, its parsed trajectory and its content hash."""

    record: dict[str, Any]
    trajectory: Trajectory
    content_hash: str

    @property
    def record_id(self) -> str:
        return str(self.record["id"])


class ImageReader(Protocol):
    """Where a record's images come from: `read(name)` gives the bytes behind a record path, or None."""

    def read(self, name: str) -> bytes | None: ...


@dataclass
class Loaded:
    """Records read from a file, folder or Hub id, and the image archive that came with them."""

    records: list[dict[str, Any]]
    images: ImageSource | None = None


@dataclass
class ExportReport:
    """What an export wrote, and what it left out and why."""

    written: int
    skipped_missing_images: int = 0
    missing_files: list[str] = field(default_factory=list)  # record image paths whose files are gone

    def summary(self) -> str:
        line = f"{self.written} trajectories written"
        if self.skipped_missing_images:
            line += f"; {self.skipped_missing_images} left out because an image is missing"
            shown = ", ".join(self.missing_files[:5])
            more = f" and {len(self.missing_files) - 5} more" if len(self.missing_files) > 5 else ""
            line += (f" ({shown}{more}): import them again with their images, or restore the store's files/ folder"
                     if shown else "")
        return line


# ---------------------------------------------------------------- reading


def load(path: str | Path) -> Loaded:
    """Read the release JSON list, JSONL, parquet, a `datasets` folder, or a Hub dataset id."""
    path = Path(path)
    if path.is_dir():
        return _load_folder(path)
    if path.is_file():
        return Loaded(_load_file(path), images_beside(path))
    if _HUB_ID.match(str(path)):
        return _load_hub(str(path))
    raise StoreError(f"{path}: no such file or folder")


def _load_file(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _load_parquet([path])
    if suffix == ".jsonl":
        return _load_jsonl(path)
    if suffix == ".json":
        return _load_json(path)
    raise StoreError(f"{path.name}: unknown format {suffix or '(no suffix)'}; expected .json, .jsonl or .parquet")


def _load_json(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path.name}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path.name}: {json_problem(exc)}") from None
    if not isinstance(data, list):
        raise StoreError(f"{path.name}: expected a JSON list of records, got {type(data).__name__}")
    return data


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line.rstrip("\r\n")))
            except json.JSONDecodeError as exc:
                problem = (f"it ends early at column {len(exc.doc.rstrip()) + 1}" if _cut_off(exc)
                           else f"column {exc.colno}: {_JSON_WORDS.get(exc.msg, exc.msg)}")
                raise StoreError(f"{path.name}: line {number} is not JSON ({problem})") from None
            except UnicodeDecodeError as exc:
                raise StoreError(f"{path.name}: line {number} is not UTF-8 text (byte {exc.start})") from None
    return records


_JSON_WORDS = {
    "Expecting value": "a value is missing",
    "Expecting ',' delimiter": "a comma is missing",
    "Expecting ':' delimiter": "a colon is missing",
    "Expecting property name enclosed in double quotes": "a field name in double quotes is expected",
    "Unterminated string starting at": "a string is not closed",
    "Extra data": "there is more text after the JSON",
    "Invalid control character at": "a string holds a raw control character",
    "Invalid \\escape": "a string holds an invalid backslash escape",
}


def _cut_off(exc: json.JSONDecodeError) -> bool:
    """The text stopped before the JSON did (an unclosed string always runs to the end)."""
    return not exc.doc[exc.pos:].strip() or exc.msg.startswith("Unterminated string")


def json_problem(exc: json.JSONDecodeError) -> str:
    """A JSON syntax error in words, with its line and column; a cut-off file is named as such."""
    if _cut_off(exc):
        end = len(exc.doc.rstrip())
        line, column = exc.doc.count("\n", 0, end) + 1, end - exc.doc.rfind("\n", 0, end)
        return f"the file ends early: truncated JSON at line {line}, column {column}"
    return f"line {exc.lineno}, column {exc.colno}: {_JSON_WORDS.get(exc.msg, exc.msg)}"


def _load_parquet(paths: list[Path]) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            rows.extend(pq.read_table(path).to_pylist())
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise StoreError(f"{path.name}: not a readable parquet file ({type(exc).__name__})") from None
    return [_from_table_row(row) for row in rows]


def _load_folder(path: Path) -> Loaded:
    images = _release_zip(path)
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        return Loaded(_load_dataset_folder(path), images)
    parquet = sorted(path.rglob("*.parquet"))
    if parquet:
        return Loaded(_load_parquet(parquet), images)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".json", ".jsonl"))
    if not files:
        raise StoreError(f"{path}: no .json, .jsonl, .parquet or saved dataset in this folder")
    return Loaded([record for file in files for record in _load_file(file)], images)


def _load_dataset_folder(path: Path) -> list[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError, arrow errors...
        raise StoreError(f"{path}: not a readable saved dataset ({exc})") from None
    splits = loaded.values() if isinstance(loaded, datasets.DatasetDict) else [loaded]
    return [_from_table_row(row) for split in splits for row in split]


def _load_hub(repo_id: str) -> Loaded:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise StoreError(f"{repo_id}: not a local file, and the Hugging Face Hub is offline (HF_HUB_OFFLINE is set)")
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo_id, repo_type="dataset", allow_patterns=["*.json", "*.jsonl", "*.parquet", "*.zip"]
        )
    except Exception as exc:  # network, auth and not-found errors all end the import the same way
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise StoreError(f"{repo_id}: could not download from the Hugging Face Hub ({type(exc).__name__}: {first_line})") from None
    return _load_folder(Path(folder))


def _release_zip(folder: Path) -> ImageSource | None:
    archive = folder / "files.zip"
    return ImageSource(archive) if archive.exists() else None


def _to_table_row(record: dict[str, Any]) -> dict[str, Any]:
    """Arrow needs one type per column; the release's `image` is a str or a dict, so dicts travel as JSON."""
    row = dict(record)
    if not isinstance(row.get("image"), str):
        row["image"] = json.dumps(row.get("image", {}))
    return row


def _from_table_row(row: dict[str, Any]) -> dict[str, Any]:
    record = {key: value for key, value in row.items() if value is not None}
    image = record.get("image")
    if isinstance(image, str) and image[:1] in ("{", "["):
        record["image"] = json.loads(image)
    return record


# ---------------------------------------------------------------- checking


def check_records(records: Iterable[Any]) -> list[ParsedRecord]:
    """Check every record; the first bad one refuses them all, naming its index and field."""
    parsed = []
    for index, record in enumerate(records):
        parsed.append(check_record(record, index))
    return parsed


def check_record(record: Any, index: int) -> ParsedRecord:
    where = f"record {index}"
    if not isinstance(record, dict):
        raise StoreError(f"{where}: expected an object, got {type(record).__name__}")
    if "id" in record:
        where += f" (id {record['id']!r})"
    if not isinstance(record.get("id"), (str, int)) or isinstance(record.get("id"), bool):
        raise StoreError(f"{where}: field 'id' must be a string")
    conversations = record.get("conversations")
    if not isinstance(conversations, list):
        kind = "missing" if conversations is None else f"a {type(conversations).__name__}"
        raise StoreError(f"{where}: field 'conversations' must be a list, got {kind}")
    for turn_index, turn in enumerate(conversations):
        if not (isinstance(turn, dict) and isinstance(turn.get("from"), str) and isinstance(turn.get("value"), str)):
            raise StoreError(f"{where}: field 'conversations[{turn_index}]' must have string 'from' and 'value'")
    for name in ("answer", "correct", "traj_verification"):
        if name in record and not isinstance(record[name], str):
            raise StoreError(f"{where}: field '{name}' must be a string, got {type(record[name]).__name__}")
    if not isinstance(record.get("image", ""), (str, dict, list)):
        raise StoreError(f"{where}: field 'image' must be a string, an object or a list")
    if not isinstance(record.get(STEP_IMAGES, {}), dict):
        raise StoreError(f"{where}: field '{STEP_IMAGES}' must be an object of step number to image names")
    try:
        trajectory = trajectory_of(record)
    except ValueError as exc:
        raise StoreError(f"{where}: field 'conversations': {exc}") from None
    return ParsedRecord(record, trajectory, content_hash(record))


def trajectory_of(record: dict[str, Any]) -> Trajectory:
    """The record's trajectory, with the images its steps saved (when the record lists them)."""
    trajectory = Trajectory.from_conversations(record["conversations"])
    produced = record.get(STEP_IMAGES) or {}
    for step in trajectory.steps:
        step.images = list(produced.get(str(step.index), []))
    return trajectory


def content_hash(record: dict[str, Any]) -> str:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def image_names(record: dict[str, Any], trajectory: Trajectory) -> list[str]:
    """The record's images in the order the task shows them, then any the `image` field adds."""
    image = record.get("image")
    if isinstance(image, str):
        listed = [image] if image else []
    elif isinstance(image, dict):
        listed = [image[key] for key in sorted(image)]
    else:
        listed = list(image or [])
    names = list(trajectory.task.images)
    names += [name for name in listed if isinstance(name, str) and name and name not in names]
    produced = record.get(STEP_IMAGES) or {}
    return names + [name for key in sorted(produced, key=int) for name in produced[key] if name not in names]


def parse_verification(text: str | None) -> tuple[str | None, str | None]:
    """The trajectory verifier's verdict ("yes"/"no") and its reason, from the release's text field."""
    if not text:
        return None, None
    marked = re.search(r"### start json(.*?)### end json", text, re.S)
    body = marked.group(1) if marked else text
    found = re.search(r"\{.*\}", body, re.S)
    if found:
        try:
            data = json.loads(found.group(0))
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            verdict = str(data.get("correct", "")).strip().lower() or None
            return verdict, data.get("thought")
    verdict_only = re.search(r'"correct"\s*:\s*"(yes|no)"', body, re.I)
    return (verdict_only.group(1).lower(), None) if verdict_only else (None, None)


# ---------------------------------------------------------------- images


class ImageRefused(StoreError):
    """An image name that leaves its folder (`..`), or a file reached through a link or that is not a plain file."""


class ImageSource:
    """A folder or a zip of images, looked up by the path a record gives.

    Release paths carry prefixes of the machine they were made on
    (`data/open_llava_next/coco/...`), so a lookup tries the whole path and then
    ever shorter tails of it, down to `folder/file`, always inside the folder or zip:
    a name that climbs out (`..`) is refused, an absolute one is looked up inside too,
    and files are opened beneath the folder without following links (a link swapped
    in after a check would be followed by a plain open).
    """

    def __init__(self, location: Path) -> None:
        self.location = Path(location)
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        if self.location.is_file():
            try:
                self._zip = zipfile.ZipFile(self.location)
            except zipfile.BadZipFile:
                raise StoreError(f"{self.location}: not a zip file") from None
            self._members = _tail_index(info.filename for info in self._zip.infolist()
                                        if not info.is_dir() and not _zip_link(info) and ".." not in _parts(info.filename))
        elif not self.location.is_dir():
            raise StoreError(f"{self.location}: no such image folder or zip")

    def read(self, name: str) -> bytes | None:
        if ".." in _parts(name):
            raise ImageRefused(f"image {name!r} names a path out of its folder: refused")
        for tail in _tails(name):
            if self._zip is not None:
                if tail in self._members:
                    return self._zip.read(self._members[tail])
            else:
                data = read_inside(self.location, tail)
                if data is not None:
                    return data
        return None


def read_inside(root: Path, relative: str) -> bytes | None:
    """The bytes of the plain file `relative` under `root`, opened beneath it without following any link;
    None when there is no such file, ImageRefused for a link, a climb out, or something not a plain file."""
    from agent.sandbox.beneath import PathRefused, open_beneath

    try:
        fd = open_beneath(root, relative, os.O_RDONLY | os.O_NONBLOCK)
    except PathRefused:
        raise ImageRefused(f"image {relative!r} in {root} is reached through a link or leaves the folder: "
                           "refused (links are not followed)") from None
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ImageRefused(f"image {relative!r} in {root} is not a plain file: refused")
        os.set_blocking(handle.fileno(), True)
        return handle.read()


class ImageFiles:
    """Loose image files (uploaded beside a JSON), found by the file name a record path ends with."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._by_name = {Path(path).name: Path(path) for path in paths}

    def __len__(self) -> int:
        return len(self._by_name)

    def read(self, name: str) -> bytes | None:
        found = self._by_name.get(name.replace("\\", "/").rsplit("/", 1)[-1])
        return found.read_bytes() if found is not None else None


def find_image(name: str, stored: Iterable[str]) -> str | None:
    """Which of the `stored` image names `name` refers to, by the rule a release's zip is read with: the whole
    path, then ever shorter tails of both (a release's `Attachment:` line and its `image` field name one file
    under different prefixes)."""
    by_tail = _tail_index(stored)
    return next((by_tail[tail] for tail in _tails(name) if tail in by_tail), None)


def image_reader(images: Path | str | ImageReader) -> ImageReader:
    """A folder or zip path as an ImageSource; anything that already reads images as it is."""
    return ImageSource(Path(images)) if isinstance(images, (str, Path)) else images


def images_beside(path: Path) -> ImageSource | None:
    """Where a release file's images are looked up by default: the `files.zip` beside it, else its own folder
    (only inside it), so a record written with its attachments beside it imports with them."""
    path = Path(path)
    if path.is_dir():
        return _release_zip(path)
    return _release_zip(path.parent) or ImageSource(path.parent)


def file_suffix(name: str) -> str:
    """The suffix a stored copy of `name` gets: a short plain extension, or none."""
    suffix = Path(name.replace("\\", "/")).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def _parts(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _tails(name: str) -> list[str]:
    parts = _parts(name)
    shortest = min(2, len(parts))
    return ["/".join(parts[k:]) for k in range(len(parts) - shortest + 1)]


def _tail_index(names: Iterable[str]) -> dict[str, str]:
    """Each name under its whole path and every shorter tail (the first name to claim a tail keeps it)."""
    index: dict[str, str] = {}
    for name in names:
        for tail in _tails(name):
            index.setdefault(tail, name)
    return index


def _zip_link(info: zipfile.ZipInfo) -> bool:
    """A zip entry stored as a symbolic link (its bytes are a path, not an image)."""
    return stat.S_ISLNK(info.external_attr >> 16)


# ---------------------------------------------------------------- export


def export(store: Store, fmt: str, out: Path, status: str | None = None) -> ExportReport:
    """Write the store's trajectories (edits applied) with `status`, or all of them."""
    out = Path(out)
    if fmt not in EXPORT_FORMATS:
        raise StoreError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    details = store.iter_details(status)
    if fmt == "mmtraj":
        return _export_mmtraj(details, out)
    if fmt == "messages":
        return _export_messages(details, out)
    return _export_hf(details, out)


def export_record(detail: Detail) -> dict[str, Any]:
    """The release record: the stored original when unedited, else with the edits applied."""
    if not detail.edited_fields:
        return detail.record
    record = dict(detail.record)
    record["conversations"] = detail.trajectory.to_conversations()
    if "answer" in detail.edited_fields:
        record["answer"] = detail.answer
    return record


def _export_mmtraj(details: Iterator[Detail], out: Path) -> ExportReport:
    written = 0
    with atomic_write(out) as handle:
        handle.write("[")
        for detail in details:
            handle.write(",\n" if written else "\n")
            handle.write(json.dumps(export_record(detail), ensure_ascii=False))
            written += 1
        handle.write("\n]\n")
    return ExportReport(written)


def _export_messages(details: Iterator[Detail], out: Path) -> ExportReport:
    """`messages.jsonl` plus `images/`, in the chat shape TRL and LLaMA-Factory read."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    report = ExportReport(0)
    with atomic_write(out / "messages.jsonl") as handle:
        for detail in details:
            example = messages_example(detail, out)
            if example is None:
                report.skipped_missing_images += 1
                report.missing_files += [ref.name for ref in detail.images if ref.missing]
                continue
            handle.write(json.dumps(example, ensure_ascii=False) + "\n")
            report.written += 1
    return report


def messages_example(detail: Detail, out: Path) -> dict[str, Any] | None:
    """One training example; None when one of its images is missing (it could not be trained on)."""
    by_name = {ref.name: ref for ref in detail.images}
    trajectory = detail.trajectory
    shown = [by_name.get(name) for name in trajectory.task.images]
    if any(ref is None or ref.missing for ref in shown):
        return None
    images = []
    for ref in shown:
        target = out / "images" / ref.path.name  # the stored copy's name: its content hash
        if not target.exists():
            data = read_inside(ref.path.parent, ref.path.name)
            if data is None:
                return None
            with atomic_write(target, "wb") as copy:
                copy.write(data)
        images.append(f"images/{ref.path.name}")
    messages = render_messages(trajectory, images)
    return {"id": detail.id, "messages": messages, "images": images}


def _dataset(table: dict[str, list], out: Path):
    import datasets

    try:
        return datasets.Dataset.from_dict(table)
    except Exception as exc:  # arrow refuses mixed column types
        raise StoreError(f"{out}: could not save as a dataset ({exc})") from None


def _export_hf(details: Iterator[Detail], out: Path) -> ExportReport:
    import datasets

    datasets.disable_progress_bars()
    rows = [_to_table_row(export_record(detail)) for detail in details]
    if not rows:
        raise StoreError("nothing to export: no trajectory has that status")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = {name: [row.get(name) for row in rows] for name in columns}
    dataset = _dataset(table, out)
    with atomic_folder(out) as partial:
        dataset.save_to_disk(str(partial))
    return ExportReport(len(rows))
