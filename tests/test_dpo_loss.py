"""The DPO objective on the tiny Qwen2-VL: equal to a direct computation, and the same packed as unpacked."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForImageTextToText

from agent.models import encode_chat
from agent.models.images import load_image
from review.pairs import iter_pairs
from review.store import Store
from tests.support.preferences import preference_store
from tests.support.train_records import TINY_PIXELS
from train.dpo import CandidateEncoder, dpo_loss, load_policy, make_loss, metrics, owners, pair_records, \
    sequence_logps
from train.packing import add_rope_positions, pack
from train.presets import build_config

BETA = 0.5


@pytest.fixture(scope="module")
def setup(tiny_checkpoint, tiny_processor, mmtraj_records, release_image_dir, tmp_path_factory):
    """The pairs of a reviewed store, encoded as training encodes them, and a policy whose LoRA is not zero."""
    db = preference_store(tmp_path_factory.mktemp("dpo") / "mat.db", mmtraj_records, release_image_dir)
    config = build_config("tiny", method="dpo", db=str(db), beta=BETA, max_pixels=TINY_PIXELS)
    records = list(pair_records(config))
    examples = CandidateEncoder(tiny_processor, max_pixels=TINY_PIXELS, max_length=4096).examples(records)
    assert [e.id.rsplit("/", 1)[1] for e in examples] == ["chosen", "rejected"] * 3
    for example in examples:
        example.weight = 1 / 3  # three pairs in the step
    torch.manual_seed(0)
    model = load_policy(str(tiny_checkpoint), config, torch.float32).eval()
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.05)
    add_rope_positions(examples, model)
    return db, examples, model


def served_logp(model, processor, messages: list[dict]) -> float:
    """log p(last message | the others) as the local backend encodes the conversation: the served prompt (with
    its generation header) is the prefix, and the reply's tokens up to its turn end are scored."""
    def encode(conversation, header: bool):
        parts = [{"role": m["role"], "content": [dict(p, image=load_image(p["image"], TINY_PIXELS))
                                                 if p["type"] == "image" else p for p in m["content"]]}
                 for m in conversation]
        return encode_chat(processor, parts, max_pixels=TINY_PIXELS, add_generation_prompt=header)

    prompt = encode(messages[:-1], True)["input_ids"][0]
    full = encode(messages, False)
    ids = full["input_ids"][0]
    assert torch.equal(ids[: len(prompt)], prompt)
    end = ids.tolist().index(processor.tokenizer.convert_tokens_to_ids("<|im_end|>"), len(prompt)) + 1
    with torch.no_grad():
        logits = model(**full, use_cache=False).logits[0].double()
    scores = torch.log_softmax(logits[len(prompt) - 1:end - 1], dim=-1)
    return float(scores.gather(1, ids[len(prompt):end, None]).sum())


def test_dpo_loss_equals_a_direct_computation(setup, tiny_checkpoint, tiny_processor):
    db, examples, model = setup
    reference = AutoModelForImageTextToText.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    with Store(db) as store:
        pairs = list(iter_pairs(store))
    losses, wins = [], 0
    for pair in pairs:
        prompt, chosen, rejected = pair.messages()
        logps = {side: (served_logp(model, tiny_processor, prompt + [message]),
                        served_logp(reference, tiny_processor, prompt + [message]))
                 for side, message in (("chosen", chosen), ("rejected", rejected))}
        margin = (logps["chosen"][0] - logps["chosen"][1]) - (logps["rejected"][0] - logps["rejected"][1])
        losses.append(-math.log(1 / (1 + math.exp(-BETA * margin))))
        wins += margin > 0
    batch = pack(examples, pad_id=tiny_processor.tokenizer.pad_token_id)
    inputs = dict(batch.inputs)
    labels = inputs.pop("labels")
    loss, stats = make_loss(BETA)(model, inputs, labels, batch.weights, batch)
    loss = float(loss.detach())
    assert loss == pytest.approx(sum(losses) / len(losses), rel=1e-4, abs=1e-5)
    figures = metrics(stats.tolist())
    assert figures["pairs"] == 3 and figures["reward_accuracy"] == pytest.approx(wins / 3)
    assert loss != pytest.approx(math.log(2), abs=1e-3)  # the policy moved


