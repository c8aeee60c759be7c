"""The visualizer and the GTA description tools through a real OpenAI-compatible server and the tiny checkpoint."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from agent.models.local_vlm import LocalVLM
from agent.models.openai_compat import OpenAICompatModel
from agent.tools import bind_tools, profile_tools
from agent.tools.base import ToolError


@pytest.fixture
def photo(ctx):
    Image.new("RGB", (64, 48), (200, 30, 30)).save(ctx.workdir / "red.png")
    return "red.png"


def sent_image(request) -> Image.Image:
    url = request.image_urls[-1]
    assert url.startswith("data:image/")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_visualizer_asks_the_endpoint_with_the_image(ctx, photo, openai_server):
    openai_server.replies.append("The square is red.")
    ctx.vlm = OpenAICompatModel("mat-test", base_url=openai_server.url, api_key="sk-test")
    answer = bind_tools(profile_tools("mat"), ctx)["visualizer"](question="What color is it?", image_path=photo)
    assert answer == "The square is red."
    request = openai_server.requests[-1]
    assert "What color is it?" in str(request.body["messages"])
    assert sent_image(request).getpixel((10, 10))[0] > 150


def test_region_description_sends_only_the_cropped_region(ctx, photo, openai_server):
    openai_server.replies.append("red")
    ctx.vlm = OpenAICompatModel("mat-test", base_url=openai_server.url, api_key="sk-test")
    tools = bind_tools(profile_tools("gta"), ctx)
    img = Image.open(ctx.workdir / photo)
    img.paste((20, 20, 220), (0, 0, 32, 24))
    img.save(ctx.workdir / photo)
    assert tools["RegionAttributeDescription"](image=photo, bbox="(0, 0, 32, 24)", attribute="color") == "red"
    sent = sent_image(openai_server.requests[-1]).convert("RGB")
    corners = [sent.getpixel((x, y)) for x in (2, sent.width - 3) for y in (2, sent.height - 3)]
    assert all(b > 150 and r < 100 for r, _, b in corners)  # only the blue region was sent
    assert "color" in str(openai_server.requests[-1].body["messages"])


def test_an_endpoint_failure_is_a_tool_error(ctx, photo, openai_server):
    openai_server.fail_next(5, status=500)
    ctx.vlm = OpenAICompatModel("mat-test", base_url=openai_server.url, api_key="sk-test", max_retries=0)
    with pytest.raises(ToolError, match="visualizer: the vision model failed"):
        bind_tools(profile_tools("mat"), ctx)["visualizer"](question="?", image_path=photo)


def test_visualizer_without_a_model_says_what_to_configure(ctx, photo):
    with pytest.raises(ToolError, match="visualizer needs a vision-language model and none is configured: set "
                                        "MAT_VLM_MODEL"):
        bind_tools(profile_tools("gaia"), ctx)["visualizer"](question="?", image_path=photo)
    with pytest.raises(ToolError, match="ImageDescription needs a vision-language model"):
        bind_tools(profile_tools("gta"), ctx)["ImageDescription"](image=photo)


def test_visualizer_runs_on_the_tiny_local_checkpoint(ctx, photo, tiny_checkpoint):
    ctx.vlm = LocalVLM(tiny_checkpoint)
    ctx.options["vlm_max_new_tokens"] = 4
    answer = bind_tools(profile_tools("mat"), ctx)["visualizer"](question="What is shown?", image_path=photo)
    assert isinstance(answer, str) and len(answer) <= 200  # four random tokens of the tiny vocabulary
    assert isinstance(bind_tools(profile_tools("gta"), ctx)["MathOCR"](image=photo), str)
