"""The one renderer: a trajectory becomes chat messages exactly as a model sees them.

Serving (the local transformers backend, OpenAI-compatible endpoints such as vLLM), the
`messages` export and training all call `render_messages`, so a tuned model is served the
text and image layout it was trained on. The shape is the HF/TRL chat shape:

    [{"role": "system" | "user" | "assistant",
      "content": [{"type": "text", "text": ...} | {"type": "image", "image": path}]}]

Each image stands where the release's task turn tags it: `Picture 1: <img>p</img>\\nTask: ...`
renders as the text `Picture 1: `, the image, then the text `\\nTask: ...`. The path stays
visible to the model through the task's `Attachment:` line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.steps import IMAGE_TAG, Trajectory

STOP_STRING = "<end_action>"


def render_messages(trajectory: Trajectory, images: Sequence[str | Path] | None = None) -> list[dict[str, Any]]:
    """The trajectory's turns as chat messages, images in place of their tags.

    `images` are the real files behind the task's pictures, in tag order; by default the
    tag paths themselves. A count that does not match the tags is refused (ValueError).
    """
    turns = trajectory.to_conversations()
    messages = [text_message("system", turns[0]["value"]), task_message(turns[1]["value"], images)]
    for turn in turns[2:]:
        if turn["from"] == "assistant":
            messages.append(text_message("assistant", assistant_text(turn["value"])))
        else:
            messages.append(text_message("user", turn["value"]))
    return messages


def task_message(text: str, images: Sequence[str | Path] | None = None) -> dict[str, Any]:
    """The task turn: text pieces with each `<img>path</img>` tag replaced by its image."""
    pieces = IMAGE_TAG.split(text)
    tagged = pieces[1::2]
    files = tagged if images is None else [str(p) for p in images]
    if len(files) != len(tagged):
        raise ValueError(f"the task shows {len(tagged)} picture(s) but {len(files)} image file(s) were given")
    content: list[dict[str, str]] = []
    for index, piece in enumerate(pieces):
        if index % 2:
            content.append({"type": "image", "image": files[index // 2]})
        elif piece:
            content.append({"type": "text", "text": piece})
    return {"role": "user", "content": content}


def text_message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def assistant_text(text: str) -> str:
    """A model turn as the release stores it: stripped, without the stop string."""
    return text.strip().removesuffix(STOP_STRING).rstrip()


def message_text(message: dict[str, Any], image: str = "<img>{}</img>") -> str:
    """A rendered message back as one string, each image written with `image` (the inverse of rendering)."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part["text"] if part["type"] == "text" else image.format(part.get("image", "")) for part in content)
