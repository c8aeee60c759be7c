"""The operator's API key goes only to the endpoint it was configured for; a URL typed in a page gets none."""

from __future__ import annotations

from agent.config import TYPED_KEY, Settings, same_endpoint


def test_the_operators_key_goes_to_its_own_endpoint_only(monkeypatch):
    monkeypatch.delenv(TYPED_KEY, raising=False)
    settings = Settings(base_url="http://vllm.internal:8000/v1", api_key="sk-OPERATOR")
    assert settings.key_for("http://VLLM.internal:8000/v1/") == "sk-OPERATOR"
    assert settings.key_for("http://capture.example:8000/v1") is None
    assert settings.key_for(None) is None  # OpenAI's endpoint is not the one this key was configured for


def test_without_a_base_url_the_key_is_openais(monkeypatch):
    monkeypatch.delenv(TYPED_KEY, raising=False)
    settings = Settings(base_url=None, api_key="sk-OPENAI")
    assert settings.key_for(None) == "sk-OPENAI"
    assert settings.key_for("https://api.openai.com/v1") == "sk-OPENAI"
    assert settings.key_for("https://api.openai.com.evil.example/v1") is None


def test_a_key_typed_with_a_url_goes_to_that_url(monkeypatch):
    monkeypatch.setenv(TYPED_KEY, "sk-TYPED")
    assert Settings(base_url=None, api_key="sk-OPERATOR").key_for("http://mine:8000/v1") == "sk-TYPED"


def test_endpoints_compare_by_scheme_host_port_and_path():
    assert same_endpoint("https://API.openai.com:443/v1/", None)
    assert not same_endpoint("http://host:8000/v1", "http://host:8001/v1")
    assert not same_endpoint("http://host/v1", "https://host/v1")
