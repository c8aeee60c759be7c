"""Finding things in images: faces with OpenCV's Haar cascade, any named object with OWL-ViT / OWLv2."""

from __future__ import annotations

import threading

from agent.tools.backends import cached, option, processor_and_model, require_module
from agent.tools.base import Tool, ToolContext, ToolError, register
from agent.tools.images import draw_boxes, open_image, save_image

DEFAULT_OWL = "google/owlv2-base-patch16-ensemble"
_CASCADE_LOCK = threading.Lock()
_PATH_HELP = "The path to the image on which to localize objects. This should be a local path to downloaded image."


def _cascade():
    require_module("cv2", "facedetection", "pip install 'opencv-python-headless<5'")

    def build():
        import cv2

        data = getattr(cv2, "data", None)
        classifier = cv2.CascadeClassifier(f"{data.haarcascades}haarcascade_frontalface_default.xml") if data else None
        if classifier is None or classifier.empty():
            raise ToolError("facedetection needs OpenCV's Haar cascades, which OpenCV 5 no longer ships: "
                            "pip install 'opencv-python-headless<5'")
        return classifier

    return cached(("haar-frontalface",), build)


def facedetection(ctx: ToolContext, image_path: str) -> list[list[int]]:
    """Face boxes [x1, y1, x2, y2], left to right; an annotated copy is saved under .cache/."""
    import cv2
    import numpy as np

    img = open_image(ctx, image_path)
    gray = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2GRAY)
    classifier = _cascade()
    with _CASCADE_LOCK:
        found = classifier.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    boxes = sorted([int(x), int(y), int(x + w), int(y + h)] for x, y, w, h in found)
    save_image(ctx, draw_boxes(img, boxes, [f"face {i + 1}" for i in range(len(boxes))]), "faces")
    return boxes


def _owl(ctx: ToolContext):
    return processor_and_model(ctx, tool="objectlocation", what="OWL-ViT/OWLv2", option_key="owl_model",
                               env="MAT_OWL_MODEL", default=DEFAULT_OWL, model_class="AutoModelForZeroShotObjectDetection")


def _iou(box, others):
    import torch

    x1 = torch.maximum(box[0], others[:, 0])
    y1 = torch.maximum(box[1], others[:, 1])
    x2 = torch.minimum(box[2], others[:, 2])
    y2 = torch.minimum(box[3], others[:, 3])
    inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter).clamp(min=1e-9)


def _nms(boxes, scores, threshold: float) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    order = scores.argsort(descending=True)
    keep: list[int] = []
    while order.numel():
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[_iou(boxes[best], boxes[rest]) <= threshold]
    return keep


def locate(ctx: ToolContext, text: str, image_path: str) -> list[tuple[list[float], float]]:
    """Boxes [x1, y1, x2, y2] in image pixels with scores for `text`, best first, overlaps merged."""
    import torch

    if not str(text).strip():
        raise ToolError("say which object to look for (an empty description was given)")
    img = open_image(ctx, image_path)
    processor, model = _owl(ctx)
    threshold = float(option(ctx, "owl_threshold", "MAT_OWL_THRESHOLD", 0.1))
    inputs = processor(text=[[str(text)]], images=img, return_tensors="pt").to(model.device)
    with torch.no_grad():
        outputs = model(**inputs)
    width, height = img.size
    # OWLv2 pads images to a square before predicting; OWL-ViT stretches them.
    size = (max(width, height),) * 2 if model.config.model_type == "owlv2" else (height, width)
    found = processor.post_process_grounded_object_detection(outputs, threshold=threshold, target_sizes=[size])[0]
    boxes, scores = found["boxes"].float().cpu(), found["scores"].float().cpu()
    if not len(boxes):
        return []
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return [([round(float(v), 2) for v in boxes[i]], round(float(scores[i]), 4)) for i in _nms(boxes, scores, 0.3)]


def objectlocation(ctx: ToolContext, object: str, image_path: str) -> list[list[float]]:
    """Boxes of `object`; an annotated copy is saved under .cache/."""
    found = locate(ctx, object, image_path)
    img = open_image(ctx, image_path)
    save_image(ctx, draw_boxes(img, [box for box, _ in found], [f"{object} {score:.2f}" for _, score in found]),
               "objects")
    return [box for box, _ in found]


register(Tool(
    name="facedetection",
    description="A tool that can detect human faces in given images, outputing the bounding boxes of the human faces.",
    inputs={"image_path": {"description": _PATH_HELP, "type": "text"}},
    output_type="list",
    fn=facedetection,
))
register(Tool(
    name="objectlocation",
    description="A tool that can localize objects in given images, outputing the bounding boxes of the objects.",
    inputs={
        "object": {"description": "the object that need to be localized", "type": "text"},
        "image_path": {"description": _PATH_HELP, "type": "text"},
    },
    output_type="list",
    fn=objectlocation,
))
