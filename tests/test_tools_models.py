"""OWLv2 detection and SAM segmentation on tiny checkpoints built from configs; clear messages without weights."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from agent.tools import bind_tools, profile_tools
from agent.tools.base import ToolError


@pytest.fixture
def tools(ctx, tiny_owl, tiny_sam):
    ctx.options.update(owl_model=str(tiny_owl), sam_model=str(tiny_sam), owl_threshold=0.0)
    Image.new("RGB", (120, 80), "white").save(ctx.workdir / "scene.png")
    return bind_tools(profile_tools("mat") + profile_tools("gta"), ctx)


def in_image(box, width=120, height=80):
    x1, y1, x2, y2 = box
    return 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height


def test_objectlocation_returns_boxes_in_image_pixels_and_an_annotated_image(ctx, tools):
    boxes = tools["objectlocation"](object="cat", image_path="scene.png")
    assert boxes and all(len(box) == 4 and in_image(box) for box in boxes)
    annotated = [p for p in ctx.produced if p.startswith(".cache/objects_")]
    assert len(annotated) == 1 and Image.open(ctx.workdir / annotated[0]).size == (120, 80)


def test_a_high_threshold_finds_nothing(ctx, tools):
    ctx.options["owl_threshold"] = 1.0
    assert tools["objectlocation"](object="cat", image_path="scene.png") == []
    assert tools["TextToBbox"](image="scene.png", text="cat") == "No 'cat' was detected in the image."
    assert tools["CountGivenObject"](image="scene.png", text="cat") == 0


def test_gta_detection_tools_use_the_same_backend(ctx, tools):
    top = tools["TextToBbox"](image="scene.png", text="cat")
    every = tools["TextToBbox"](image="scene.png", text="cat", top1=False)
    assert len(top.splitlines()) == 1 and every.startswith(top)
    assert tools["CountGivenObject"](image="scene.png", text="cat") == len(every.splitlines())
    assert tools["CountGivenObject"](image="scene.png", text="cat", bbox="(0, 0, 60, 40)") >= 1


def test_segmentation_with_boxes_writes_one_png_mask_per_box(ctx, tools):
    masks = tools["segmentation"](image_path="scene.png", prompt=[[10, 10, 60, 50], [70, 20, 110, 70]])
    assert len(masks) == 2
    for mask in masks:
        assert mask["mask"].startswith(".cache/mask_") and mask["mask"].endswith(".png")
        png = Image.open(ctx.workdir / mask["mask"])
        pixels = np.asarray(png)
        assert png.size == (120, 80) and png.mode == "L"
        assert set(np.unique(pixels)) <= {0, 255} and mask["area"] == int((pixels == 255).sum())
        assert isinstance(mask["score"], float) and len(mask["box"]) == 4
    assert not list(ctx.workdir.rglob("*.pkl"))


def test_segmentation_reads_points_boxes_as_text_and_object_names(tools):
    assert len(tools["segmentation"](image_path="scene.png", prompt=[[30, 40]])) == 1
    assert len(tools["segmentation"](image_path="scene.png", prompt=[[30, 40], [90, 60]])) == 2
    assert len(tools["segmentation"](image_path="scene.png", prompt="(10, 10, 60, 50)")) == 1
    assert len(tools["segmentation"](image_path="scene.png", prompt="cat")) >= 1  # boxes from OWLv2 first


def test_segment_everything_keeps_only_distinct_confident_masks(ctx, tools):
    ctx.options.update(sam_grid=3, sam_min_score=-100.0)
    masks = tools["segmentation"](image_path="scene.png", prompt=None)
    assert 1 <= len(masks) <= 9
    ctx.options["sam_min_score"] = 100.0
    assert tools["segmentation"](image_path="scene.png", prompt=[]) == []


def test_segmentation_rejects_an_unreadable_prompt(tools):
    with pytest.raises(ToolError, match="segmentation prompt must be boxes"):
        tools["segmentation"](image_path="scene.png", prompt=[1, 2, 3])


@pytest.mark.parametrize("tool, kwargs, model, env", [
    ("objectlocation", {"object": "cat", "image_path": "scene.png"}, "owl_model", "MAT_OWL_MODEL"),
    ("segmentation", {"image_path": "scene.png", "prompt": [[1, 1, 20, 20]]}, "sam_model", "MAT_SAM_MODEL"),
])
def test_absent_weights_say_how_to_get_them(ctx, tools, monkeypatch, tool, kwargs, model, env):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ctx.options[model] = "nobody/absent-weights"
    with pytest.raises(ToolError) as info:
        tools[tool](**kwargs)
    message = str(info.value)
    assert "'nobody/absent-weights'" in message and "HF_HUB_OFFLINE=1" in message
    assert "hf download nobody/absent-weights" in message and f"set {env} to a local path" in message
