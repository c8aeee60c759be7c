"""The Settings tab: every setting the app reads, its environment variable(s) and current value; the models
this app process offers, with a form to add one (admins only under a login); the space agent runs take.

The rows come from `agent/config.py` itself (each field's `_env(...)` names), so a new
setting shows up here without anyone remembering to add it; tests compare the same list
with the README's table.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from agent.config import Settings
from agent.display import plain_markdown
from agent.models import Choice, add_endpoint, add_local, model_choices
from agent.session import runs_usage
from core.errors import UserError
from core.ui import Links, wire

NOT_SET = "not set"
SECRETS = {"api_key": "set", "auth": "on"}  # shown only as whether they are set

HOW_TO_CHANGE = """\
Settings are environment variables, read when the app starts: set them in the shell that runs `make run`
(the README's table says what each one means). The key and the passwords are never shown. Models can also be
added below, for this app process, without a restart.
"""
ENDPOINT, LOCAL = "an OpenAI-compatible endpoint", "a local checkpoint"


@lru_cache(maxsize=1)
def setting_variables() -> dict[str, tuple[str, ...]]:
    """Each Settings field and the environment variables it is read from, in the order they are tried."""
    tree = ast.parse(inspect.getsource(Settings))
    found: dict[str, tuple[str, ...]] = {}
    for node in tree.body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = tuple(
                arg.value for call in ast.walk(node) if isinstance(call, ast.Call)
                and getattr(call.func, "id", None) == "_env"
                for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            )
            found[node.target.id] = names
    return found


def shown_value(settings: Settings, name: str) -> str:
    """A setting as a person may see it: secrets only as set or not, missing values as "not set"."""
    value = getattr(settings, name)
    if value in (None, ""):
        return NOT_SET
    return SECRETS.get(name, str(value))


def settings_rows(settings: Settings) -> list[tuple[str, str, str]]:
    """(setting, variables, value) for every field of Settings, then the database file actually used."""
    variables = setting_variables()
    rows = [(field.name, ", ".join(variables.get(field.name, ())) or "-", shown_value(settings, field.name))
            for field in dataclasses.fields(Settings)]
    return rows + [("database in use", "-", str(settings.db))]


def settings_markdown(settings: Settings) -> str:
    """The rows as one Markdown table (it grows with the page: no inner scrolling)."""
    lines = ["| setting | variable | value |", "|---|---|---|"]
    for name, variables, value in settings_rows(settings):
        cells = [f"`{name}`", " / ".join(f"`{v}`" for v in variables.split(", ")) if variables != "-" else "-",
                 f"`{value}`" if value != NOT_SET else f"*{NOT_SET}*"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def models_markdown(settings: Settings) -> str:
    """The models Chat's picker offers, and where each comes from (a typed key only as "typed")."""
    lines = ["| model | from |", "|---|---|"]
    for choice in model_choices(settings):
        lines.append(f"| {plain_markdown(choice.label)} | {plain_markdown(_origin(choice))} |")
    return "\n".join(lines)


def _origin(choice: Choice) -> str:
    if choice.tiny:
        return "built in (random weights, for a smoke test)"
    where = "added on this page" if choice.added else "the environment"
    if choice.path:
        return f"{where}: {choice.path}" + (f" with adapter {choice.adapter}" if choice.adapter else "")
    return f"{where}: {choice.base_url or 'OpenAI'}"


def disk_markdown(settings: Settings) -> str:
    """How much space agent run folders take, and how many are kept."""
    count, size = runs_usage(settings.runs_dir)
    return (f"**Agent runs:** {count} run folders in `{settings.runs_dir}` take {size / 2**20:.1f} MB. "
            f"The newest {settings.keep_runs} are kept (`MAT_KEEP_RUNS`); older ones are removed at start and as "
            "runs end.")


def add_model(settings: Settings, kind: str, base_url: str, model: str, key: str, path: str, adapter: str,
              user: str | None) -> Choice:
    """Offer a model in this process's picker; under a login only MAT_ADMINS may."""
    if not settings.may_change_models(user):
        raise UserError("only the admins named in MAT_ADMINS may add or switch models")
    return add_endpoint(base_url, model, key) if kind == ENDPOINT else add_local(path, adapter)


@dataclass
class SettingsLayout:
    """The Settings tab's components."""

    kind: Any
    endpoint_row: Any
    local_row: Any
    base_url: Any
    model: Any
    key: Any
    path: Any
    adapter: Any
    add: Any
    models: Any
    disk: Any
    refresh: Any


def build_settings_tab(settings: Settings, links: Links | None = None) -> SettingsLayout:
    layout = build_settings_layout(settings)
    wire_settings(layout, settings, links)
    return layout


def build_settings_layout(settings: Settings) -> SettingsLayout:
    import gradio as gr

    from agent.sandbox import sandbox_level

    gr.Markdown(f"**Sandbox:** `{sandbox_level()}`\n\n{HOW_TO_CHANGE}")
    gr.Markdown(settings_markdown(settings), elem_id="settings-table")
    gr.Markdown("### Models for this app process")
    models = gr.Markdown(models_markdown(settings), elem_id="settings-models")
    kind = gr.Radio([ENDPOINT, LOCAL], value=ENDPOINT, label="Add", elem_id="settings-kind")
    with gr.Row() as endpoint_row:
        base_url = gr.Textbox(label="Endpoint URL", placeholder="http://127.0.0.1:8000/v1", elem_id="settings-url")
        model = gr.Textbox(label="Model at that endpoint", placeholder="Qwen/Qwen2-VL-7B-Instruct",
                           elem_id="settings-model")
        key = gr.Textbox(label="Its key (optional; kept in memory for this model only, never shown)",
                         type="password", elem_id="settings-key")
    with gr.Row(visible=False) as local_row:
        path = gr.Textbox(label="Checkpoint folder", placeholder="/models/Qwen2-VL-7B-Instruct",
                          elem_id="settings-path")
        adapter = gr.Textbox(label="LoRA adapter folder (optional)", elem_id="settings-adapter")
    add = gr.Button("Add and use in Chat", variant="primary", elem_id="settings-add")
    gr.Markdown("### Disk")
    disk = gr.Markdown(disk_markdown(settings), elem_id="settings-disk")
    refresh = gr.Button("Refresh", elem_id="settings-disk-refresh")
    return SettingsLayout(kind, endpoint_row, local_row, base_url, model, key, path, adapter, add, models, disk,
                          refresh)


def wire_settings(layout: SettingsLayout, settings: Settings, links: Links | None) -> None:
    import gradio as gr

    def on_add(kind, base_url, model, key, path, adapter, request):
        choice = add_model(settings, kind, base_url, model, key, path, adapter, getattr(request, "username", None))
        go = links.go("chat", model=choice.label) if links is not None else ()
        return (models_markdown(settings), "", *go)  # the key field empties: a key is never shown back

    on_add.__annotations__["request"] = gr.Request  # how Gradio knows to hand it the request (gradio loads lazily)

    def on_kind(chosen: str):
        return gr.Row(visible=chosen == ENDPOINT), gr.Row(visible=chosen == LOCAL)

    form = [layout.kind, layout.base_url, layout.model, layout.key, layout.path, layout.adapter]
    chat = links.outputs("chat") if links is not None else []
    wire(layout.add.click, on_add, form, [layout.models, layout.key, *chat], "settings_add_model")
    wire(layout.kind.change, on_kind, [layout.kind], [layout.endpoint_row, layout.local_row])
    wire(layout.refresh.click, partial(disk_markdown, settings), None, [layout.disk], "settings_disk")
    root = gr.context.Context.root_block
    if root is not None:
        wire(root.load, lambda: (models_markdown(settings), disk_markdown(settings)), None,
             [layout.models, layout.disk])