def test_packed_pairs_get_the_logps_and_loss_they_get_alone(setup, tiny_processor):
    _, examples, model = setup
    batch = pack(examples, pad_id=tiny_processor.tokenizer.pad_token_id, pad_to_multiple=64)
    assert batch.padding > 0 and len(batch.ids) == 6
    inputs = dict(batch.inputs)
    labels = inputs.pop("labels")
    with torch.no_grad():
        packed = sequence_logps(model(**inputs, use_cache=False).logits, labels, owners(batch), 6)
        with model.disable_adapter():
            packed_reference = sequence_logps(model(**inputs, use_cache=False).logits, labels, owners(batch), 6)
        alone, alone_reference = [], []
        for example in examples:
            single = {"input_ids": example.input_ids[None], "mm_token_type_ids": example.mm_token_type_ids[None]}
            if example.pixel_values is not None:
                single.update(pixel_values=example.pixel_values, image_grid_thw=example.image_grid_thw)
            owner = torch.zeros(1, len(example), dtype=torch.long)
            alone.append(sequence_logps(model(**single).logits, example.labels[None], owner, 1))
            with model.disable_adapter():
                alone_reference.append(sequence_logps(model(**single).logits, example.labels[None], owner, 1))
    alone, alone_reference = torch.cat(alone), torch.cat(alone_reference)
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=2e-3)
    torch.testing.assert_close(packed_reference, alone_reference, rtol=1e-5, atol=2e-3)
    assert not torch.allclose(alone, alone_reference, atol=1e-2)  # the adapter matters
    loss_packed, _, _ = dpo_loss(packed[0::2], packed[1::2], packed_reference[0::2], packed_reference[1::2], BETA)
    loss_alone, _, _ = dpo_loss(alone[0::2], alone[1::2], alone_reference[0::2], alone_reference[1::2], BETA)
    torch.testing.assert_close(loss_packed, loss_alone, rtol=1e-5, atol=1e-5)


def test_padded_pairs_on_minicpmv_get_the_logps_they_get_alone(setup, tmp_path_factory):
    """MiniCPM-V trains on padded rows (one sequence each, a pair's two in one batch): the same log-probabilities."""
    from agent.models.tiny import build_tiny_minicpmv
    from train.trainer import collate_for, load_processor

    db, _, _ = setup
    checkpoint = build_tiny_minicpmv(tmp_path_factory.mktemp("minicpmv") / "tiny")
    processor = load_processor(str(checkpoint))
    config = build_config("tiny", method="dpo", db=str(db), max_pixels=TINY_PIXELS)
    records = list(pair_records(config))[:4]  # two pairs
    examples = CandidateEncoder(processor, max_pixels=TINY_PIXELS, max_length=4096).examples(records)
    torch.manual_seed(0)
    model = load_policy(str(checkpoint), config, torch.float32).eval()
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.05)
    batch = collate_for(False, processor, torch.device("cpu"))(examples)
    assert batch.padding > 0
    inputs = dict(batch.inputs)
    labels = inputs.pop("labels")
    with torch.no_grad():
        padded = sequence_logps(model(**inputs, use_cache=False).logits, labels, owners(batch), 4)
        alone = []
        for example in examples:
            single = collate_for(False, processor, torch.device("cpu"))([example])
            single_inputs = dict(single.inputs)
            single_labels = single_inputs.pop("labels")
            logits = model(**single_inputs, use_cache=False).logits
            alone.append(sequence_logps(logits, single_labels, owners(single), 1))
    torch.testing.assert_close(padded, torch.cat(alone), rtol=1e-5, atol=2e-3)
