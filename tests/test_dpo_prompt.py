"""Train = serve for pairs: a pair's prompt is, token for token, what the agent is served at that step."""

from __future__ import annotations

import torch

from agent.models.local_vlm import LocalVLM
from agent.render import assistant_text, render_messages
from review.pairs import iter_pairs
from review.store import Store
from tests.support.preferences import preference_store
from tests.support.train_records import TINY_PIXELS
from train.data import FileReader, Record
from train.dpo import SIDES, CandidateEncoder


def test_each_sides_prompt_tokens_are_the_local_backends_at_that_step(
        tmp_path, tiny_checkpoint, tiny_processor, mmtraj_records, release_image_dir):
    db = preference_store(tmp_path / "mat.db", mmtraj_records, release_image_dir)
    with Store(db) as store:
        pairs = list(iter_pairs(store))
    served_by = LocalVLM(tiny_checkpoint, max_pixels=TINY_PIXELS)
    encoder = CandidateEncoder(tiny_processor, max_pixels=TINY_PIXELS, max_length=4096)
    checked = 0
    for pair in pairs:
        images = pair.image_paths()
        at_step = render_messages(pair.context, images)  # what the agent loop renders before generating the step
        assert pair.messages()[0] == at_step
        served = served_by._inputs(at_step)["input_ids"][0]
        for side in SIDES:
            record = Record(f"{pair.id}/{side}", pair.trajectory(side), images, FileReader())
            encoded, status = encoder.encode(record, record.image_bytes())
            assert status == "ok"
            start = int(encoded.labelled.argmax())
            assert torch.equal(torch.from_numpy(encoded.input_ids[:start]), served), pair.describe()
            labelled = tiny_processor.tokenizer.decode(encoded.input_ids[encoded.labelled])
            step = pair.chosen if side == "chosen" else pair.rejected
            assert labelled == assistant_text(step.model_output) + "<|im_end|>"  # its own tokens, nothing else
            checked += 1
    assert checked == 6 and any(pair.images for pair in pairs)
