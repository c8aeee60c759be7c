"""One renderer for training and serving: release records rendered, exported, and fed to real backends."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from agent.render import message_text, render_messages
from agent.steps import Step, Task, Trajectory

TWO_PICTURES = "v7xej1k3"


def _record(records: list[dict], record_id: str) -> dict:
    return next(r for r in records if r["id"] == record_id)


def _files(tmp_path, record: dict) -> list[str]:
    """Real image files standing in for the record's pictures (release records ship without images)."""
    paths = []
    for index, _ in enumerate(Trajectory.from_conversations(record["conversations"]).task.images):
        path = tmp_path / f"picture{index}.png"
        Image.new("RGB", (96, 64), (40 * index, 120, 200)).save(path)
        paths.append(str(path))
    return paths


def test_every_release_record_renders_back_to_its_own_text(fidelity_records):
    for record in fidelity_records:
        conversations = record["conversations"]
        messages = render_messages(Trajectory.from_conversations(conversations))
        assert [m["role"] for m in messages] == [t["from"] for t in conversations]
        assert [message_text(m) for m in messages] == [t["value"] for t in conversations], record["id"]


def test_images_stand_in_place_of_their_tags(mmtraj_records, tmp_path):
    record = _record(mmtraj_records, TWO_PICTURES)
    files = _files(tmp_path, record)
    task = render_messages(Trajectory.from_conversations(record["conversations"]), files)[1]["content"]

    assert [p["type"] for p in task] == ["text", "image", "text", "image", "text"]
    assert task[0]["text"] == "Picture 1: "
    assert task[1] == {"type": "image", "image": files[0]}
    assert task[2]["text"] == "\nPicture 2: "
    assert task[3] == {"type": "image", "image": files[1]}
    assert task[4]["text"].startswith("\nTask: Check my calendar")
    assert "Attachment: data/tongagent/" in task[4]["text"]  # the paths stay visible to the model


def test_a_wrong_number_of_image_files_is_refused(mmtraj_records):
    trajectory = Trajectory.from_conversations(_record(mmtraj_records, TWO_PICTURES)["conversations"])
    with pytest.raises(ValueError, match="shows 2 picture"):
        render_messages(trajectory, ["only-one.png"])


def test_assistant_turns_are_served_stripped_without_the_stop_string():
    step = Step(index=0, model_output="Thought: t\nCode:\n```py\nfinal_answer(1)\n```<end_action>\n", is_final=True)
    trajectory = Trajectory(task=Task("Say 1"), system_prompt="S", steps=[step])
    assert render_messages(trajectory)[2]["content"] == [
        {"type": "text", "text": "Thought: t\nCode:\n```py\nfinal_answer(1)\n```"}
    ]


def _turns_from_tokens(text: str, tags: list[str]) -> list[tuple[str, str]]:
    """Decoded Qwen chat text back to (role, text) turns, each vision block written as its release tag."""
    pictures = iter(tags)
    text = re.sub(r"<\|vision_start\|>(?:<\|image_pad\|>)+<\|vision_end\|>", lambda _: f"<img>{next(pictures)}</img>", text)
    return re.findall(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n", text, re.S)


def test_the_local_model_is_served_the_release_text_byte_for_byte(mmtraj_records, tiny_checkpoint, tmp_path):
    from agent.models.local_vlm import LocalVLM

    model = LocalVLM(tiny_checkpoint)
    for record_id in (TWO_PICTURES, "eUhXIcXJ", "FQ8cj0s_"):
        record = _record(mmtraj_records, record_id)
        trajectory = Trajectory.from_conversations(record["conversations"])
        inputs = model._inputs(render_messages(trajectory, _files(tmp_path, record)))
        decoded = model.processor.tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=False)

        assert decoded.endswith("<|im_start|>assistant\n")
        turns = _turns_from_tokens(decoded, trajectory.task.images)
        assert turns == [(t["from"], t["value"]) for t in record["conversations"]]
        if trajectory.task.images:
            assert inputs["image_grid_thw"].shape[0] == len(trajectory.task.images)


def test_an_endpoint_gets_the_same_layout_as_the_export(mmtraj_records, openai_server, tmp_path):
    from agent.models.openai_compat import OpenAICompatModel
    from review.store import Store

    record = _record(mmtraj_records, TWO_PICTURES)
    trajectory = Trajectory.from_conversations(record["conversations"])
    images = tmp_path / "images"
    for name, color in zip(trajectory.task.images, ("red", "green"), strict=True):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), color).save(images / name)
    store = Store(tmp_path / "mat.db")
    store.import_records([record], source="release", images=images)
    assert store.export("messages", tmp_path / "train") == 1
    exported = json.loads((tmp_path / "train" / "messages.jsonl").read_text())

    files = [str(tmp_path / "train" / p) for p in exported["images"]]
    model = OpenAICompatModel("mat-test", base_url=openai_server.url, api_key="sk-test")
    model.generate(render_messages(trajectory, files))
    sent = openai_server.chat_requests[-1].body["messages"]

    assert [m["role"] for m in sent] == [m["role"] for m in exported["messages"]]
    for wire, example in zip(sent, exported["messages"], strict=True):
        parts = wire["content"] if isinstance(wire["content"], list) else [{"type": "text", "text": wire["content"]}]
        assert [p["type"] for p in parts] == [("image_url" if p["type"] == "image" else "text") for p in example["content"]]
        assert [p.get("text") for p in parts] == [p.get("text") for p in example["content"]]
    assert len(openai_server.chat_requests[-1].image_urls) == 2
    tags = iter(trajectory.task.images)  # the export names images by its own files; put the release's tags back
    decoded = [re.sub("\0", lambda _: f"<img>{next(tags)}</img>", message_text(m, "\0")) for m in exported["messages"]]
    assert decoded == [t["value"] for t in record["conversations"]]
