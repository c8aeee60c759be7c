"""The GTA benchmark's 14 tools, with GTA's names and arguments, on the same backends as the MAT tools."""

from __future__ import annotations

from typing import Any

from agent.tools.base import Tool, ToolContext, ToolError, register
from agent.tools.calculator import evaluate
from agent.tools.detection import locate
from agent.tools.diffusion import image_edit, image_generator
from agent.tools.images import draw_boxes, font, open_image, parse_box, save_image
from agent.tools.ocr import format_lines, read_lines
from agent.tools.program import run_solution
from agent.tools.search import format_hits, web_search
from agent.tools.vision import ask_vlm

_BBOX_HELP = "The bbox coordinate in the format of `(x1, y1, x2, y2)`"
_OBJECT_HELP = "The object description in English."
_REQUIRED = object()


def _arg(kind: str, description: str | None = None, default: Any = _REQUIRED) -> dict[str, Any]:
    """One input as GTA's tool metadata states it."""
    spec: dict[str, Any] = {"type": kind}
    if description:
        spec["description"] = description
    if default is not _REQUIRED:
        spec.update(optional=True, default=default)
    return spec


def _crop(ctx: ToolContext, image: str, bbox: str, stem: str) -> str:
    """The region of `image` inside `bbox`, saved under .cache/ so the other backends can read it."""
    img = open_image(ctx, image)
    x1, y1, x2, y2 = parse_box(bbox)
    width, height = img.size
    box = (max(0, x1), max(0, y1), min(width, x2), min(height, y2))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ToolError(f"the box {bbox!r} lies outside the {width}x{height} image")
    return save_image(ctx, img.crop(box), stem)


def OCR(ctx: ToolContext, image: str) -> str:
    return format_lines(read_lines(ctx, image))


def ImageDescription(ctx: ToolContext, image: str) -> str:
    return ask_vlm(ctx, "Describe this image briefly: the main subjects, what they do, and the setting.", image,
                   "ImageDescription")


def RegionAttributeDescription(ctx: ToolContext, image: str, bbox: str, attribute: str) -> str:
    region = _crop(ctx, image, bbox, "region")
    return ask_vlm(ctx, f"Describe the {attribute} of the object in this image region. Answer briefly.", region,
                   "RegionAttributeDescription")


def TextToBbox(ctx: ToolContext, image: str, text: str, top1: bool = True) -> str:
    found = locate(ctx, text, image)
    if not found:
        return f"No {text!r} was detected in the image."
    rows = found[:1] if top1 else found
    return "\n".join(f"({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}), score {score:.2f}"
                     for (x1, y1, x2, y2), score in rows)


def CountGivenObject(ctx: ToolContext, image: str, text: str, bbox: str | None = None) -> int:
    target = _crop(ctx, image, bbox, "region") if bbox else image
    return len(locate(ctx, text, target))


def MathOCR(ctx: ToolContext, image: str) -> str:
    return ask_vlm(ctx, "Transcribe the mathematical expressions in this image as LaTeX. Reply with the LaTeX only.",
                   image, "MathOCR")


def Calculator(ctx: ToolContext, expression: str) -> str:
    return str(evaluate(expression))


def Solver(ctx: ToolContext, command: str) -> str:
    return run_solution(ctx, command, "print(solution())", "Solver").strip()


def Plot(ctx: ToolContext, command: str) -> str:
    shown = ctx.output_name("plot", ".png")
    call = (f"_plot_path = {shown!r}\n"
            "try:\n    _plot_result = solution()\nexcept TypeError:\n    _plot_result = solution(_plot_path)\n"
            "if hasattr(_plot_result, 'savefig'):\n    _plot_result.savefig(_plot_path)\n"
            "else:\n    import matplotlib.pyplot as _plot_plt\n    _plot_plt.savefig(_plot_path)\n")
    run_solution(ctx, "import matplotlib\nmatplotlib.use('Agg')\n" + command, call, "Plot")
    if not ctx.exists(shown):
        raise ToolError("Plot: the code ran but saved no figure; make `solution()` return the matplotlib figure")
    return shown


def DrawBox(ctx: ToolContext, image: str, bbox: str, annotation: str | None = None) -> str:
    img = open_image(ctx, image)
    return save_image(ctx, draw_boxes(img, [parse_box(bbox)], [annotation or ""]), "box")


def _text_origin(position: str, size: tuple[int, int], text_size: tuple[int, int]) -> tuple[float, float]:
    """Top-left corner for the text: from "(x, y)" (its left-bottom corner) or a code like "mt"."""
    (width, height), (tw, th), margin = size, text_size, max(4, round(min(size) / 50))
    code = str(position).strip().lower()
    if len(code) == 2 and code[0] in "lmr" and code[1] in "tmb":
        x = {"l": margin, "m": (width - tw) / 2, "r": width - tw - margin}[code[0]]
        y = {"t": margin, "m": (height - th) / 2, "b": height - th - margin}[code[1]]
        return x, y
    numbers = code.strip("()[] ").split(",")
    try:
        x, y = (float(n) for n in numbers)
    except ValueError:
        raise ToolError(f"position must be '(x, y)' or a code like 'lt', 'mm', 'rb'; got {position!r}") from None
    return x, y - th


