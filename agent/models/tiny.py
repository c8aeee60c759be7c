"""Tiny Qwen2-VL and MiniCPM-V checkpoints built offline in seconds: random weights, a tokenizer trained on
the spot, a real processor. Tests across the project and `python -m agent run --tiny` use it; its answers are noise,
but every code path (chat template, image tokens, vision tower, generation, LoRA) is the real one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2-VL's own chat template: content is a string or a list of {"type": "image"|"text"} parts.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

MINICPMV = {"minicpmv4_6", "minicpmv4_7"}
# MiniCPM-V's processor wraps each image token in its own <image>…</image> and slice markers, named on the tokenizer.
MINICPMV_TOKENS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "image_start_token": "<image>",
    "image_end_token": "</image>",
    "slice_start_token": "<slice>",
    "slice_end_token": "</slice>",
    "image_id_start_token": "<image_id>",
    "image_id_end_token": "</image_id>",
}
MINICPMV_CHAT_TEMPLATE = CHAT_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", "<|image_pad|>")

# Enough agent-flavoured text for a byte-level BPE to learn useful merges.
CORPUS = """\
Thought: I need to find the answer by looking at the image and using the tools.
Code:
```py
answer = visualizer(question="What is shown in the picture?", image_path="image_1.jpg")
print(answer)
```<end_action>
[OUTPUT OF STEP 0] Observation:
The picture shows a red car parked next to a tree on a sunny street.
Thought: Now I know the answer, I will return it with final_answer.
Code:
```py
final_answer("A red car")
```<end_action>
[OUTPUT OF STEP 1] Error: Code execution failed due to the following error: name 'x' is not defined
Picture 1: <img>files/coco/train2017/000000123456.jpg</img>
Task: How many people are in the image, and what are they doing? Attachment: files/report.pdf
result = ocr(image_path="receipt.png")
text = inspect_file_as_text(file_path="data.xlsx", question="What is the total?")
faces = facedetection(image_path="photo.jpg")
boxes = objectlocation(object="dog", image_path="park.jpg")
search = ask_search_agent(query="population of Paris in 2020")
import numpy as np
import pandas as pd
for i in range(10):
    total = total + price[i] * quantity[i]
print(f"The total is {total:.2f} dollars.")
You are an expert assistant who can solve any task using code blobs and a set of tools.
The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14
"""


# The tokenizer learns CORPUS and the default system prompts, split at line ends only, so that BPE may merge whole
# lines: the ~13K-character release prompt becomes a few hundred tokens instead of thousands, and a `--tiny`
# training step on real records takes seconds. The vocabulary stops growing (~5K) once every line is one token.
VOCAB_SIZE = 8192


def _tokenizer_text() -> list[str]:
    """What the tiny tokenizer is trained on: CORPUS and each tool profile's default system prompt, by line."""
    from agent.prompt import default_system_prompt
    from agent.tools import PROFILES

    prompts = [default_system_prompt(profile) for profile in PROFILES]
    return CORPUS.splitlines(keepends=True) * 4 + [line for text in prompts for line in text.splitlines(keepends=True)]


