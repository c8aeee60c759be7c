"""Images for the model: open, convert to RGB, shrink to a pixel budget, encode as a data URL.

The budget follows Qwen2-VL: both sides become multiples of 28 (one merged 2x2 patch of 14 px),
so an image resized here is not resized again by a Qwen processor with the same budget.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

from agent.models.base import ModelError

PATCH = 28
MIN_PIXELS = 56 * 56


def fit_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) rounded to multiples of 28, aspect kept, area within [MIN_PIXELS, max_pixels]."""
    w = max(PATCH, round(width / PATCH) * PATCH)
    h = max(PATCH, round(height / PATCH) * PATCH)
    if w * h > max_pixels:
        scale = math.sqrt(width * height / max_pixels)
        w = max(PATCH, math.floor(width / scale / PATCH) * PATCH)
        h = max(PATCH, math.floor(height / scale / PATCH) * PATCH)
    elif w * h < MIN_PIXELS:
        scale = math.sqrt(MIN_PIXELS / (width * height))
        w = math.ceil(width * scale / PATCH) * PATCH
        h = math.ceil(height * scale / PATCH) * PATCH
    return w, h


def load_image(path: str | Path, max_pixels: int):
    """An RGB PIL image of the file at `path`, resized to the `max_pixels` budget."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except FileNotFoundError:
        raise ModelError(f"image not found: {path}") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        reason = type(exc).__name__
        raise ModelError(f"cannot read {path.name} as an image ({reason}); use a PNG, JPEG, GIF or WebP file") from None
    size = fit_size(*image.size, max_pixels)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    return image


def to_data_url(path: str | Path, max_pixels: int) -> str:
    """The image as a base64 `data:` URL (PNG when the source is PNG, JPEG otherwise)."""
    image = load_image(path, max_pixels)
    fmt = "PNG" if Path(path).suffix.lower() == ".png" else "JPEG"
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/{fmt.lower()};base64,{encoded}"
