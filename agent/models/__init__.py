"""Model backends, `load_model` which picks one from the settings, and the models the Chat picker offers.

The picker offers the configured models (MAT_MODEL at MAT_BASE_URL, MAT_LOCAL_MODEL), those added to this app
process from the Settings tab or a link from the Train tab (`add_endpoint`, `add_local`), and the tiny smoke model.

The train = serve API (`agent.models.vlm`), public for `train/`: `model_type(path)` (the checkpoint's
architecture, refused in one line if we cannot serve it), `load_processor(path)`, `image_kwargs(processor,
max_pixels)` and `encode_chat(processor, messages, max_pixels=...)`, which turns rendered messages
(`agent.render.render_messages`) into token ids and pixels with control tokens in message text kept as text.

Importing this package stays cheap: torch, transformers and openai load only when a model is built.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from agent.models.base import Chunk, Message, Model, ModelError
from agent.models.vlm import QWEN_TYPES, encode_chat, image_kwargs, load_processor, model_type
from core import defaults

__all__ = ["QWEN_TYPES", "SETUP_HELP", "TINY", "Choice", "Chunk", "Message", "Model", "ModelError", "add_endpoint",
           "add_local", "choice_named", "encode_chat", "image_kwargs", "is_loaded", "load_choice", "load_model",
           "load_processor", "model_choices", "model_type", "setup_help"]

SETUP_HELP = """\
No model is configured. Set one of these in the environment before starting the app, or add one in the
Settings tab (for this app process, no restart):

  An OpenAI-compatible endpoint
    OpenAI:   MAT_API_KEY=sk-...  (or OPENAI_API_KEY)   MAT_MODEL=gpt-4o-mini
    vLLM:     vllm serve Qwen/Qwen2-VL-7B-Instruct
              MAT_BASE_URL=http://localhost:8000/v1    MAT_MODEL=Qwen/Qwen2-VL-7B-Instruct
    Ollama:   MAT_BASE_URL=http://localhost:11434/v1   MAT_MODEL=qwen2.5vl:7b
    (MAT_MODEL may be left out for a local server: its first listed model is used)

  A local checkpoint (Qwen2-VL, Qwen2.5-VL, MiniCPM-V 4.6 / 4.7) run with transformers
    MAT_LOCAL_MODEL=/path/to/Qwen2-VL-7B-Instruct      MAT_ADAPTER=/path/to/lora-adapter (optional)

  A smoke test without any model: python -m agent run "TASK" --tiny  (random weights, answers are noise)"""


_cache: dict[tuple, Model] = {}
_cache_lock = threading.Lock()


def setup_help() -> str:
    """How to configure a model, for a person who has not yet."""
    return SETUP_HELP


def load_model(settings, *, which: str = "controller", tiny: bool = False) -> Model:
    """The model `settings` describe: the agent's controller, or the visualizer tool's VLM.

    `settings.vlm_model` names the VLM (a checkpoint directory, or a model on the endpoint); without it the
    VLM is the controller. Instances are shared per process, so a local model loads once and a remote
    endpoint's concurrency limit holds across callers.
    """
    if which not in ("controller", "vlm"):
        raise ValueError(f"which must be 'controller' or 'vlm', not {which!r}")
    if tiny:
        from agent.models.tiny import build_tiny_qwen2vl

        with _cache_lock:  # two callers must not build the same directory at once
            path = build_tiny_qwen2vl(settings.data_dir / TINY_DIR)
        return _local(path, None, settings)
    vlm = settings.vlm_model if which == "vlm" else None
    if vlm and Path(vlm).expanduser().is_dir():
        return _local(Path(vlm), None, settings)
    if settings.local_model and not vlm:
        return _local(Path(settings.local_model), settings.adapter, settings)
    if settings.base_url or settings.api_key:
        name = vlm or settings.model or (None if settings.base_url else defaults.OPENAI_MODEL)
        return _remote(name, settings)
    raise ModelError(SETUP_HELP)


def _local_key(path: Path, adapter: str | None, settings) -> tuple:
    adapter_key = str(Path(adapter).expanduser().resolve()) if adapter else None
    return ("local", str(Path(path).expanduser().resolve()), adapter_key, settings.max_pixels,
            tuple(settings.sampling().items()))


def _local(path: Path, adapter: str | None, settings) -> Model:
    key = _local_key(path, adapter, settings)
    sampling = settings.sampling()
    with _cache_lock:
        if key not in _cache:
            from agent.models.local_vlm import LocalVLM

            _cache[key] = LocalVLM(path, adapter, max_pixels=settings.max_pixels, sampling=sampling)
        return _cache[key]


def _remote(name: str | None, settings) -> Model:
    key = ("remote", name, settings.base_url, settings.api_key, settings.max_pixels, settings.remote_concurrency)
    with _cache_lock:
        if key not in _cache:
            from agent.models.openai_compat import OpenAICompatModel

            _cache[key] = OpenAICompatModel(
                name,
                settings.base_url,
                settings.api_key,
                max_pixels=settings.max_pixels,
                slots=settings.remote_concurrency,
            )
        return _cache[key]


# ---------------------------------------------------------------- the models the Chat picker offers

TINY = "tiny random Qwen2-VL (smoke test)"
TINY_DIR = "tiny-qwen2vl"  # where the tiny smoke model is built, under the data directory


@dataclass(frozen=True)
class Choice:
    """A model the picker offers: a model at an endpoint, a local checkpoint (with an adapter), or the tiny one."""

    label: str
    model: str | None = None
    base_url: str | None = None
    path: str | None = None
    adapter: str | None = None
    added: bool = False  # added to this process from the page, not configured in the environment

    @property
    def tiny(self) -> bool:
        return self.label == TINY


_added: dict[str, Choice] = {}
_typed_keys: dict[str, str] = {}  # a key typed with an added endpoint: for that model only, never stored or shown
_added_lock = threading.Lock()


def model_choices(settings) -> list[Choice]:
    """The configured models, then those added to this process (latest last), then the tiny smoke model."""
    configured = []
    if settings.model and (settings.base_url or settings.api_key):
        configured += [Choice(f"{name.strip()} (endpoint)", model=name.strip(), base_url=settings.base_url)
                       for name in settings.model.split(",") if name.strip()]
    if settings.local_model:
        configured.append(Choice(f"{Path(settings.local_model).name} (local)", path=settings.local_model,
                                 adapter=settings.adapter))
    with _added_lock:
        added = list(_added.values())
    return configured + added + [Choice(TINY)]


def choice_named(settings, label: str | None) -> Choice:
    """The picker's choice called `label`; the first one when none is given."""
    choices = model_choices(settings)
    if not label:
        return choices[0]
    found = next((choice for choice in choices if choice.label == label), None)
    if found is None:
        raise ModelError(f"no model called {label!r} in this app: pick one from the list (Settings adds models)")
    return found


