"""MiniCPM-V 4.6 / 4.7 through transformers' native classes, on tiny checkpoints built offline: the image-only
processor (no torchvision), image slices and their tokens, text-only prompts, streaming, stop strings and counts."""

from __future__ import annotations

import json
import string

import pytest

from agent.config import Settings
from agent.models import load_model
from agent.models.local_vlm import LocalVLM
from agent.models.tiny import MINICPMV_TILE, build_tiny_minicpmv
from tests.support.tiny import ask

ONE_TILE = MINICPMV_TILE * MINICPMV_TILE
BUDGET = 4 * ONE_TILE


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_minicpmv(tmp_path_factory.mktemp("tiny") / "tiny-minicpmv4_6")


@pytest.fixture(scope="module")
def tiny(checkpoint) -> LocalVLM:
    return LocalVLM(checkpoint, max_pixels=BUDGET)


def test_the_checkpoint_is_native_minicpmv_and_building_twice_reuses_it(checkpoint, tiny):
    weights = checkpoint / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_minicpmv(checkpoint) == checkpoint
    assert weights.stat().st_mtime_ns == before
    assert json.loads((checkpoint / "config.json").read_text())["model_type"] == "minicpmv4_6"
    assert type(tiny.model).__name__ == "MiniCPMV4_6ForConditionalGeneration"
    assert type(tiny.processor.image_processor).__name__ == "MiniCPMV4_6ImageProcessorPil"


def test_an_image_becomes_an_overview_and_slices_whose_tokens_match_the_vision_tower(tiny, vlm_photo):
    inputs = tiny._inputs(ask(images=(vlm_photo,)))
    prompt = tiny.processor.tokenizer.decode(inputs["input_ids"][0])
    tiles = inputs["target_sizes"]  # one row of (patch rows, patch cols) per tile: the overview, then slices
    assert len(tiles) > 1 and prompt.count("<slice>") == len(tiles) - 1
    assert prompt.count("<image>") == 1 and "<image_id>0</image_id>" in prompt
    image_tokens = int((inputs["input_ids"] == tiny.model.config.image_token_id).sum())
    assert image_tokens == int(tiles.prod(-1).sum()) // 16  # the 16x merge of the vision tower


def test_generates_from_an_image_and_from_text_with_token_counts(tiny, vlm_photo):
    with_image = tiny.generate(ask(images=(vlm_photo,)), max_new_tokens=6)
    text_only = tiny.generate(ask(), max_new_tokens=6)
    assert with_image.text and text_only.text
    assert with_image.output_tokens == 6 and text_only.output_tokens == 6
    assert with_image.input_tokens > text_only.input_tokens > 0
    assert "pixel_values" not in tiny._inputs(ask())


def test_the_pixel_budget_bounds_the_slices(checkpoint, tiny, vlm_photo):
    one_tile = LocalVLM(checkpoint, max_pixels=ONE_TILE)
    small = one_tile.generate(ask(images=(vlm_photo,)), max_new_tokens=1).input_tokens
    large = tiny.generate(ask(images=(vlm_photo,)), max_new_tokens=1).input_tokens
    assert "<slice>" not in one_tile.processor.tokenizer.decode(one_tile._inputs(ask(images=(vlm_photo,)))["input_ids"][0])
    assert large > small


def test_streaming_yields_several_chunks_then_the_counts(tiny):
    chunks = list(tiny.stream(ask(), max_new_tokens=12))
    assert len([c for c in chunks if c.text]) > 2
    assert set("".join(c.text for c in chunks)) <= set(string.printable)
    assert chunks[-1].output_tokens == 12 and chunks[-1].input_tokens > 0


def test_stop_strings_end_generation_before_the_stop(tiny, vlm_photo):
    full = tiny.generate(ask(images=(vlm_photo,)), max_new_tokens=16)
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 3]
    cut = tiny.generate(ask(images=(vlm_photo,)), stop=[stop], max_new_tokens=16)
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.output_tokens < full.output_tokens


def test_minicpmv4_7_is_served_too_through_the_settings(tmp_path, vlm_photo):
    path = build_tiny_minicpmv(tmp_path / "tiny-minicpmv4_7", arch="minicpmv4_7")
    model = load_model(Settings(data_dir=tmp_path, local_model=str(path), max_pixels=BUDGET))
    assert type(model.model).__name__ == "MiniCPMV4_7ForConditionalGeneration"
    answer = model.generate(ask(images=(vlm_photo,)), max_new_tokens=4)
    assert answer.text and answer.output_tokens == 4


def test_an_unknown_arch_is_refused():
    with pytest.raises(ValueError, match="minicpmv4_6"):
        build_tiny_minicpmv("unused", arch="minicpmv2_6")


@pytest.mark.gpu
def test_on_a_gpu_minicpmv_runs_in_bfloat16_on_cuda(checkpoint, vlm_photo):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = LocalVLM(checkpoint, max_pixels=BUDGET)
    assert model.model.device.type == "cuda" and model.model.dtype == torch.bfloat16
    assert model.generate(ask(images=(vlm_photo,)), max_new_tokens=4).output_tokens == 4
