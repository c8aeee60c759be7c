"""Visual question answering through the configured vision-language model (independent of the controller)."""

from __future__ import annotations

import tempfile

from agent.models.base import Message, ModelError
from agent.tools.base import Tool, ToolContext, ToolError, register
from agent.tools.images import open_image

NO_VLM = (
    "needs a vision-language model and none is configured: set MAT_VLM_MODEL (with MAT_BASE_URL for an "
    "OpenAI-compatible endpoint) or MAT_LOCAL_MODEL for a local checkpoint, or choose one in Settings"
)


def ask_vlm(ctx: ToolContext, question: str, image_path: str, tool: str) -> str:
    """The VLM's answer to `question` about one image of the task."""
    if ctx.vlm is None:
        raise ToolError(f"{tool} {NO_VLM}")
    img = open_image(ctx, image_path)
    # The model backends read images by path: give them a private copy of what was read, never the task's name.
    with tempfile.NamedTemporaryFile(prefix="mat-vlm-", suffix=".png") as copy:
        img.save(copy, format="PNG")
        copy.flush()
        try:
            reply = ctx.vlm.generate([Message("user", str(question), images=[copy.name])],
                                     max_new_tokens=int(ctx.options.get("vlm_max_new_tokens", 1024)))
        except ModelError as exc:
            raise ToolError(f"{tool}: the vision model failed: {exc}") from None
    return reply.text.strip()


def visualizer(ctx: ToolContext, question: str, image_path: str) -> str:
    return ask_vlm(ctx, question, image_path, "visualizer")


register(Tool(
    name="visualizer",
    description="A tool that can answer questions about attached images.",
    inputs={
        "question": {"description": "the question to answer", "type": "text"},
        "image_path": {"description": "The path to the image on which to answer the question", "type": "text"},
    },
    output_type="text",
    fn=visualizer,
))
