"""Settings from the environment: endpoint, key, model, data directory, limits.

Keys live here and in the model clients only; the sandbox never receives them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from core import defaults


# A key a person typed in a page for the endpoint they typed there: it reaches that page's job through this
# variable alone (never argv, the database or a log) and goes to that endpoint only.
TYPED_KEY = "MAT_TYPED_API_KEY"


def _env(*names: str, default: str | None = None) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return default


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(_env("MAT_DATA_DIR", default=defaults.DATA_DIR)).resolve())
    db_path: Path | None = field(default_factory=lambda: Path(p) if (p := _env("MAT_DB")) else None)
    # Controller model: an OpenAI-compatible endpoint, or a local transformers checkpoint.
    base_url: str | None = field(default_factory=lambda: _env("MAT_BASE_URL", "OPENAI_BASE_URL"))
    api_key: str | None = field(default_factory=lambda: _env("MAT_API_KEY", "OPENAI_API_KEY"))
    model: str | None = field(default_factory=lambda: _env("MAT_MODEL"))
    local_model: str | None = field(default_factory=lambda: _env("MAT_LOCAL_MODEL"))
    adapter: str | None = field(default_factory=lambda: _env("MAT_ADAPTER"))
    # The visualizer tool's VLM; the controller's model when unset.
    vlm_model: str | None = field(default_factory=lambda: _env("MAT_VLM_MODEL"))
    profile: str = field(default_factory=lambda: _env("MAT_TOOL_PROFILE", default=defaults.TOOL_PROFILE))
    max_steps: int = field(default_factory=lambda: int(_env("MAT_MAX_STEPS", default=str(defaults.MAX_STEPS))))
    max_errors: int = field(default_factory=lambda: int(_env("MAT_MAX_ERRORS", default=str(defaults.MAX_ERRORS))))
    max_pixels: int = field(default_factory=lambda: int(_env("MAT_MAX_PIXELS", default=str(defaults.MAX_PIXELS))))
    max_new_tokens: int = field(default_factory=lambda: int(_env("MAT_MAX_NEW_TOKENS", default=str(defaults.MAX_NEW_TOKENS))))
    # Local sampling (MAT's Qwen engine, see core.defaults); temperature 0 decodes greedily.
    temperature: float = field(default_factory=lambda: float(_env("MAT_TEMPERATURE", default=str(defaults.TEMPERATURE))))
    top_p: float = field(default_factory=lambda: float(_env("MAT_TOP_P", default=str(defaults.TOP_P))))
    top_k: int = field(default_factory=lambda: int(_env("MAT_TOP_K", default=str(defaults.TOP_K))))
    repetition_penalty: float = field(default_factory=lambda: float(_env("MAT_REPETITION_PENALTY", default=str(defaults.REPETITION_PENALTY))))
    step_timeout: float = field(default_factory=lambda: float(_env("MAT_STEP_TIMEOUT", default=str(defaults.STEP_SECONDS))))
    memory_mb: int = field(default_factory=lambda: int(_env("MAT_SANDBOX_MEMORY_MB", default=str(defaults.SANDBOX_MEMORY_MB))))
    remote_concurrency: int = field(default_factory=lambda: int(_env("MAT_REMOTE_CONCURRENCY", default=str(defaults.REMOTE_CONCURRENCY))))
    max_upload_mb: int = field(default_factory=lambda: int(_env("MAT_MAX_UPLOAD_MB", default=str(defaults.MAX_UPLOAD_MB))))
    # "alice:secret,bob:hunter2" turns on the app's login; reviewers are then named by it.
    auth: str | None = field(default_factory=lambda: _env("MAT_AUTH"))
    # "alice,bob": with MAT_AUTH, the users who may add or switch models from the Settings tab.
    admins: str | None = field(default_factory=lambda: _env("MAT_ADMINS"))
    # Agent run folders under data/runs kept (the newest); older ones are removed at start and as runs end.
    keep_runs: int = field(default_factory=lambda: int(_env("MAT_KEEP_RUNS", default=str(defaults.KEEP_RUNS))))
    # Browser sessions whose page state the app keeps in memory; the least recently used beyond are dropped.
    sessions: int = field(default_factory=lambda: int(_env("MAT_SESSIONS", default=str(defaults.SESSIONS))))

    @property
    def db(self) -> Path:
        return self.db_path or self.data_dir / defaults.DB_NAME

    @property
    def runs_dir(self) -> Path:
        """Per-task working directories of agent runs."""
        return self.data_dir / "runs"

    def key_for(self, base_url: str | None) -> str | None:
        """The API key to send to `base_url`, and only there.

        The operator's key (MAT_API_KEY) goes to the endpoint it was configured for (MAT_BASE_URL, or OpenAI's
        when that is unset), never to a URL someone typed in a page; a key typed with that URL goes to it.
        """
        typed = os.environ.get(TYPED_KEY)
        if typed:
            return typed
        return self.api_key if same_endpoint(base_url, self.base_url) else None

    def for_endpoint(self, base_url: str | None) -> Settings:
        """These settings aimed at `base_url` (a flag or a page field), carrying only the key allowed there."""
        return replace(self, base_url=base_url, api_key=self.key_for(base_url))

    def sampling(self) -> dict[str, float]:
        """The local model's sampling settings, as `generate` keywords."""
        return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                "repetition_penalty": self.repetition_penalty}

    def auth_pairs(self) -> list[tuple[str, str]]:
        pairs = [item.split(":", 1) for item in (self.auth or "").split(",") if ":" in item]
        return [(user.strip(), password) for user, password in pairs]

    def may_change_models(self, user: str | None) -> bool:
        """Whether `user` may add or switch models for the app: anyone without a login, else only MAT_ADMINS."""
        if not self.auth:
            return True
        return bool(user) and user in {name.strip() for name in (self.admins or "").split(",")}

    def public(self) -> dict[str, str]:
        """The settings as a person may see them: the key is masked."""
        hidden = ("api_key", "auth", "db_path")
        shown = {name: str(getattr(self, name)) for name in self.__dataclass_fields__ if name not in hidden}
        shown["database"] = str(self.db)
        shown["api_key"] = "set" if self.api_key else "not set"
        shown["auth"] = "on" if self.auth else "off"
        return shown

    def with_(self, **changes) -> Settings:
        return replace(self, **changes)


def same_endpoint(first: str | None, second: str | None) -> bool:
    """Whether two base URLs name the same endpoint (no URL: OpenAI's; case of scheme and host, a final slash
    and a default port do not matter)."""
    from urllib.parse import urlsplit

    def canonical(url: str | None) -> tuple:
        parts = urlsplit((url or defaults.OPENAI_URL).strip())
        default = {"http": 80, "https": 443}.get(parts.scheme.lower())
        try:
            port = parts.port or default
        except ValueError:
            port = None
        return parts.scheme.lower(), (parts.hostname or "").lower(), port, parts.path.rstrip("/")

    return canonical(first) == canonical(second)
