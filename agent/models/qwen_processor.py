"""A Qwen2-VL processor for images and text only.

The stock Qwen2VLProcessor insists on a video processor, which needs torchvision; this one takes the image
processor and the tokenizer alone, and saves and reloads with `from_pretrained` like any processor.
Imported lazily: it pulls in transformers.
"""

from __future__ import annotations

from transformers import Qwen2VLProcessor


class ImageOnlyQwenProcessor(Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kwargs)


def load_image_only_processor(path: str):
    """Qwen image processor (PIL backend) + tokenizer from a checkpoint directory, without torchvision."""
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(path)
    return ImageOnlyQwenProcessor(image_processor, tokenizer, chat_template=tokenizer.chat_template)