def is_loaded(settings, choice: Choice) -> bool:
    """Whether a choice's model is ready at once: a local checkpoint (or the tiny one) loads on first use."""
    if not (choice.tiny or choice.path):
        return True
    path = settings.data_dir / TINY_DIR if choice.tiny else Path(choice.path)
    return _local_key(path, None if choice.tiny else choice.adapter, settings) in _cache  # no lock: one may be loading


def load_choice(settings, choice: Choice) -> Model:
    """The model behind a picker choice (loaded on first use, then shared); ModelError says what is wrong."""
    if choice.tiny:
        return load_model(settings, tiny=True)
    if choice.path:
        return load_model(replace(settings, local_model=choice.path, adapter=choice.adapter, vlm_model=None))
    if choice.added:  # a URL typed in the page: the operator's key only if it is the configured endpoint
        aimed = settings.for_endpoint(choice.base_url)
        with _added_lock:
            typed = _typed_keys.get(choice.label)
        return load_model(replace(aimed, api_key=typed or aimed.api_key, model=choice.model, local_model=None))
    if choice.model:
        return load_model(replace(settings, model=choice.model, local_model=None))
    return load_model(settings)


def add_endpoint(base_url: str, model: str, key: str | None = None) -> Choice:
    """Offer `model` at `base_url` in this process's picker; a key typed with it is kept in memory for it alone."""
    base_url, model = (base_url or "").strip(), (model or "").strip()
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelError(f"{base_url or 'an empty URL'} is not an http(s) endpoint URL, e.g. http://127.0.0.1:8000/v1")
    if not model:
        raise ModelError("type the model's name at that endpoint (as its /v1/models lists it)")
    choice = Choice(f"{model} @ {parts.netloc} (endpoint)", model=model, base_url=base_url, added=True)
    with _added_lock:
        _added.pop(choice.label, None)
        _added[choice.label] = choice
        if (key or "").strip():
            _typed_keys[choice.label] = key.strip()
        else:
            _typed_keys.pop(choice.label, None)
    return choice


def add_local(path: str, adapter: str | None = None) -> Choice:
    """Offer a local checkpoint (with a PEFT adapter) in this process's picker; it loads on first use."""
    folder = Path((path or "").strip()).expanduser()
    if not (path or "").strip() or not folder.is_dir():
        raise ModelError(f"no checkpoint folder at {path or '(empty)'}: give the folder holding config.json")
    adapter = (adapter or "").strip() or None
    if adapter and not (Path(adapter).expanduser() / "adapter_config.json").is_file():
        raise ModelError(f"no PEFT adapter at {adapter} (adapter_config.json missing)")
    label = f"{folder.name} + {Path(adapter).name} (local)" if adapter else f"{folder.name} (local)"
    choice = Choice(label, path=str(folder.resolve()), adapter=str(Path(adapter).expanduser().resolve()) if adapter
                    else None, added=True)
    with _added_lock:
        _added.pop(label, None)
        _added[label] = choice
    return choice
