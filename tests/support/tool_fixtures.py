"""Fixtures for the tool tests: a task context in tmp, rendered text images, tiny OWLv2, SAM and diffusion checkpoints.

The fixtures are registered for every test module in tests/conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.models.base import Chunk, Message, Model
from agent.render import message_text
from agent.tools.base import ToolContext


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    workdir = tmp_path / "task"
    (workdir / ".cache").mkdir(parents=True)
    return ToolContext(workdir=workdir)


def render_text(path: Path, lines: list[str], size: int = 48) -> Path:
    """A white image with `lines` in black DejaVu Sans (matplotlib ships the font)."""
    from PIL import Image, ImageDraw

    from agent.tools.images import font

    img = Image.new("RGB", (max(len(line) for line in lines) * size * 2 // 3 + 40, len(lines) * size * 2), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((20, 20 + i * size * 2), line, fill="black", font=font(size))
    img.save(path)
    return path


class EchoModel(Model):
    """A stand-in language model that answers with a fixed text and keeps the prompts it was given (as text)."""

    name = "echo"

    def __init__(self, answer: str) -> None:
        super().__init__()
        self.answer = answer
        self.prompts: list[Message] = []

    def _stream(self, messages, stop, max_new_tokens):
        self.prompts.extend(Message(m["role"], message_text(m, "")) for m in messages)
        yield Chunk(self.answer, input_tokens=1, output_tokens=1)


def _clip_tokenizer(directory: Path):
    """A letters-only CLIP BPE tokenizer; token 0 is not <bos> (OWL treats a query starting with 0 as padding)."""
    from transformers import CLIPTokenizer

    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter] = len(vocab)
        vocab[f"{letter}</w>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt")), len(vocab)


@pytest.fixture(scope="session")
def tiny_owl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised OWLv2 (64 px images), saved with its processor like a hub checkpoint."""
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

    directory = tmp_path_factory.mktemp("tiny-owlv2")
    tokenizer, vocab_size = _clip_tokenizer(directory)
    torch.manual_seed(0)
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = Owlv2Config(
        text_config=dict(vocab_size=vocab_size, max_position_embeddings=16, bos_token_id=1, eos_token_id=2, **layers),
        vision_config=dict(image_size=64, patch_size=16, **layers),
        projection_dim=32,
    )
    Owlv2ForObjectDetection(config).save_pretrained(directory)
    image_processor = Owlv2ImageProcessorPil(size={"height": 64, "width": 64})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised SAM (64 px images, 16 px masks), saved with its processor."""
    import torch
    from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor

    directory = tmp_path_factory.mktemp("tiny-sam")
    torch.manual_seed(0)
    config = SamConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=64, patch_size=16, output_channels=16, global_attn_indexes=[0], window_size=2,
                           mlp_dim=64, num_pos_feats=8),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, mlp_dim=32,
                                 iou_head_hidden_dim=16),
    )
    SamModel(config).save_pretrained(directory)
    image_processor = SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64},
                                           mask_size={"longest_edge": 16}, mask_pad_size={"height": 16, "width": 16})
    SamProcessor(image_processor=image_processor).save_pretrained(directory)
    return directory


def _tiny_diffusion(directory: Path, pipeline_class: str, unet_in_channels: int, scheduler) -> Path:
    """A randomly initialised Stable Diffusion-style pipeline (32 px images), saved like a hub checkpoint."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer, vocab_size = _clip_tokenizer(directory)
    tokenizer.model_max_length = 16  # prompts are padded to this length
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=unet_in_channels, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=8,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, layers_per_block=1, norm_num_groups=8,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length, bos_token_id=1, eos_token_id=2,
    ))
    pipe = getattr(diffusers, pipeline_class)(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny text-to-image Stable Diffusion pipeline: 4 latent channels in, 32x32 images out."""
    from diffusers import PNDMScheduler

    return _tiny_diffusion(tmp_path_factory.mktemp("tiny-sd"), "StableDiffusionPipeline", 4,
                           PNDMScheduler(skip_prk_steps=True, steps_offset=1))


@pytest.fixture(scope="session")
def tiny_pix2pix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny InstructPix2Pix pipeline: the UNet reads the noisy latents and the input image's latents (8 channels)."""
    from diffusers import EulerAncestralDiscreteScheduler

    return _tiny_diffusion(tmp_path_factory.mktemp("tiny-pix2pix"), "StableDiffusionInstructPix2PixPipeline", 8,
                           EulerAncestralDiscreteScheduler())
