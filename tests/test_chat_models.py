"""Models from the page: the Settings tab adds an endpoint or a local checkpoint for this app process, Chat's picker
offers it, a typed key goes to that endpoint alone, and under a login only admins may. Through the launched app and
gradio_client, against local OpenAI-compatible servers and the tiny checkpoint."""

from __future__ import annotations

import logging
import shutil

import httpx
import pytest
from gradio_client import Client

import agent.models
from agent.config import Settings
from agent.settings_ui import ENDPOINT, LOCAL
from agent.ui import apply_address
from tests.support.app_server import message_texts, running_app
from tests.support.notices import notices
from tests.support.openai_server import FakeOpenAI

DONE = "Thought: done.\nCode:\n```py\nfinal_answer('from the added model')\n```<end_action>"


@pytest.fixture(autouse=True)
def fresh_process_models(monkeypatch):
    """Models added in one test are this process's; each test starts with none."""
    monkeypatch.setattr(agent.models, "_added", {})
    monkeypatch.setattr(agent.models, "_typed_keys", {})


def _add(client: Client, kind: str = ENDPOINT, url: str = "", model: str = "", key: str = "", path: str = "",
         adapter: str = ""):
    """(the models table as text, the key field), and the notices; a refusal leaves both as they were."""
    job = client.submit(kind, url, model, key, path, adapter, api_name="/settings_add_model")
    result = job.result(timeout=30)
    if isinstance(result, (list, tuple)) and isinstance(result[0], str):
        result = (result[0].replace("\\", ""), *result[1:])  # the table's Markdown escapes, read as text
    return result, notices(job)


def _chat(client: Client, label: str, steps: int = 8):
    return client.submit({"text": "Answer, please", "files": []}, [], label, "mat", steps, "", api_name="/chat")


def test_an_endpoint_added_with_a_key_gets_that_key_alone(tmp_path, caplog):
    caplog.set_level(logging.INFO)  # every logger, at the level an operator runs the app with
    operator = Settings(data_dir=tmp_path / "data", base_url="http://127.0.0.1:9/v1", api_key="sk-OPERATOR",
                        model="configured")
    with FakeOpenAI(replies=[DONE], api_key="sk-TYPED-SECRET") as keyed, FakeOpenAI(replies=[DONE]) as open_server:
        with running_app(operator) as url:
            client = Client(url, verbose=False)
            (models, key_field), _ = _add(client, url=keyed.url, model="mat-test", key="sk-TYPED-SECRET")
            first = message_texts(_chat(client, f"mat-test @ {keyed.url.split('/')[2]} (endpoint)").result()[0])
            _add(client, url=open_server.url, model="mat-test")
            second = message_texts(_chat(Client(url, verbose=False),
                                         f"mat-test @ {open_server.url.split('/')[2]} (endpoint)").result()[0])
            page = httpx.get(f"{url}config", timeout=30).text
    assert any("Final answer:** from the added model" in t for t in first)
    assert any("Final answer:** from the added model" in t for t in second)  # another session sees it too
    assert keyed.requests[0].headers["authorization"] == "Bearer sk-TYPED-SECRET"
    # neither the typed key nor the operator's: the client's placeholder for "no key"
    assert open_server.requests[0].headers.get("authorization", "Bearer EMPTY") == "Bearer EMPTY"
    assert "mat-test @ 127.0.0.1" in models and key_field == ""
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    for where in (models, page, caplog.text, stored.decode("utf-8", "replace")):
        assert "sk-TYPED-SECRET" not in where and "sk-OPERATOR" not in where


def test_under_a_login_only_admins_add_models(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", base_url=None, api_key=None, model=None, local_model=None,
                        auth="alice:pw-a,bob:pw-b", admins="alice")
    with FakeOpenAI(replies=[]) as server, running_app(settings) as url:
        bob = Client(url, auth=("bob", "pw-b"), verbose=False)
        result, said = _add(bob, url=server.url, model="from-bob")
        assert said == ["only the admins named in MAT_ADMINS may add or switch models"]
        assert "from-bob" not in str(result)
        alice = Client(url, auth=("alice", "pw-a"), verbose=False)
        (models, _key), said = _add(alice, url=server.url, model="from-alice")
    labels = [choice.label for choice in agent.models.model_choices(settings)]
    assert said == [] and "from-alice @" in models
    assert any(label.startswith("from-alice @") for label in labels) and not any("from-bob" in x for x in labels)


def test_bad_model_forms_are_refused_in_one_line(tmp_path):
    with running_app(Settings(data_dir=tmp_path / "data")) as url:
        client = Client(url, verbose=False)
        assert _add(client, url="ftp://x", model="m")[1] == [
            "ftp://x is not an http(s) endpoint URL, e.g. http://127.0.0.1:8000/v1"]
        assert _add(client, url="http://127.0.0.1:8000/v1")[1] == [
            "type the model's name at that endpoint (as its /v1/models lists it)"]
        assert "no checkpoint folder at /nowhere" in _add(client, LOCAL, path="/nowhere")[1][0]
        assert "no model called 'gone'" in notices(_finished(_chat(client, "gone")))[0]


def _finished(job):
    job.result(timeout=30)
    return job


def test_a_local_checkpoint_added_on_the_page_says_loading_with_the_seconds(tmp_path, tiny_checkpoint):
    checkpoint = shutil.copytree(tiny_checkpoint, tmp_path / "tiny-copy")  # a path no earlier test has loaded
    settings = Settings(data_dir=tmp_path / "data", base_url=None, api_key=None, model=None, local_model=None,
                        max_new_tokens=16)
    with running_app(settings) as url:
        client = Client(url, verbose=False)
        (models, _key), said = _add(client, LOCAL, path=str(checkpoint))
        job = _chat(client, "tiny-copy (local)", steps=1)
        job.result(timeout=120)
    assert said == [] and "tiny-copy (local)" in models
    titles = [(m.get("metadata") or {}).get("title") or "" for out in job.outputs() for m in out[0]]
    loading = [t for t in titles if t.startswith("Loading model tiny-copy (local)…")]
    assert loading and loading[0].endswith(" s")
    assert not any(t.startswith("Loading") for t in [(m.get("metadata") or {}).get("title") or ""
                                                     for m in job.outputs()[-1][0]])  # gone once loaded
    assert any(t.startswith("Step 1 ·") for t in titles)


def test_a_link_from_train_adds_its_model_and_selects_it(tmp_path, tiny_checkpoint):
    adapter = tmp_path / "run-1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    settings = Settings(data_dir=tmp_path / "data", base_url=None, api_key=None, model=None, local_model=None)
    picked = apply_address(settings, {"local_model": str(tiny_checkpoint), "adapter": str(adapter)})
    label = f"{tiny_checkpoint.name} + adapter (local)"
    assert picked.value == label and label in [value for value, _ in picked.choices]
    (added,) = [choice for choice in agent.models.model_choices(settings) if choice.added]
    assert (added.path, added.adapter) == (str(tiny_checkpoint.resolve()), str(adapter.resolve()))
