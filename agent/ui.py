"""The Chat tab: upload images, ask, and watch each step stream in as a collapsible message.

`build_chat_layout` places the components (`ChatLayout`), `wire_chat` attaches the handlers below through
`core.ui.wire`; a turn's work is `agent.chat.respond`. Each browser session has its own run key, so one
user's Stop never stops another's run. The review store is reached only through `StoreHooks` that the app
passes in: `agent` never imports `review`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from agent.chat import FinishedRun, respond, stop_run
from agent.config import Settings
from agent.models import TINY, add_local, choice_named, model_choices
from agent.profiles import PROFILES
from agent.session import UploadError
from core.errors import UserError
from core.ui import Links, wire


@dataclass
class StoreHooks:
    """What the Chat tab may do with stored trajectories; supplied where the app is assembled."""

    save: Callable[[FinishedRun], str]  # store a finished run, return its trajectory id
    system_prompt: Callable[[str], str]  # a stored trajectory's system turn; KeyError for an unknown id


@dataclass
class ChatLayout:
    """The Chat tab's components."""

    notice: Any
    choice: Any
    profile: Any
    max_steps: Any
    prompt_record: Any
    chatbot: Any
    box: Any
    stop: Any
    clear: Any
    save: Any
    saved: Any
    run_key: Any  # this browser session's key for its run (Stop finds the run by it)
    last: Any  # the path of the last finished run's record, for Save to Review


def build_chat_tab(settings: Settings, hooks: StoreHooks | None = None, links: Links | None = None) -> ChatLayout:
    """The Chat tab (called inside `gr.Tab`); `hooks` connect it to the review store, `links` to the other tabs."""
    layout = build_chat_layout(settings, hooks)
    wire_chat(layout, settings, hooks, links)
    return layout


def build_chat_layout(settings: Settings, hooks: StoreHooks | None) -> ChatLayout:
    import gradio as gr

    notice = gr.Markdown(setup_notice(settings), elem_id="chat-notice")
    with gr.Row():
        choice = picker(settings)
        profile = gr.Dropdown(list(PROFILES), value=settings.profile, label="Tool profile", scale=1)
        max_steps = gr.Slider(1, 20, value=settings.max_steps, step=1, label="Max steps", scale=1)
    with gr.Accordion("System prompt", open=False, visible=hooks is not None):
        prompt_record = gr.Textbox(
            label="Serve with the system prompt of a stored trajectory (its id from the Review tab)",
            placeholder="empty: the release's template with the profile's tools", elem_id="chat-prompt-record",
        )
    chatbot = gr.Chatbot(label="T3-Agent", height=560, elem_id="chat-log", buttons=["copy"])
    box = gr.MultimodalTextbox(
        placeholder="Upload images or files and describe the task. Each message is a new task.",
        file_count="multiple", sources=["upload"], elem_id="chat-input", show_label=False,
    )
    with gr.Row():
        stop = gr.Button("Stop", variant="stop", elem_id="chat-stop", interactive=False)
        clear = gr.Button("Clear", elem_id="chat-clear")
        save = gr.Button("Save to Review", elem_id="chat-save", visible=hooks is not None)
    saved = gr.Markdown(elem_id="chat-saved")
    return ChatLayout(notice, choice, profile, max_steps, prompt_record, chatbot, box, stop, clear, save, saved,
                      run_key=gr.State(lambda: uuid.uuid4().hex), last=gr.State(None))


