"""Opening images the model names, drawing on them, and saving the results where the model can find them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from agent.tools.base import ToolContext, ToolError

if TYPE_CHECKING:
    from PIL import Image

_NUMBER = r"-?\d+(?:\.\d+)?"
_COLORS = ["red", "lime", "blue", "orange", "magenta", "cyan", "yellow"]


def open_image(ctx: ToolContext, path: str) -> Image.Image:
    """The image behind a model-given path, as RGB, decoded from the file opened once (ToolContext.open_file)."""
    from PIL import Image, UnidentifiedImageError

    with ctx.open_file(path) as file:
        try:
            with Image.open(file) as img:
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError):
            raise ToolError(f"'{path}' is not an image this tool can read") from None


def save_image(ctx: ToolContext, img: Image.Image, stem: str) -> str:
    """Write `img` as PNG under .cache/; returns the path the model uses."""
    return ctx.write_output(stem, ".png", lambda file: img.save(file, format="PNG"))


def parse_box(value: str | Sequence[float]) -> tuple[float, float, float, float]:
    """A box from `(x1, y1, x2, y2)` text or a 4-number sequence (numbers only; nothing is evaluated)."""
    numbers = re.findall(_NUMBER, value) if isinstance(value, str) else list(value)
    try:
        x1, y1, x2, y2 = (float(n) for n in numbers)
    except (TypeError, ValueError):
        raise ToolError(f"a box must be four numbers (x1, y1, x2, y2), got {value!r}") from None
    if x2 <= x1 or y2 <= y1:
        raise ToolError(f"a box needs x2 > x1 and y2 > y1, got {value!r}")
    return x1, y1, x2, y2


def font(size: int):
    """DejaVu Sans from matplotlib's own files (always there), or PIL's default."""
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size)


def draw_boxes(img: Image.Image, boxes: Sequence[Sequence[float]], labels: Sequence[str] = ()) -> Image.Image:
    """A copy of `img` with each box outlined and optionally labelled."""
    from PIL import ImageDraw

    out = img.copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(min(img.size) / 200))
    text_font = font(max(12, round(min(img.size) / 30)))
    for i, box in enumerate(boxes):
        color = _COLORS[i % len(_COLORS)]
        draw.rectangle([float(v) for v in box], outline=color, width=width)
        if i < len(labels) and labels[i]:
            draw.text((float(box[0]) + width, float(box[1]) + width), labels[i], fill=color, font=text_font)
    return out
