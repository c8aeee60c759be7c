"""The Settings tab: every setting the app reads, its environment variable(s) and current value.

The rows come from `agent/config.py` itself (each field's `_env(...)` names), so a new
setting shows up here without anyone remembering to add it; tests compare the same list
with the README's table.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from functools import lru_cache

from agent.config import Settings

NOT_SET = "not set"
SECRETS = {"api_key": "set", "auth": "on"}  # shown only as whether they are set

HOW_TO_CHANGE = """\
Settings are environment variables, read when the app starts: set them in the shell that runs `make run`
(the README's table says what each one means). The key and the passwords are never shown.
"""


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


def build_settings_tab(settings: Settings) -> None:
    import gradio as gr

    from agent.sandbox import sandbox_level

    gr.Markdown(f"**Sandbox:** `{sandbox_level()}`\n\n{HOW_TO_CHANGE}")
    gr.Markdown(settings_markdown(settings), elem_id="settings-table")
