"""On CUDA, bf16: a packed row through `mat_varlen` (PyTorch's FlashAttention varlen kernel, segments from the
plan) gives each trajectory the logits and loss it gets alone. Skips without a GPU.

Tolerance: bf16 keeps 8 bits of mantissa, so one rounding is up to 2^-8 = 0.4% relative; the packed and the
separate forward run different kernels (varlen flash vs sdpa) whose sums round differently, and the differences
pass through 2 layers, so logits are compared at atol 0.05 / rtol 0.02 and each trajectory's mean loss at 1%
relative (the loss averages hundreds of tokens, which shrinks the error).
"""

from __future__ import annotations

import pytest
import torch

from tests.support.train_records import TINY_PIXELS, short_records, write_records
from train.data import IGNORE, Encoder, iter_release
from train.packing import add_rope_positions, pack
from train.presets import build_config
from train.trainer import load_model, load_processor

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (FlashAttention varlen)")]


def test_packed_bf16_row_on_cuda_matches_separate_forwards(tiny_checkpoint, mmtraj_records, release_image_dir,
                                                           tmp_path):
    processor = load_processor(str(tiny_checkpoint))
    chosen = [r for r in mmtraj_records if "<img>" in r["conversations"][1]["value"]][:2] + \
        [r for r in mmtraj_records if "<img>" not in r["conversations"][1]["value"]][:1]
    records = list(iter_release(write_records(short_records(chosen), tmp_path / "three.json"), release_image_dir))
    examples = Encoder(processor, max_pixels=TINY_PIXELS).examples(records)
    model = load_model(str(tiny_checkpoint), build_config("tiny", attention="varlen", lora_dropout=0.0),
                       torch.bfloat16).cuda().eval()
    add_rope_positions(examples, model)
    batch = pack(examples, pad_id=processor.tokenizer.pad_token_id, pad_to_multiple=64)
    inputs = {k: v.cuda() if hasattr(v, "cuda") else v for k, v in batch.inputs.items() if k != "labels"}
    with torch.no_grad():
        packed = model(**inputs, use_cache=False).logits[0].float()
        start = 0
        for example in examples:
            alone_inputs = {"input_ids": example.input_ids[None].cuda(),
                            "mm_token_type_ids": example.mm_token_type_ids[None].cuda()}
            if example.pixel_values is not None:
                alone_inputs.update(pixel_values=example.pixel_values.cuda().bfloat16(),
                                    image_grid_thw=example.image_grid_thw.cuda())
            alone = model(**alone_inputs, use_cache=False).logits[0].float()
            piece = packed[start:start + len(example)]
            torch.testing.assert_close(piece, alone, atol=5e-2, rtol=2e-2)
            labels = example.labels.cuda()
            losses = [torch.nn.functional.cross_entropy(x[:-1], labels[1:], ignore_index=IGNORE) for x in (piece, alone)]
            assert float(losses[0]) == pytest.approx(float(losses[1]), rel=1e-2)
            start += len(example)
