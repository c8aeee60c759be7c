"""Settings come from the environment, and what the Settings tab shows never includes a secret."""

from __future__ import annotations

from pathlib import Path

from agent.config import Settings


def test_environment_configures_the_app(monkeypatch, tmp_path):
    monkeypatch.setenv("MAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-var")
    monkeypatch.setenv("MAT_MODEL", "gpt-4o-mini,gpt-4o")
    monkeypatch.setenv("MAT_MAX_STEPS", "5")
    monkeypatch.setenv("MAT_AUTH", "ann:pw1,bob:pw:with:colons")
    settings = Settings()
    assert settings.data_dir == tmp_path.resolve()
    assert settings.db == tmp_path.resolve() / "mat.db"
    assert settings.api_key == "sk-from-openai-var"
    assert settings.max_steps == 5
    assert settings.auth_pairs() == [("ann", "pw1"), ("bob", "pw:with:colons")]


def test_local_sampling_defaults_are_mats_and_editable(monkeypatch):
    for name in ("MAT_TEMPERATURE", "MAT_TOP_P", "MAT_TOP_K", "MAT_REPETITION_PENALTY"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().sampling() == {"temperature": 0.7, "top_p": 0.8, "top_k": 100, "repetition_penalty": 1.05}
    monkeypatch.setenv("MAT_TEMPERATURE", "0.2")
    monkeypatch.setenv("MAT_TOP_K", "20")
    assert Settings().sampling()["temperature"] == 0.2 and Settings().top_k == 20
    assert Settings().public()["top_p"] == "0.8"


def test_what_the_page_shows_masks_the_key_and_passwords(tmp_path):
    settings = Settings(data_dir=tmp_path, api_key="sk-very-secret", auth="ann:hunter2", db_path=Path("/x/y.db"))
    shown = settings.public()
    text = " ".join(shown.values())
    assert "sk-very-secret" not in text and "hunter2" not in text
    assert shown["api_key"] == "set" and shown["auth"] == "on" and shown["database"] == "/x/y.db"
