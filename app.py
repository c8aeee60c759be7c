"""MAT Studio: the Gradio app. It only assembles the tabs the packages build.

`python app.py` (or `make run`) serves http://127.0.0.1:7860; GRADIO_SERVER_PORT and
GRADIO_SERVER_NAME override the address, MAT_* variables configure the rest (see README).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from agent.config import Settings
from core import defaults
from core.cli import run_main
from core.errors import UserError
from core.ui import Links, serve

CSS = Path(__file__).with_name("app.css")  # what every tab shares: buttons, tables, readable steps


def build_app(settings: Settings | None = None):
    """The Blocks app with every tab that works."""
    import gradio as gr

    from agent.session import clean_disk
    from agent.settings_ui import build_settings_tab
    from agent.ui import build_chat_tab
    from eval.ui import build_eval_tab
    from review.ui import build_review_tab, chat_hooks
    from synthesis.ui import build_synthesis_tab
    from train.ui import build_train_tab

    settings = settings or Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    clean_disk(settings)
    with gr.Blocks(title="MAT Studio", delete_cache=defaults.CACHE_SWEEP) as demo:
        gr.Markdown("# MAT Studio\nMulti-modal Agent Tuning: chat with the T3-Agent, synthesize and curate MM-Traj "
                    "trajectories, tune a LoRA adapter on them and evaluate it on GTA and GAIA.")
        with gr.Tabs() as tabs:
            links = Links(tabs)
            with gr.Tab("Chat", id="chat"):
                build_chat_tab(settings, chat_hooks(settings), links)
            with gr.Tab("Review", id="review"):
                build_review_tab(settings, links)
            with gr.Tab("Synthesize", id="synthesize"):
                build_synthesis_tab(settings, links)
            with gr.Tab("Train", id="train"):
                build_train_tab(settings, links)
            with gr.Tab("Evaluate", id="evaluate"):
                build_eval_tab(settings, links)
            with gr.Tab("Settings", id="settings"):
                build_settings_tab(settings, links)
    demo.queue(default_concurrency_limit=settings.remote_concurrency)
    return demo


def launch_kwargs(settings: Settings) -> dict[str, Any]:
    """Arguments for `launch()` that belong to the app rather than to the deployment."""
    from review.ui import REVIEW_HEAD

    kwargs: dict[str, Any] = {"allowed_paths": [str(settings.runs_dir)], "show_error": False, "head": REVIEW_HEAD,
                              "css_paths": [CSS], "state_session_capacity": settings.sessions}
    if settings.auth:
        kwargs["auth"] = settings.auth_pairs()
    return kwargs


def main() -> None:
    from agent.sandbox import sandbox_notice
    from core.memory import freeze_startup, limit_arenas, trim_every

    limit_arenas()  # before any thread starts
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    port = _port(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    _check_free(host, port)
    settings = Settings()
    print(f"Sandbox: {sandbox_notice()}", flush=True)
    demo = build_app(settings)
    freeze_startup()
    trim_every()
    serve(demo, host, port, **launch_kwargs(settings))


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UserError(f"GRADIO_SERVER_PORT={text!r} is not a port number (1-65535)")
    return int(text)


def _check_free(host: str, port: int) -> None:
    """A port in use is one line before anything loads, not Gradio's traceback after."""
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc} (stop the other server, "
                            f"or set GRADIO_SERVER_PORT to another port)") from None


if __name__ == "__main__":
    sys.exit(run_main(main))
