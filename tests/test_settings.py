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


def _readme_variables() -> set[str]:
    """Environment variables named in the README's settings table (the rows under "Configure a model")."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Configure a model", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_every_setting_is_in_the_readme_table_and_on_the_settings_tab(tmp_path):
    """Read from agent/config.py itself, so a field added there without a README row or a tab row fails here."""
    import dataclasses

    import httpx

    from agent.settings_ui import setting_variables
    from tests.support.app_server import running_app

    variables = setting_variables()
    assert set(variables) == {f.name for f in dataclasses.fields(Settings)}
    assert all(variables.values()), [name for name, found in variables.items() if not found]
    wanted = {name for names in variables.values() for name in names}
    assert {"MAT_MAX_ERRORS", "MAT_MAX_PIXELS", "MAT_MAX_NEW_TOKENS", "MAT_MAX_UPLOAD_MB"} <= wanted
    assert wanted - _readme_variables() == set()

    settings = Settings(data_dir=tmp_path, api_key="sk-secret", model=None)
    with running_app(settings) as url:
        config = httpx.get(f"{url}config", timeout=30).json()
    component = next(c for c in config["components"] if c["props"].get("elem_id") == "settings-table")
    assert component["type"] == "markdown"  # a plain table that grows with the page: no inner scrolling
    table = component["props"]["value"]
    rows = {line.split("|")[1].strip(" `"): line for line in table.splitlines()[2:]}
    for field in dataclasses.fields(Settings):
        assert all(f"`{name}`" in rows[field.name] for name in variables[field.name]), field.name
    assert "*not set*" in rows["model"] and "`set`" in rows["api_key"] and "sk-secret" not in table
    assert "`4`" in rows["max_errors"] and "`25`" in rows["max_upload_mb"]
    assert "None" not in table


def test_without_a_login_anyone_may_change_models_with_one_only_the_admins():
    assert Settings(auth=None, admins=None).may_change_models(None)
    assert not Settings(auth="ann:pw", admins=None).may_change_models("ann")
    named = Settings(auth="ann:pw,bob:pw", admins="ann, carl")
    assert named.may_change_models("ann") and not named.may_change_models("bob")
    assert not named.may_change_models(None) and not named.may_change_models("")
