"""Loading model backends for tools: once per process, on first use, with messages a person can act on."""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from agent.tools.base import ToolContext, ToolError

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def cached(key: tuple, build: Callable[[], Any]) -> Any:
    """`build()` once per key and process; concurrent first calls wait instead of loading twice."""
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def option(ctx: ToolContext, key: str, env: str, default: Any = None) -> Any:
    """A tool setting: the task's options first, then the environment, then the default."""
    value = ctx.options.get(key)
    if value not in (None, ""):
        return value
    return os.environ.get(env) or default


def require_module(module: str, tool: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ToolError(f"{tool} needs the Python package '{module}', which is not installed: {install}")


def load_pretrained(loader: Callable[[str], Any], model_id: str, *, tool: str, what: str, env: str) -> Any:
    """`loader(model_id)`, turning a missing checkpoint into a ToolError that says how to get it."""
    try:
        return loader(model_id)
    except (OSError, ValueError) as exc:
        if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "YES", "yes"):
            where = "they are not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1)"
        else:
            where = f"they could not be loaded ({str(exc).splitlines()[0][:200]})"
        raise ToolError(f"{tool} needs the {what} weights '{model_id}'; {where}. {_how_to_get(model_id, env)}") from None


def check_weights(model_id: str, *, tool: str, what: str, env: str) -> None:
    """Refuse at once weights that are neither a local folder nor in the Hugging Face cache while the hub is out
    of reach: the hub client would retry for half a minute first. Call it before importing the model library."""
    from huggingface_hub import constants, snapshot_download

    if Path(model_id).exists() or constants.HF_HUB_OFFLINE or os.environ.get("HTTPS_PROXY", os.environ.get("https_proxy")):
        return  # a local folder; offline mode fails at once by itself; a proxy is the loader's to reach
    try:
        snapshot_download(model_id, local_files_only=True)
        return
    except (OSError, ValueError):
        pass
    hub = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((hub.hostname, hub.port or (443 if hub.scheme == "https" else 80)), timeout=3).close()
    except OSError:
        raise ToolError(f"{tool} needs the {what} weights '{model_id}'; they are not in the local Hugging Face cache "
                        f"and {constants.ENDPOINT} cannot be reached. {_how_to_get(model_id, env)}") from None


def _how_to_get(model_id: str, env: str) -> str:
    return f"Download them once with `hf download {model_id}` or set {env} to a local path"


def processor_and_model(ctx: ToolContext, *, tool: str, what: str, option_key: str, env: str, default: str,
                        model_class: str) -> tuple[Any, Any]:
    """A transformers processor and model (`model_class` names the class), loaded once, on the GPU when there is one."""
    model_id = option(ctx, option_key, env, default)

    def build() -> tuple[Any, Any]:
        where = dict(tool=tool, what=what, env=env)
        check_weights(model_id, **where)
        import transformers

        processor = load_pretrained(transformers.AutoProcessor.from_pretrained, model_id, **where)
        model = load_pretrained(getattr(transformers, model_class).from_pretrained, model_id, **where)
        return processor, model.to(device()).eval()

    return cached((model_class, model_id), build)