def AddText(ctx: ToolContext, image: str, text: str, position: str, color: str = "red") -> str:
    from PIL import ImageColor, ImageDraw

    img = open_image(ctx, image)
    try:
        fill = ImageColor.getrgb(str(color))
    except ValueError:
        raise ToolError(f"unknown color {color!r}") from None
    draw = ImageDraw.Draw(img)
    text_font = font(max(12, round(img.size[1] / 20)))
    left, top, right, bottom = draw.textbbox((0, 0), str(text), font=text_font)
    x, y = _text_origin(position, img.size, (right - left, bottom - top))
    draw.text((x - left, y - top), str(text), fill=fill, font=text_font)
    return save_image(ctx, img, "text")


def GoogleSearch(ctx: ToolContext, query: str, k: int = 10) -> str:
    backend, hits = web_search(ctx, query, int(k))
    return format_hits(query, backend, hits)


def TextToImage(ctx: ToolContext, keywords: str) -> str:
    return image_generator(ctx, keywords)


def ImageStylization(ctx: ToolContext, image: str, instruction: str) -> str:
    return image_edit(ctx, instruction, image)


_SOLVER_HELP = (
    "This tool can execute Python code to solve math equations. The code should include a function named "
    "'solution'. You should use the `sympy` library in your code to solve the equations. The function should return "
    "its answer in str format. Avoid printing the answer."
)
_PLOT_HELP = (
    "This tool can execute Python code to plot diagrams. The code should include a function named 'solution'. The "
    "function should return the matplotlib figure directly. Avoid printing the answer."
)
_GTA_TOOLS = [
    (OCR, "This tool can recognize all text on the input image.", {"image": _arg("image")}, "text"),
    (ImageDescription, "A useful tool that returns a brief description of the input image.",
     {"image": _arg("image")}, "text"),
    (RegionAttributeDescription, "Describe the attribute of a region of the input image.",
     {"image": _arg("image"), "bbox": _arg("text", _BBOX_HELP), "attribute": _arg("text", "The attribute to describe")},
     "text"),
    (TextToBbox, "The tool can detect the object location according to description.",
     {"image": _arg("image"), "text": _arg("text", _OBJECT_HELP),
      "top1": _arg("bool", "If true, return the object with highest score. If false, return all detected objects.",
                   True)}, "text"),
    (CountGivenObject, "The tool can count the number of a certain object in the image.",
     {"image": _arg("image"), "text": _arg("text", _OBJECT_HELP), "bbox": _arg("text", _BBOX_HELP, None)}, "int"),
    (MathOCR, "This tool can recognize math expressions from an image and return the latex style expression.",
     {"image": _arg("image")}, "text"),
    (Calculator, "A calculator tool. The input must be a single Python expression and you cannot import packages. "
                 "You can use functions in the `math` package without import.", {"expression": _arg("text")}, "text"),
    (Solver, _SOLVER_HELP, {"command": _arg("text", "Markdown format Python code")}, "text"),
    (DrawBox, "A tool to draw a box on a certain region of the input image.",
     {"image": _arg("image"), "bbox": _arg("text", _BBOX_HELP),
      "annotation": _arg("text", "The extra annotation text of the bbox", None)}, "image"),
    (AddText, "A tool to draw a box on a certain region of the input image.",
     {"image": _arg("image"), "text": _arg("text"),
      "position": _arg("text", "The left-bottom corner coordinate in the format of `(x, y)`, or a combination of "
                               "[\"l\"(left), \"m\"(middle), \"r\"(right)] and [\"t\"(top), \"m\"(middle), "
                               "\"b\"(bottom)] like \"mt\" for middle-top"),
      "color": _arg("text", None, "red")}, "image"),
    (GoogleSearch, "The tool can search the input query text from Google and return the related results.",
     {"query": _arg("text"), "k": _arg("int", "Select the first k results", 10)}, "text"),
    (Plot, _PLOT_HELP, {"command": _arg("text", "Markdown format Python code")}, "image"),
    (TextToImage, "This tool can generate an image according to the input text.",
     {"keywords": _arg("text", "A series of keywords separated by comma.")}, "image"),
    (ImageStylization, "This tool can modify the input image according to the input instruction. Here are some "
                       "example instructions: \"turn him into cyborg\", \"add fireworks to the sky\", \"make his "
                       "jacket out of leather\".", {"image": _arg("image"), "instruction": _arg("text")}, "image"),
]
for _fn, _description, _inputs, _output in _GTA_TOOLS:
    register(Tool(name=_fn.__name__, description=_description, inputs=_inputs, output_type=_output, fn=_fn))
