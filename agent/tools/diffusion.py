"""Image generation and instruction-based editing with diffusers (the optional `diffusion` extra)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from agent.tools.backends import cached, check_weights, device, load_pretrained, option, require_module
from agent.tools.base import Tool, ToolContext, register
from agent.tools.images import open_image, save_image

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_SD = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_PIX2PIX = "timbrooks/instruct-pix2pix"
_INSTALL = "pip install 'mat-studio[diffusion]' (diffusers)"
_RUN_LOCK = threading.Lock()


def _pipeline(ctx: ToolContext, tool: str, key: str, env: str, default: str, class_name: str) -> Any:
    require_module("diffusers", tool, _INSTALL)
    model_id = option(ctx, key, env, default)

    def build() -> Any:
        check_weights(model_id, tool=tool, what="diffusion", env=env)
        import diffusers
        import torch

        # Half precision only where it is fast; float32 is the loader's default (and its keyword was renamed).
        kwargs = {"torch_dtype": torch.float16} if device() == "cuda" else {}
        cls = getattr(diffusers, class_name)
        pipe = load_pretrained(lambda m: cls.from_pretrained(m, **kwargs), model_id, tool=tool,
                               what="diffusion", env=env)
        pipe.set_progress_bar_config(disable=True)  # the app's log is not a terminal
        return pipe.to(device())

    return cached((class_name, model_id), build)


def _steps(ctx: ToolContext) -> int:
    return int(option(ctx, "diffusion_steps", "MAT_DIFFUSION_STEPS", 30))


def _working_size(pipe: Any, width: int, height: int) -> tuple[int, int]:
    """The input scaled down to the model's native resolution, in whole latent pixels (SD 1.5: 512, multiples of 8)."""
    factor = pipe.vae_scale_factor
    native = pipe.unet.config.sample_size * factor
    scale = min(1.0, native / max(width, height))
    return (max(factor, int(width * scale) // factor * factor),
            max(factor, int(height * scale) // factor * factor))


def image_generator(ctx: ToolContext, prompt: str) -> str:
    pipe = _pipeline(ctx, "image_generator", "sd_model", "MAT_SD_MODEL", DEFAULT_SD, "AutoPipelineForText2Image")
    with _RUN_LOCK:
        image = pipe(str(prompt), num_inference_steps=_steps(ctx)).images[0]
    return save_image(ctx, image, "generated")


def _edit(pipe: Any, prompt: str, img: Image.Image, steps: int) -> Image.Image:
    """Edit at a size the model handles, then return to the input's size so boxes and crops still line up."""
    from PIL import Image

    small = img.resize(_working_size(pipe, *img.size), Image.Resampling.LANCZOS)
    with _RUN_LOCK:
        edited = pipe(prompt, image=small, num_inference_steps=steps, image_guidance_scale=1.5).images[0]
    return edited.resize(img.size, Image.Resampling.LANCZOS)


def image_edit(ctx: ToolContext, prompt: str, image_path: str) -> str:
    img = open_image(ctx, image_path)
    pipe = _pipeline(ctx, "image_edit", "pix2pix_model", "MAT_PIX2PIX_MODEL", DEFAULT_PIX2PIX,
                     "StableDiffusionInstructPix2PixPipeline")
    return save_image(ctx, _edit(pipe, str(prompt), img, _steps(ctx)), "edited")


register(Tool(
    name="image_generator",
    description="This is a tool that creates an image according to a prompt, which is a text description.",
    inputs={"prompt": {"type": "text", "description": "The image generator prompt. Don't hesitate to add details in "
                                                      "the prompt to make the image look better, like 'high-res, "
                                                      "photorealistic', etc."}},
    output_type="image",
    fn=image_generator,
))
register(Tool(
    name="image_edit",
    description="A tool that can edit image based on the user prompt. Return a file path for printing.",
    inputs={
        "prompt": {"description": "The user prompt that instruct how to edit the image.", "type": "text"},
        "image_path": {"description": "The image path that this tool will try to edit.", "type": "text"},
    },
    output_type="image",
    fn=image_edit,
))
