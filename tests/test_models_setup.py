"""Choosing a backend from the settings, the setup help, image preparation, and a light import."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from agent.config import Settings
from agent.models import SETUP_HELP, load_model, setup_help
from agent.models.base import ModelError
from agent.models.images import fit_size, load_image, to_data_url
from agent.models.openai_compat import OpenAICompatModel

UNSET = dict(base_url=None, api_key=None, model=None, local_model=None, adapter=None, vlm_model=None)


def settings(tmp_path, **values) -> Settings:
    return Settings(data_dir=tmp_path, **{**UNSET, **values})


def test_nothing_configured_raises_the_setup_help(tmp_path):
    with pytest.raises(ModelError) as caught:
        load_model(settings(tmp_path))
    message = str(caught.value)
    assert message == setup_help() == SETUP_HELP
    for needle in ("MAT_BASE_URL", "MAT_API_KEY", "OPENAI_API_KEY", "MAT_MODEL", "MAT_LOCAL_MODEL", "MAT_ADAPTER",
                   "vllm serve Qwen/Qwen2-VL-7B-Instruct", "http://localhost:11434/v1", "--tiny"):
        assert needle in message


def test_an_endpoint_in_the_settings_gives_a_shared_openai_model(tmp_path):
    configured = settings(tmp_path, base_url="http://127.0.0.1:8000/v1", model="qwen2-vl", remote_concurrency=3)
    model = load_model(configured)
    assert isinstance(model, OpenAICompatModel)
    assert (model.name, model.base_url) == ("qwen2-vl", "http://127.0.0.1:8000/v1")
    assert load_model(configured) is model
    assert all(model.slots.acquire(blocking=False) for _ in range(3))
    assert not model.slots.acquire(blocking=False)
    for _ in range(3):
        model.slots.release()


def test_a_key_alone_means_openai_with_a_default_model(tmp_path):
    model = load_model(settings(tmp_path, api_key="sk-x"))
    assert model.name == "gpt-4o-mini" and model.base_url == "https://api.openai.com/v1"


def test_the_visualizer_vlm_is_the_controller_unless_named(tmp_path):
    base = dict(base_url="http://127.0.0.1:8000/v1", model="controller-model")
    assert load_model(settings(tmp_path, **base), which="vlm") is load_model(settings(tmp_path, **base))
    assert load_model(settings(tmp_path, vlm_model="vision-model", **base), which="vlm").name == "vision-model"
    with pytest.raises(ValueError):
        load_model(settings(tmp_path, **base), which="planner")


def test_a_local_model_path_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(ModelError, match="local model not found: .*nowhere"):
        load_model(settings(tmp_path, local_model=str(tmp_path / "nowhere")))


def test_fit_size_keeps_aspect_in_multiples_of_28_within_budget():
    for width, height, budget in [(4000, 3000, 1024 * 28 * 28), (640, 480, 64 * 28 * 28), (10, 10, 10_000), (3000, 200, 50_000)]:
        w, h = fit_size(width, height, budget)
        assert w % 28 == 0 and h % 28 == 0
        assert w * h <= max(budget, 56 * 56)
        assert abs(w / h - width / height) / (width / height) < 0.25


def test_load_image_converts_to_rgb_and_leaves_small_images_nearly_alone(tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (112, 84), (1, 2, 3, 128)).save(path)
    image = load_image(path, 1024 * 28 * 28)
    assert image.mode == "RGB" and image.size == (112, 84)


def test_bad_images_give_one_line_errors(tmp_path):
    text = tmp_path / "a.jpg"
    text.write_text("hello")
    with pytest.raises(ModelError, match=r"^cannot read a.jpg as an image"):
        to_data_url(text, 10_000)
    with pytest.raises(ModelError, match="image not found"):
        to_data_url(tmp_path / "missing.png", 10_000)


def test_importing_the_package_loads_no_heavy_library():
    code = "import sys, agent.models; print(sorted(m for m in ('torch', 'transformers', 'openai', 'PIL') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
