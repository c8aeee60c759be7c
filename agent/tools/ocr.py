"""Reading text in images with RapidOCR (its ONNX models ship inside the wheel, so it works offline)."""

from __future__ import annotations

from agent.tools.backends import cached, require_module
from agent.tools.base import Tool, ToolContext, register
from agent.tools.images import open_image
from agent.tools.untrusted import as_data


def _engine():
    require_module("rapidocr", "ocr", "pip install 'mat-studio[tools]' (rapidocr and onnxruntime)")

    def build():
        from rapidocr import RapidOCR

        return RapidOCR()

    return cached(("rapidocr",), build)


def read_lines(ctx: ToolContext, image_path: str) -> list[tuple[list[int], str]]:
    """Recognised text lines, top to bottom, each with its axis-aligned box [x1, y1, x2, y2]."""
    import numpy as np

    img = open_image(ctx, image_path)
    result = _engine()(np.asarray(img))
    if result.txts is None:
        return []
    lines = []
    for polygon, text in zip(result.boxes, result.txts, strict=False):
        xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
        lines.append(([round(min(xs)), round(min(ys)), round(max(xs)), round(max(ys))], text))
    return sorted(lines, key=lambda line: (line[0][1], line[0][0]))


def format_lines(lines: list[tuple[list[int], str]]) -> str:
    if not lines:
        return "No text was found in the image."
    body = "\n".join(f"({x1}, {y1}, {x2}, {y2}) {text}" for (x1, y1, x2, y2), text in lines)
    return as_data(body, "ocr text")


def ocr(ctx: ToolContext, image_path: str) -> str:
    return format_lines(read_lines(ctx, image_path))


register(Tool(
    name="ocr",
    description="A tool that can recognize the text in given images, outputing each text line with its "
                "bounding box (x1, y1, x2, y2).",
    inputs={"image_path": {"description": "The path to the image whose text should be read.", "type": "text"}},
    output_type="text",
    fn=ocr,
))
