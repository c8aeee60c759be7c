"""Packing: every trajectory in a packed row gets the logits and loss it gets alone; padding stays small."""

from __future__ import annotations

import pytest
import torch

from agent.models.tiny import build_tiny_qwen2vl
from tests.support.train_records import TINY_PIXELS, short_records, write_records
from train import attention
from train.data import IGNORE, Encoder, iter_release
from train.packing import add_rope_positions, first_fit_decreasing, pack, plan_rows
from train.presets import build_config
from train.trainer import load_model, load_processor



def _segment_loss(logits, labels):
    """Mean next-token loss of one trajectory's slice (labels shifted inside the slice)."""
    return torch.nn.functional.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE)


def test_first_fit_decreasing_respects_the_budget():
    lengths = [7000, 5000, 3000, 3000, 2000, 900, 100]
    bins = first_fit_decreasing(lengths, 10_240)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10_240 for b in bins)
    assert len(bins) == 3  # 21,000 tokens cannot fit in 2 rows of 10,240


@pytest.mark.parametrize("arch, attn", [("qwen2_vl", "varlen"), ("qwen2_vl", "sdpa"), ("qwen2_5_vl", "varlen")])
def test_packed_row_gives_each_trajectory_its_own_logits_and_loss(
        arch, attn, tiny_checkpoint, mmtraj_records, release_image_dir, tmp_path, tmp_path_factory):
    if arch != "qwen2_vl":
        tiny_checkpoint = build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny") / arch, arch=arch)
    processor = load_processor(str(tiny_checkpoint))
    with_pictures = [r for r in mmtraj_records if "<img>" in r["conversations"][1]["value"]][:2]
    text_only = [r for r in mmtraj_records if "<img>" not in r["conversations"][1]["value"]][:1]
    path = write_records(short_records(with_pictures + text_only), tmp_path / "three.json")
    records = list(iter_release(path, release_image_dir))
    examples = Encoder(processor, max_pixels=TINY_PIXELS).examples(records)
    config = build_config("tiny", attention=attn, lora_dropout=0.0)
    model = load_model(str(tiny_checkpoint), config, torch.float32).eval()
    add_rope_positions(examples, model)
    batch = pack(examples, pad_id=processor.tokenizer.pad_token_id, pad_to_multiple=64)
    assert batch.images == 3 and 0 < batch.padding < 64
    with torch.no_grad():
        packed = model(**batch.inputs, use_cache=False).logits[0]
        start = 0
        for example in examples:
            alone_inputs = {"input_ids": example.input_ids[None], "mm_token_type_ids": example.mm_token_type_ids[None]}
            if example.pixel_values is not None:
                alone_inputs.update(pixel_values=example.pixel_values, image_grid_thw=example.image_grid_thw)
            alone = model(**alone_inputs, use_cache=False).logits[0]  # the model places its own positions
            piece = packed[start:start + len(example)]
            torch.testing.assert_close(piece, alone, atol=2e-5, rtol=1e-4)
            torch.testing.assert_close(_segment_loss(piece, example.labels), _segment_loss(alone, example.labels))
            start += len(example)
        # control: without the row's segments (positions that run on, no cu_seq_lens) trajectories see each other
        plan = ("position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
        leaked = model(**{k: v for k, v in batch.inputs.items() if k not in plan}, use_cache=False).logits[0]
        second = slice(len(examples[0]), len(examples[0]) + len(examples[1]))
        assert not torch.allclose(leaked[second], packed[second], atol=1e-3)


def test_a_packed_row_carries_its_segments_from_the_plan():
    """cu_seqlens and the longest segment are computed on the CPU when the row is packed, once per forward."""
    from train.data import Example

    def example(n):
        ids = torch.arange(n)
        return Example(str(n), ids, ids, torch.zeros(n, dtype=torch.long))

    batch = pack([example(5), example(3), example(7)], pad_id=0, pad_to_multiple=8)
    assert batch.inputs["cu_seq_lens_q"].tolist() == [0, 5, 8, 15, 16] and batch.inputs["max_length_q"] == 7
    assert batch.inputs["cu_seq_lens_q"].device.type == "cpu" and isinstance(batch.inputs["max_length_q"], int)


def test_varlen_segments_come_from_text_positions():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert attention.segment_starts(positions).tolist() == [0, 3, 5, 9]
    two_rows = torch.tensor([[0, 1, 2, 3], [0, 1, 0, 1]])
    assert attention.segment_starts(two_rows).tolist() == [0, 4, 6, 8]


def test_padding_is_under_five_percent_where_the_mat_recipe_pads_most(mmtraj_path, release_image_dir, tiny_processor):
    records = list(iter_release(mmtraj_path, release_image_dir))
    examples = Encoder(tiny_processor, max_pixels=TINY_PIXELS).examples(records)
    rows = plan_rows(examples, 10_240)
    batches = [pack([examples[i] for i in row], pad_id=0, pad_to_multiple=64) for row in rows]
    padding = sum(b.padding for b in batches) / sum(b.tokens + b.padding for b in batches)
    lengths = [len(e) for e in examples]
    mat_recipe = 1 - sum(lengths) / (10_240 * len(lengths))  # every trajectory padded to 10,240
    assert padding <= 0.05 < mat_recipe
    assert all(b.tokens + b.padding <= 10_240 + 63 for b in batches)
