"""Processors for images and text only, for the VLMs whose stock processor needs torchvision.

The stock Qwen2-VL and MiniCPM-V 4.6/4.7 processors insist on a video processor, and their video processors
need torchvision; these take the image processor (PIL backend) and the tokenizer alone, and save and reload
with `from_pretrained` like any processor. Imported lazily: it pulls in transformers.
"""

from __future__ import annotations

from transformers import MiniCPMV4_6Processor, MiniCPMV4_7Processor, Qwen2VLProcessor
from transformers.processing_utils import ProcessorMixin

# What MiniCPM-V's processor reads from the tokenizer to lay out image placeholders and slices.
MINICPMV_TOKEN_NAMES = (
    "image_token", "image_token_id", "video_token", "video_token_id", "image_start_token", "image_end_token",
    "slice_start_token", "slice_end_token", "image_id_start_token", "image_id_end_token",
)


class ImageOnlyQwenProcessor(Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs)


class _ImageOnlyMiniCPMV:
    """MiniCPM-V's processor set up without its video half (its own __init__ reads the video processor)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)
        self.slice_mode = image_processor.slice_mode
        self.default_use_image_id = image_processor.use_image_id
        self.image_token_divisor = 4 if image_processor.downsample_mode == "4x" else 16
        for name in MINICPMV_TOKEN_NAMES:
            setattr(self, name, getattr(tokenizer, name))


class ImageOnlyMiniCPMV4_6Processor(_ImageOnlyMiniCPMV, MiniCPMV4_6Processor):
    """MiniCPM-V 4.6 without its video processor."""


class ImageOnlyMiniCPMV4_7Processor(_ImageOnlyMiniCPMV, MiniCPMV4_7Processor):
    """MiniCPM-V 4.7 without its video processor."""


IMAGE_ONLY = {
    "qwen2_vl": ImageOnlyQwenProcessor,
    "qwen2_5_vl": ImageOnlyQwenProcessor,
    "minicpmv4_6": ImageOnlyMiniCPMV4_6Processor,
    "minicpmv4_7": ImageOnlyMiniCPMV4_7Processor,
}


def load_image_only_processor(path: str, model_type: str):
    """The checkpoint's image processor (PIL backend) + tokenizer, without torchvision."""
    from transformers import AutoTokenizer, MiniCPMV4_6ImageProcessorPil, Qwen2VLImageProcessorPil

    image_processor_class = MiniCPMV4_6ImageProcessorPil if model_type.startswith("minicpmv") else Qwen2VLImageProcessorPil
    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = image_processor_class.from_pretrained(path)
    return IMAGE_ONLY[model_type](image_processor, tokenizer, chat_template=tokenizer.chat_template)