def _train_tokenizer(arch: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    minicpm = arch in MINICPMV
    special_tokens = list(SPECIAL_TOKENS)
    if minicpm:
        special_tokens += [t for t in MINICPMV_TOKENS.values() if t not in SPECIAL_TOKENS]

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\n"), behavior="isolated"),  # "assistant\n" stays two pieces in any context
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_text(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=MINICPMV_TOKENS if minicpm else SPECIAL_TOKENS[3:],
        chat_template=MINICPMV_CHAT_TEMPLATE if minicpm else CHAT_TEMPLATE,
        model_max_length=8192,
    )


# Vision towers of each architecture, shrunk; all project into the text model's 64 dimensions.
VISION = {
    "qwen2_vl": {"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2},
    "qwen2_5_vl": {
        "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
        "fullatt_block_indexes": [1], "window_size": 112,
    },
}


# MiniCPM-V 4.6/4.7: a SigLIP-style tower (merged after its first layer) on a Qwen3.5 text model
# (one linear-attention layer, one full-attention layer). Images are sliced into 112-pixel tiles.
MINICPMV_TILE = 112
MINICPMV_TEXT = {
    "model_type": "qwen3_5_text",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "layer_types": ["linear_attention", "full_attention"],
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "linear_key_head_dim": 16,
    "linear_value_head_dim": 16,
    "max_position_embeddings": 8192,
}
MINICPMV_VISION = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
    "patch_size": 14, "image_size": MINICPMV_TILE,
}


def _qwen_config(tokenizer, arch: str):
    import transformers

    config_class = {"qwen2_vl": transformers.Qwen2VLConfig, "qwen2_5_vl": transformers.Qwen2_5_VLConfig}[arch]
    ids = tokenizer.convert_tokens_to_ids
    return config_class(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 8192,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": ids("<|endoftext|>"),
        },
        vision_config=VISION[arch],
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def _minicpmv_config(tokenizer, arch: str):
    import transformers

    ids = tokenizer.convert_tokens_to_ids
    text_config = {
        **MINICPMV_TEXT,
        "vocab_size": len(tokenizer),
        "bos_token_id": ids("<|endoftext|>"),
        "eos_token_id": ids("<|im_end|>"),
        "pad_token_id": ids("<|endoftext|>"),
    }
    common = dict(
        text_config=text_config,
        vision_config=MINICPMV_VISION,
        insert_layer_id=0,
        image_size=MINICPMV_TILE,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
    )
    if arch == "minicpmv4_6":
        return transformers.MiniCPMV4_6Config(**common)
    # 4.7 places the image and slice markers on its canvas positions, so it needs their ids.
    newline = tokenizer("\n")["input_ids"][0]
    return transformers.MiniCPMV4_7Config(
        **common,
        image_start_id=ids("<image>"),
        image_end_id=ids("</image>"),
        slice_start_id=ids("<slice>"),
        slice_end_id=ids("</slice>"),
        newline_id=newline,
    )


def _tiny_model(tokenizer, seed: int, arch: str):
    import torch
    import transformers

    config = _minicpmv_config(tokenizer, arch) if arch in MINICPMV else _qwen_config(tokenizer, arch)
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(seed)
    model = transformers.AutoModelForImageTextToText.from_config(config).eval()
    model.generation_config = transformers.GenerationConfig(
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=ids("<|endoftext|>"),
        do_sample=False,
        suppress_tokens=_unprintable_tokens(tokenizer),
    )
    return model


def _unprintable_tokens(tokenizer) -> list[int]:
    """Tokens a terminal should not receive from random weights: control bytes, broken UTF-8, markup tokens."""
    keep = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    printable = set(map(chr, range(32, 127))) | {"\n", "\t"}
    return [
        i
        for i in range(len(tokenizer))
        if i not in keep and (i in tokenizer.all_special_ids or not set(tokenizer.decode([i])) <= printable)
    ]


def build_tiny_qwen2vl(out_dir: Path, *, seed: int = 0, arch: str = "qwen2_vl") -> Path:
    """Build the tiny checkpoint into `out_dir` (reused when already there) and return `out_dir`.

    `arch` is "qwen2_vl" or "qwen2_5_vl" (Qwen2.5-VL's windowed vision tower).
    """
    if arch not in VISION:
        raise ValueError(f"arch must be one of {sorted(VISION)}, not {arch!r}")
    return _build(Path(out_dir), seed, arch)


def build_tiny_minicpmv(out_dir: Path, *, seed: int = 0, arch: str = "minicpmv4_6") -> Path:
    """Build a tiny MiniCPM-V checkpoint (native transformers classes) into `out_dir`; reused when there.

    `arch` is "minicpmv4_6" or "minicpmv4_7" (4.7 adds canvas positions for the image markers).
    """
    if arch not in MINICPMV:
        raise ValueError(f"arch must be one of {sorted(MINICPMV)}, not {arch!r}")
    return _build(Path(out_dir), seed, arch)


def _image_processor(arch: str):
    from transformers import MiniCPMV4_6ImageProcessorPil, Qwen2VLImageProcessorPil

    if arch in MINICPMV:
        return MiniCPMV4_6ImageProcessorPil(scale_resolution=MINICPMV_TILE, max_slice_nums=4)
    return Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=64 * 28 * 28)


def _build(out_dir: Path, seed: int, arch: str) -> Path:
    if (out_dir / "config.json").exists() and (out_dir / "processor_config.json").exists():
        return out_dir
    from agent.models.image_only import IMAGE_ONLY

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        tokenizer = _train_tokenizer(arch)
        processor = IMAGE_ONLY[arch](_image_processor(arch), tokenizer, chat_template=tokenizer.chat_template)
        processor.save_pretrained(staging)
        _tiny_model(tokenizer, seed, arch).save_pretrained(staging)
        try:
            os.replace(staging, out_dir)  # atomic: a concurrent builder never sees half a checkpoint
        except OSError:
            if not (out_dir / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
