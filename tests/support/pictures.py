"""Pictures for the sample records, drawn with PIL at the sizes real photos and screenshots have.

tests/fixtures/pictures.json says what each picture the fixtures name shows: a `text` card (a menu, a timetable,
a sign: lines a real OCR can read), a `photo` (sky, ground and a few objects), a `chart` (bars) or `objects`
(a number of round things to count). A name it does not list is drawn as a photo chosen from the name, so any
record's pictures can be drawn, the real release sample's included.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from PIL import Image, ImageDraw

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "pictures.json"


@functools.lru_cache(maxsize=1)
def specs() -> dict[str, dict]:
    return json.loads(SPECS.read_text())


def spec_for(name: str) -> dict:
    """What the picture `name` shows: its entry in pictures.json, else a photo chosen from the name."""
    if name in specs():
        return specs()[name]
    digest = hashlib.sha256(name.encode()).digest()
    colour = "#{:02x}{:02x}{:02x}".format(*digest[:3])
    return {"kind": "photo", "size": [640, 480], "sky": "#bcd4e6", "ground": "#6b8e4e", "objects": 1 + digest[3] % 6,
            "color": colour}


def draw(spec: dict) -> Image.Image:
    width, height = spec["size"]
    return {"text": _text, "photo": _photo, "chart": _chart, "objects": _objects}[spec["kind"]](spec, width, height)


def save_picture(name: str, path: Path) -> Path:
    """Draw the picture `name` (a path as a record names it) into `path`, in the format its suffix says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = draw(spec_for(name))
    picture.save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG", quality=90)
    return path


def _font(size: int):
    from agent.tools.images import font

    return font(size)


def _text(spec: dict, width: int, height: int) -> Image.Image:
    picture = Image.new("RGB", (width, height), spec.get("background", "white"))
    draw = ImageDraw.Draw(picture)
    lines = spec["lines"]
    size = max(14, min(height // (2 * len(lines) + 1), width // max(12, max(len(line) for line in lines) * 2 // 3)))
    for number, line in enumerate(lines):
        draw.text((width // 16, size + number * size * 2), line, fill=spec.get("ink", "black"), font=_font(size))
    return picture


def _photo(spec: dict, width: int, height: int) -> Image.Image:
    picture = Image.new("RGB", (width, height), spec["sky"])
    draw = ImageDraw.Draw(picture)
    horizon = height * 3 // 5
    draw.rectangle((0, horizon, width, height), fill=spec["ground"])
    count = spec["objects"]
    for n in range(count):
        left = width * (2 * n + 1) // (2 * count + 1)
        size = width // (2 * count + 2)
        draw.ellipse((left, horizon - size // 2, left + size, horizon + size // 2), fill=spec["color"], outline="black")
    return picture


def _chart(spec: dict, width: int, height: int) -> Image.Image:
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    values, labels = spec["values"], spec["labels"]
    top, bottom, step = height // 10, height - height // 8, width // (len(values) + 1)
    draw.line((step // 2, bottom, width - step // 2, bottom), fill="black", width=2)
    for n, (value, label) in enumerate(zip(values, labels, strict=True)):
        left = step // 2 + n * step + step // 4
        bar_top = bottom - (bottom - top) * value // max(values)
        draw.rectangle((left, bar_top, left + step // 2, bottom), fill="#4472c4")
        draw.text((left, bottom + 8), label, fill="black", font=_font(height // 30))
        draw.text((left, bar_top - height // 25), str(value), fill="black", font=_font(height // 30))
    return picture


def _objects(spec: dict, width: int, height: int) -> Image.Image:
    picture = Image.new("RGB", (width, height), spec.get("background", "white"))
    draw = ImageDraw.Draw(picture)
    count, columns = spec["count"], 4
    rows = -(-count // columns)
    size = min(width // (columns + 1), height // (rows + 1))
    for n in range(count):
        row, column = divmod(n, columns)
        left = (column + 1) * width // (columns + 1) - size // 2
        top = (row + 1) * height // (rows + 1) - size // 2
        draw.ellipse((left, top, left + size, top + size), fill=spec["color"], outline="black", width=2)
    return picture
