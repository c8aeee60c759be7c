"""Segmenting images with SAM (transformers); masks are written as PNG files, never pickles."""

from __future__ import annotations

import re
from typing import Any

from agent.tools.backends import option, processor_and_model
from agent.tools.base import Tool, ToolContext, ToolError, register
from agent.tools.detection import locate
from agent.tools.images import open_image, save_image

DEFAULT_SAM = "facebook/sam-vit-base"
_NUMBERS_ONLY = re.compile(r"[\s\[\]\(\),.\-\d]+")


def _sam(ctx: ToolContext):
    return processor_and_model(ctx, tool="segmentation", what="SAM", option_key="sam_model", env="MAT_SAM_MODEL",
                               default=DEFAULT_SAM, model_class="SamModel")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, str):
        return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", value)]
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _numbers(item)]
    raise ToolError(f"segmentation cannot read {value!r} as coordinates")


def _prompt_kind(ctx: ToolContext, prompt: Any, image_path: str) -> tuple[str, list[list[float]]]:
    """("boxes" | "points" | "everything", coordinates) from what the model passed.

    Boxes and points may come as lists or as text of numbers; any other text names an object,
    which OWL-ViT/OWLv2 locates first; nothing at all means "segment everything".
    """
    if prompt is None or (isinstance(prompt, (list, tuple, str)) and not len(prompt)):
        return "everything", []
    if isinstance(prompt, str) and not _NUMBERS_ONLY.fullmatch(prompt):
        return "boxes", [box for box, _ in locate(ctx, prompt, image_path)]
    nested = isinstance(prompt, (list, tuple)) and all(isinstance(item, (list, tuple)) for item in prompt)
    groups = [_numbers(item) for item in prompt] if nested else [_numbers(prompt)]
    for kind, size in (("boxes", 4), ("points", 2)):
        if all(len(group) == size for group in groups):
            return kind, groups
    raise ToolError(f"segmentation prompt must be boxes [x1, y1, x2, y2], points [x, y], an object name or None; "
                    f"got {prompt!r}")


def _grid(width: int, height: int, per_side: int) -> list[list[float]]:
    step_x, step_y = width / per_side, height / per_side
    return [[step_x * (i + 0.5), step_y * (j + 0.5)] for j in range(per_side) for i in range(per_side)]


def _predict(ctx: ToolContext, img, kind: str, coords: list[list[float]]):
    """Masks (n, H, W) as booleans and their predicted IoU scores."""
    import torch

    processor, model = _sam(ctx)
    if kind == "boxes":
        inputs = processor(images=img, input_boxes=[coords], return_tensors="pt")
    else:
        inputs = processor(images=img, input_points=[[[point] for point in coords]], return_tensors="pt")
    inputs = inputs.to(model.device)
    with torch.no_grad():
        outputs = model(**inputs, multimask_output=kind != "boxes")
    masks = processor.image_processor.post_process_masks(
        outputs.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu())[0]
    scores = outputs.iou_scores[0].float().cpu()
    best = scores.argmax(dim=-1)
    index = torch.arange(len(best))
    return masks[index, best], scores[index, best]


def _mask_iou(a, b) -> float:
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 0.0


def _distinct(masks, scores, min_score: float) -> list[int]:
    """For segment-everything: confident, non-empty masks that are not near-copies of a better one."""
    keep: list[int] = []
    for i in scores.argsort(descending=True).tolist():
        if scores[i] < min_score or not masks[i].any():
            continue
        if all(_mask_iou(masks[i], masks[j]) < 0.8 for j in keep):
            keep.append(i)
    return keep


def segmentation(ctx: ToolContext, image_path: str, prompt: Any = None) -> list[dict[str, Any]]:
    """One entry per mask: the PNG path, its bounding box, SAM's score and its area in pixels."""
    from PIL import Image

    img, _ = open_image(ctx, image_path)
    kind, coords = _prompt_kind(ctx, prompt, image_path)
    if kind == "everything":
        coords = _grid(*img.size, int(option(ctx, "sam_grid", "MAT_SAM_GRID", 6)))
    if not coords:
        return []
    masks, scores = _predict(ctx, img, "points" if kind == "everything" else kind, coords)
    if kind == "everything":
        chosen = _distinct(masks, scores, float(option(ctx, "sam_min_score", "MAT_SAM_MIN_SCORE", 0.7)))
    else:
        chosen = range(len(masks))
    results = []
    for i in chosen:
        mask = masks[i].numpy()
        ys, xs = mask.nonzero()
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(xs) else [0, 0, 0, 0]
        path = save_image(ctx, Image.fromarray(mask.astype("uint8") * 255), "mask")
        results.append({"mask": path, "box": box, "score": round(float(scores[i]), 4), "area": int(mask.sum())})
    return results


register(Tool(
    name="segmentation",
    # MAT trained with this spelling (reset_system_prompt.py); part of the release spells it "instance".
    description="A tool that can do instantce segmentation on the given image.",
    inputs={
        "image_path": {"description": "The path of image that the tool can read.", "type": "text"},
        "prompt": {"description": "The bounding box that you want this model to segment. The bounding boxes could be "
                                  "from user input or tool `objectlocation`. You can set it as None or empty list to "
                                  "enable 'Segment Anything' mode.", "type": "list"},
    },
    output_type="list",
    fn=segmentation,
))