def wire_chat(layout: ChatLayout, settings: Settings, hooks: StoreHooks | None, links: Links | None) -> None:
    import gradio as gr

    c = layout
    ask = [c.box, c.chatbot, c.choice, c.profile, c.max_steps, c.prompt_record, c.run_key]
    running = wire(c.box.submit, partial(submit, settings, hooks), ask, [c.chatbot, c.last, c.box, c.stop], "chat",
                   concurrency_limit=settings.remote_concurrency, show_progress="minimal")
    wire(running.then, idle, None, [c.stop])
    wire(c.stop.click, stop, [c.run_key], [c.stop], "stop", queue=False)
    wire(c.clear.click, lambda: ([], None), None, [c.chatbot, c.last])
    if hooks is not None:
        go = links.outputs("review") if links is not None else []
        wire(c.save.click, partial(save, hooks, links), [c.last], [c.saved, *go], "save")
    wire(c.choice.focus, partial(picker, settings), [c.choice], [c.choice])
    if links is not None:
        wire(links.address("chat").change, partial(apply_address, settings), [links.address("chat")], [c.choice])
    root = gr.context.Context.root_block
    if root is not None:
        wire(root.load, lambda: (picker(settings), setup_notice(settings)), None, [c.choice, c.notice])


# ---------------------------------------------------------------- handlers


def submit(settings: Settings, hooks: StoreHooks | None, message, history, label, profile, steps, record_id,
           run_key) -> Iterator[tuple]:
    """Run one task; outputs: the chat, the finished run's path, the input box (emptied), Stop (live while it runs)."""
    import gradio as gr

    choice = choice_named(settings, label)
    system_prompt = record_system_prompt(hooks, record_id)
    for shown, finished, running in respond(message, history, choice, profile, steps, system_prompt, run_key,
                                            settings):
        yield shown, finished, None, gr.Button(interactive=running)


def idle():
    """Stop is disabled whenever nothing runs."""
    import gradio as gr

    return gr.Button(interactive=False)


def stop(run_key: str):
    stop_run(run_key)
    return idle()


def save(hooks: StoreHooks, links: Links | None, finished: str | None):
    """Put the last finished (or stopped) run into the review store, and open it there."""
    if not finished:
        raise UserError("Nothing to save yet: finish or stop a task first.")
    trajectory_id = hooks.save(FinishedRun.load(finished))
    message = f"Saved as `{trajectory_id}`: it is pending in the Review tab."
    return (message, *links.go("review", open=trajectory_id)) if links is not None else message


def picker(settings: Settings, value: str | None = None):
    """The model picker with this process's models (those added in Settings too), keeping `value` if offered."""
    import gradio as gr

    labels = [choice.label for choice in model_choices(settings)]
    return gr.Dropdown(labels, value=value if value in labels else labels[0], label="Model", elem_id="chat-model",
                       scale=3, allow_custom_value=True)


def apply_address(settings: Settings, address: dict | None):
    """A link to Chat: `{"local_model": PATH, "adapter": PATH}` adds that model (loaded on first use),
    `{"model": LABEL}` picks one already offered; either way it becomes the picker's choice."""
    import gradio as gr

    if not address:
        return gr.skip()
    if address.get("local_model"):
        label = add_local(address["local_model"], address.get("adapter")).label
    else:
        label = choice_named(settings, address.get("model")).label
    gr.Info(f"Chat now uses {label}.")
    return picker(settings, label)


def record_system_prompt(hooks: StoreHooks | None, record_id: str | None) -> str | None:
    """The system turn of a stored trajectory, so a model tuned on MM-Traj is served the prompt it was trained on."""
    if not (record_id or "").strip():
        return None
    if hooks is None:
        raise UploadError("no trajectory store is connected to this chat, so a stored system prompt cannot be used")
    try:
        return hooks.system_prompt(record_id.strip())
    except KeyError:
        raise UploadError(f"no stored trajectory '{record_id.strip()}': copy an id from the Review tab") from None


def setup_notice(settings: Settings) -> str:
    """What the page says above the chat: the sandbox in use, and how to configure a model if none is."""
    from agent.models import setup_help
    from agent.sandbox import sandbox_notice

    lines = [f"**Sandbox:** {sandbox_notice()}"]
    if [choice.label for choice in model_choices(settings)] == [TINY]:
        lines.append(f"```text\n{setup_help()}\n```")
    return "\n\n".join(lines)
