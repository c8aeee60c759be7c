"""The Train tab through the launched app and gradio_client: launch a tiny run, watch it, reload, stop, resume it
in its own folder with its whole curve, and the refusals that leave the page as it was."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from agent.config import Settings
from tests.support.app_server import running_app
from tests.support.train_records import short_release
from train.ui import RUN_HEADERS, SOURCES

UNCHANGED = {"__type__": "update"}  # what an API caller gets for "left as it was" (core.ui.wire)
COLUMN = {name: RUN_HEADERS.index(name) for name in RUN_HEADERS}
STEP = re.compile(r"step (\d+)/(\d+)")


def _form(data, images, out, *, tiny=True, base="", steps=3, epochs=1,
          extra="--max-length 2048 --row-tokens 2048"):
    # source, data, images, skip missing, base, tiny, method, adapter, preset, out, epochs, lr, rank, max steps,
    # tokens per step, attention, checkpointing, merge, extra flags
    return [SOURCES[1], str(data), str(images), False, base, tiny, "SFT", "", "tiny", str(out), epochs, 0.002, 8,
            steps, 2048, "varlen", False, False, extra]


def _wait_done(client, seconds=240):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        view = client.predict(api_name="/train_refresh")
        if not view[0].startswith("**running**"):
            return view
        time.sleep(1)
    pytest.fail("the tiny run did not finish in time")


@pytest.fixture(scope="module")
def dataset(mmtraj_records, tmp_path_factory) -> tuple[Path, Path]:
    return short_release(mmtraj_records, tmp_path_factory.mktemp("data"), 8)


def test_launch_watch_reload_and_use_a_tiny_run(tmp_path, dataset):
    from gradio_client import Client

    data, images = dataset
    settings = Settings(data_dir=tmp_path / "app")
    with running_app(settings) as url:
        client = Client(url, verbose=False)
        assert client.predict(api_name="/train_load")[0] == "No training job yet."

        refused = client.predict(*_form(data, images, tmp_path / "nope", tiny=False), api_name="/train_launch")
        assert refused[0] == UNCHANGED and not (tmp_path / "nope").exists()
        assert client.predict(api_name="/train_refresh")[0] == "No training job yet."

        launched = client.predict(*_form(data, images, tmp_path / "run"), api_name="/train_launch")
        assert launched[0].startswith("**running**")
        assert launched[-1] != str(tmp_path / "run")  # a fresh output folder is offered for the next run
        again = client.predict(*_form(data, images, tmp_path / "second"), api_name="/train_launch")
        assert again[0] == UNCHANGED and not (tmp_path / "second").exists()  # one job at a time

        reloaded = Client(url, verbose=False).predict(api_name="/train_load")  # a new page finds the job
        assert reloaded[0].split(":")[0] == launched[0].split(":")[0]

        view = _wait_done(client)
        assert view[0].startswith("**done**"), view[0]
        assert f"folder `{tmp_path / 'run'}`" in view[0]
        losses = view[1]["data"]
        assert [row[0] for row in losses] == [1, 2, 3] and all(row[1] > 0 for row in losses)
        (run,) = view[3]["data"]
        assert run[COLUMN["status"]] == "done" and run[COLUMN["folder"]] == str(tmp_path / "run")
        assert run[COLUMN["steps"]] == "3/3" and run[COLUMN["adapter"]] == str(tmp_path / "run" / "adapter")
        usage = client.predict(run[0], api_name="/train_usage")
        assert f"MAT_ADAPTER={tmp_path / 'run' / 'adapter'}" in usage
        assert f"MAT_LOCAL_MODEL={tmp_path / 'run' / 'tiny-base'}" in usage and "python -m eval gta" in usage
        assert client.predict(run[0], api_name="/train_resume")[0] == UNCHANGED  # a finished run does not resume


def test_stop_then_resume_continues_the_run_in_its_folder_and_plots_the_whole_curve(tmp_path, dataset):
    from gradio_client import Client

    data, images = dataset
    settings = Settings(data_dir=tmp_path / "app")
    out = tmp_path / "run"
    with running_app(settings) as url:
        client = Client(url, verbose=False)
        form = _form(data, images, out, steps=0, epochs=6, extra="--max-length 2048 --row-tokens 2048 "
                                                                    "--save-every 1")
        assert client.predict(*form, api_name="/train_launch")[0].startswith("**running**")
        deadline = time.monotonic() + 180
        # A tiny step takes tens of milliseconds: stop at whichever step past the first a refresh shows.
        while not ((step := STEP.search(status := client.predict(api_name="/train_refresh")[0]))
                   and int(step[1]) >= 2):
            assert time.monotonic() < deadline and status.startswith("**running**"), status
            time.sleep(0.3)
        stopped = client.predict(api_name="/train_stop")
        # The job saves the step it was in before it ends; until then the page says so and nothing starts beside it.
        status = stopped[0]
        while status.startswith("**stopping**"):
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
            status = client.predict(api_name="/train_refresh")[0]
        assert status.startswith("**stopped**") and "Resume" in status
        (run,) = stopped[3]["data"]
        assert run[COLUMN["status"]] == "stopped" and run[COLUMN["folder"]] == str(out)
        assert stopped[4] == {"__type__": "update", "choices": [[f"run · stopped · {run[COLUMN['steps']]}", run[0]]],
                              "value": run[0]}  # the stopped run is picked, ready to resume

        resumed = client.predict(run[0], api_name="/train_resume")
        assert resumed[0].startswith("**running**") and f"folder `{out}`" in resumed[0]
        assert resumed[1]["data"], "the curve so far shows while the resumed run loads"
        view = _wait_done(client)
        assert view[0].startswith("**done**"), view[0]
        (run,) = view[3]["data"]  # the same run, not a new one in a new folder
        assert run[COLUMN["status"]] == "done" and run[COLUMN["folder"]] == str(out)
        steps = int(run[COLUMN["steps"]].split("/")[1])
        assert [row[0] for row in view[1]["data"]] == list(range(1, steps + 1))  # the whole curve, from step 1
        assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == [f"checkpoint-{steps}"]
