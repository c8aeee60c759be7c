"""The Train tab through the launched app and gradio_client: launch a tiny run, watch it, reload, use the adapter."""

from __future__ import annotations

import time

import pytest

from agent.config import Settings
from tests.support.app_server import running_app
from tests.support.train_records import release_images, short_records, write_records
from train.ui import SOURCES


def _form(data, images, out, *, tiny=True, base="", extra="--max-length 2048 --row-tokens 2048"):
    # source, data, images, skip missing, base, tiny, preset, out, epochs, lr, rank, max steps, tokens per step,
    # attention, checkpointing, merge, extra flags
    return [SOURCES[1], str(data), str(images), False, base, tiny, "tiny", str(out), 1, 0.002, 8, 3, 2048,
            "varlen", False, False, extra]


def _wait_done(client, seconds=240):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        view = client.predict(api_name="/train_refresh")
        if not view[0].startswith("**running**"):
            return view
        time.sleep(1)
    pytest.fail("the tiny run did not finish in time")


def test_launch_watch_reload_and_use_a_tiny_run(tmp_path, mmtraj_records):
    from gradio_client import Client

    images = release_images(mmtraj_records, tmp_path / "images")
    data = write_records(short_records(mmtraj_records[:8]), tmp_path / "short.json")
    settings = Settings(data_dir=tmp_path / "app")
    with running_app(settings) as url:
        client = Client(url, verbose=False)
        assert client.predict(api_name="/train_load")[0] == "No training job yet."

        refused = client.predict(*_form(data, images, tmp_path / "nope", tiny=False), api_name="/train_launch")
        assert refused[0] == "No training job yet." and not (tmp_path / "nope").exists()

        launched = client.predict(*_form(data, images, tmp_path / "run"), api_name="/train_launch")
        assert launched[0].startswith("**running**")
        assert launched[5] != str(tmp_path / "run")  # a fresh output folder is offered for the next run

        reloaded = Client(url, verbose=False).predict(api_name="/train_load")  # a new page finds the job
        assert reloaded[0].split(":")[0] == launched[0].split(":")[0]

        view = _wait_done(client)
        assert view[0].startswith("**done**"), view[0]
        losses = view[1]["data"]
        assert [row[0] for row in losses] == [1, 2, 3] and all(row[1] > 0 for row in losses)
        (run,) = view[3]["data"]
        assert run[1] == "done" and run[6] == "3/3" and run[8] == str(tmp_path / "run" / "adapter")
        usage = client.predict(run[0], api_name="/train_usage")
        assert f"MAT_ADAPTER={tmp_path / 'run' / 'adapter'}" in usage
        assert f"MAT_LOCAL_MODEL={tmp_path / 'run' / 'tiny-base'}" in usage and "python -m eval gta" in usage


def test_stop_ends_the_job_and_keeps_it_resumable(tmp_path, mmtraj_records):
    from gradio_client import Client

    images = release_images(mmtraj_records, tmp_path / "images")
    data = write_records(short_records(mmtraj_records[:8]), tmp_path / "short.json")
    settings = Settings(data_dir=tmp_path / "app")
    with running_app(settings) as url:
        client = Client(url, verbose=False)
        form = _form(data, images, tmp_path / "run")
        form[11] = 0  # no step limit: the run is still going when stopped
        form[8] = 50
        assert client.predict(*form, api_name="/train_launch")[0].startswith("**running**")
        deadline = time.monotonic() + 120
        while "step " not in client.predict(api_name="/train_refresh")[0] and time.monotonic() < deadline:
            time.sleep(0.5)
        stopped = client.predict(api_name="/train_stop")
        assert stopped[0].startswith("**stopped**")
        again = client.predict(*form, api_name="/train_launch")  # the stopped job no longer blocks a launch
        assert again[0].startswith("**running**")
        client.predict(api_name="/train_stop")
