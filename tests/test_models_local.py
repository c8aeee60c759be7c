"""The transformers backend on the tiny Qwen2-VL checkpoint: load, image + text generation, streaming,
stop strings, pixel budget, LoRA adapters, and the errors a person sees for a bad path."""

from __future__ import annotations

import json
import string
import threading

import pytest

from agent.config import Settings
from agent.models import load_model
from agent.models.base import ModelError
from agent.models.local_vlm import LocalVLM
from agent.models.tiny import build_tiny_qwen2vl
from tests.support.tiny import ask

BUDGET = 64 * 28 * 28


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint) -> LocalVLM:
    return LocalVLM(tiny_checkpoint, max_pixels=BUDGET)


def test_building_twice_reuses_the_checkpoint(tiny_checkpoint):
    weights = tiny_checkpoint / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_qwen2vl(tiny_checkpoint) == tiny_checkpoint
    assert weights.stat().st_mtime_ns == before
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "qwen2_vl"
    assert (tiny_checkpoint / "processor_config.json").exists()


def test_generates_from_an_image_and_from_text_with_token_counts(tiny, vlm_photo):
    with_image = tiny.generate(ask(images=(vlm_photo,)), max_new_tokens=6)
    text_only = tiny.generate(ask(), max_new_tokens=6)
    assert with_image.text and text_only.text
    assert 0 < with_image.output_tokens <= 6 and 0 < text_only.output_tokens <= 6
    image_tokens = with_image.input_tokens - text_only.input_tokens
    assert 0 < image_tokens <= BUDGET // (28 * 28) + 2  # the image's merged patches plus vision start/end


def test_the_pixel_budget_bounds_the_image_tokens(tiny_checkpoint, tiny, vlm_photo):
    larger = LocalVLM(tiny_checkpoint, max_pixels=4 * BUDGET)
    small = tiny.generate(ask(images=(vlm_photo,)), max_new_tokens=1).input_tokens
    large = larger.generate(ask(images=(vlm_photo,)), max_new_tokens=1).input_tokens
    assert large - small > 100


def test_streaming_yields_several_chunks_then_the_counts(tiny):
    chunks = list(tiny.stream(ask(), max_new_tokens=12))
    assert len([c for c in chunks if c.text]) > 2
    assert set("".join(c.text for c in chunks)) <= set(string.printable)  # noise, but safe for a terminal
    assert chunks[-1].output_tokens == 12 and chunks[-1].input_tokens > 0


def test_stop_strings_end_generation_before_the_stop(tiny):
    full = tiny.generate(ask(), max_new_tokens=16)
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 3]
    cut = tiny.generate(ask(), stop=[stop], max_new_tokens=16)
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.output_tokens < full.output_tokens


def test_closing_a_stream_early_frees_the_slot_and_the_thread(tiny):
    stream = tiny.stream(ask(), max_new_tokens=500)
    next(stream)
    stream.close()
    assert not any(t.name == "local-vlm-generate" for t in threading.enumerate())
    assert tiny.slots.acquire(timeout=1)
    tiny.slots.release()


def test_a_lora_adapter_loads_on_top_without_changing_the_model(tiny_checkpoint, tiny, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj)")
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    tuned = LocalVLM(tiny_checkpoint, adapter=tmp_path / "adapter", max_pixels=BUDGET)
    lora_layers = [n for n, _ in tuned.model.named_modules() if n.endswith("lora_A")]
    assert lora_layers and all("language_model" in n for n in lora_layers)
    assert not any("visual" in n for n in lora_layers)
    # LoRA's B starts at zero: a fresh adapter leaves the answers unchanged.
    assert tuned.generate(ask(), max_new_tokens=8).text == tiny.generate(ask(), max_new_tokens=8).text


def test_load_model_tiny_builds_once_and_shares_the_instance(tmp_path, vlm_photo):
    settings = Settings(data_dir=tmp_path, max_pixels=BUDGET)
    model = load_model(settings, tiny=True)
    assert isinstance(model, LocalVLM)
    assert (tmp_path / "tiny-qwen2vl" / "config.json").exists()
    assert load_model(settings, tiny=True) is model
    assert model.generate(ask(images=(vlm_photo,)), max_new_tokens=3).output_tokens > 0


def test_missing_checkpoint_or_adapter_is_a_clear_error(tiny_checkpoint, tmp_path):
    with pytest.raises(ModelError, match="local model not found: .*MAT_LOCAL_MODEL"):
        LocalVLM(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="no PEFT adapter at .*MAT_ADAPTER"):
        LocalVLM(tiny_checkpoint, adapter=tmp_path)
    with pytest.raises(ModelError, match="unknown dtype 'float99'"):
        LocalVLM(tiny_checkpoint, dtype="float99")


def test_unsupported_architecture_names_what_is_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "minicpmv"}))
    with pytest.raises(ModelError) as caught:
        LocalVLM(tmp_path)
    assert "trust_remote_code" in str(caught.value) and "Qwen2-VL" in str(caught.value)


def test_an_unreadable_image_is_a_model_error_not_a_traceback(tiny, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    with pytest.raises(ModelError, match="cannot read notes.png as an image"):
        tiny.generate(ask(images=(str(fake),)), max_new_tokens=2)


def test_qwen2_5_vl_checkpoints_are_served_too(tmp_path, vlm_photo):
    path = build_tiny_qwen2vl(tmp_path / "tiny-qwen2.5vl", arch="qwen2_5_vl")
    model = LocalVLM(path, max_pixels=BUDGET)
    assert type(model.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    answer = model.generate(ask(images=(vlm_photo,)), max_new_tokens=4)
    assert answer.text and answer.output_tokens == 4


@pytest.mark.gpu
def test_on_a_gpu_the_model_runs_in_bfloat16_on_cuda(tiny_checkpoint, vlm_photo):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = LocalVLM(tiny_checkpoint, max_pixels=BUDGET)
    assert model.model.device.type == "cuda" and model.model.dtype == torch.bfloat16
    assert model.generate(ask(images=(vlm_photo,)), max_new_tokens=4).output_tokens > 0


def _generate_keywords(model: LocalVLM, monkeypatch) -> dict:
    """The keywords the model's generate() receives for one turn."""
    seen = {}
    real = model.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(model.model, "generate", spy)
    model.generate(ask(), max_new_tokens=2)
    return seen


def test_a_configured_local_model_samples_as_mats_qwen_engine(tiny_checkpoint, tmp_path, monkeypatch):
    for name in ("MAT_TEMPERATURE", "MAT_TOP_P", "MAT_TOP_K", "MAT_REPETITION_PENALTY"):
        monkeypatch.delenv(name, raising=False)
    path = tiny_checkpoint
    mat = _generate_keywords(load_model(Settings(data_dir=tmp_path, local_model=str(path))), monkeypatch)
    assert (mat["do_sample"], mat["temperature"], mat["top_p"], mat["top_k"], mat["repetition_penalty"]) == (
        True, 0.7, 0.8, 100, 1.05)

    monkeypatch.setenv("MAT_TEMPERATURE", "0")
    monkeypatch.setenv("MAT_REPETITION_PENALTY", "1.2")
    greedy = _generate_keywords(load_model(Settings(data_dir=tmp_path, local_model=str(path))), monkeypatch)
    assert greedy["do_sample"] is False and "temperature" not in greedy and greedy["repetition_penalty"] == 1.2
