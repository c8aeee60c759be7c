"""image_generator / image_edit and GTA's TextToImage / ImageStylization on tiny diffusion pipelines built from configs."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from agent.tools import bind_tools, profile_tools
from agent.tools.base import ToolError


@pytest.fixture
def tools(ctx, tiny_sd, tiny_pix2pix):
    ctx.options.update(sd_model=str(tiny_sd), pix2pix_model=str(tiny_pix2pix), diffusion_steps=2)
    Image.new("RGB", (121, 81), "white").save(ctx.workdir / "scene.png")  # not a multiple of the latent size
    return bind_tools(profile_tools("mat") + profile_tools("gta"), ctx)


def saved_png(ctx, shown: str, stem: str) -> Image.Image:
    """The image a tool reported, checked to be a PNG under .cache/ that the model can open by that path."""
    assert shown.startswith(f".cache/{stem}_") and shown.endswith(".png") and shown in ctx.produced
    img = Image.open(ctx.workdir / shown)
    assert img.format == "PNG" and img.mode == "RGB"
    return img


@pytest.mark.parametrize("tool, kwargs", [
    ("image_generator", {"prompt": "a red bicycle"}),
    ("TextToImage", {"keywords": "bicycle, red"}),
])
def test_generation_writes_a_png_at_the_models_resolution(ctx, tools, tool, kwargs):
    img = saved_png(ctx, tools[tool](**kwargs), "generated")
    assert img.size == (32, 32)


@pytest.mark.parametrize("tool, kwargs", [
    ("image_edit", {"prompt": "make it blue", "image_path": "scene.png"}),
    ("ImageStylization", {"image": "scene.png", "instruction": "make it blue"}),
])
def test_editing_writes_a_new_png_of_the_inputs_size_and_keeps_the_input(ctx, tools, tool, kwargs):
    img = saved_png(ctx, tools[tool](**kwargs), "edited")
    assert img.size == (121, 81)
    assert np.asarray(img).min() < 255  # the random model changed the white input
    assert np.asarray(Image.open(ctx.workdir / "scene.png")).min() == 255


def test_a_large_input_is_edited_at_the_models_resolution_and_returned_at_its_own(ctx, tools, monkeypatch):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    seen = []
    run = StableDiffusionInstructPix2PixPipeline.__call__
    monkeypatch.setattr(StableDiffusionInstructPix2PixPipeline, "__call__",
                        lambda pipe, *args, **kwargs: seen.append(kwargs["image"].size) or run(pipe, *args, **kwargs))
    Image.new("RGB", (640, 200), "white").save(ctx.workdir / "wide.png")
    img = saved_png(ctx, tools["image_edit"](prompt="make it blue", image_path="wide.png"), "edited")
    assert seen == [(32, 10)] and img.size == (640, 200)


def test_image_edit_refuses_files_outside_the_task(ctx, tools, tmp_path):
    Image.new("RGB", (32, 32), "white").save(tmp_path / "outside.png")
    for path in (str(tmp_path / "outside.png"), "../outside.png"):
        with pytest.raises(ToolError, match="is not allowed: only the task's working directory"):
            tools["image_edit"](prompt="make it blue", image_path=path)
    assert not ctx.produced


@pytest.mark.parametrize("tool, kwargs, model, env", [
    ("image_generator", {"prompt": "a red bicycle"}, "sd_model", "MAT_SD_MODEL"),
    ("ImageStylization", {"image": "scene.png", "instruction": "make it blue"}, "pix2pix_model", "MAT_PIX2PIX_MODEL"),
])
def test_absent_weights_say_how_to_get_them(ctx, tools, monkeypatch, tool, kwargs, model, env):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ctx.options[model] = "nobody/absent-diffusion-weights"
    with pytest.raises(ToolError) as info:
        tools[tool](**kwargs)
    message = str(info.value)
    assert "diffusion weights 'nobody/absent-diffusion-weights'" in message and "HF_HUB_OFFLINE=1" in message
    assert "hf download nobody/absent-diffusion-weights" in message and f"set {env} to a local path" in message
    assert not ctx.produced


@pytest.mark.parametrize("tool, kwargs", [
    ("image_generator", {"prompt": "a red bicycle"}),
    ("image_edit", {"prompt": "make it blue", "image_path": "scene.png"}),
    ("TextToImage", {"keywords": "bicycle, red"}),
    ("ImageStylization", {"image": "scene.png", "instruction": "make it blue"}),
])
def test_without_diffusers_the_tools_say_which_extra_to_install(ctx, tools, monkeypatch, tool, kwargs):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # what an environment without the package looks like
    with pytest.raises(ToolError, match=r"needs the Python package 'diffusers', which is not installed: "
                                        r"pip install 'mat-studio\[diffusion\]'"):
        tools[tool](**kwargs)
    assert not ctx.produced
