"""The Train tab's method choice (SFT / DPO, from an SFT adapter) and its reward plots for DPO runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent.config import Settings
from core import jobs
from core.db import Database
from core.errors import UserError
from train.runs import record_start
from train.ui import (DPO_PRESET, SOURCES, _method_preset, build_config, command_text, form_argv, refresh,
                      validate)

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")
FORM = dict(epochs=None, learning_rate=None, lora_r=None, max_steps=0, token_budget=None, attention=None,
            gradient_checkpointing=None, merge=None)


def argv(settings: Settings, method: str, adapter: str = "", source: str = SOURCES[0], preset: str = DPO_PRESET,
         base: str = "") -> list[str]:
    return form_argv(settings, source, "", "", False, base, not base, method, adapter, preset, "/tmp/out",
                     *FORM.values())


def test_dpo_from_an_sft_adapter_is_a_command_the_cli_reads_and_what_it_cannot_train_is_refused(tmp_path):
    settings = Settings(data_dir=tmp_path)
    adapter = tmp_path / "sft" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    base = tmp_path / "base"
    base.mkdir()

    command = argv(settings, "DPO", str(adapter), base=str(base))
    assert command_text(command).startswith(f"python -m train --db {settings.db} --base {base} --method dpo "
                                            f"--adapter {adapter} --preset sport-dpo --out /tmp/out")
    config = validate(command)
    assert (config.method, config.adapter, config.beta, config.pair_bleu) == ("dpo", str(adapter), 0.1, 0.3)
    assert validate(argv(settings, "SFT", preset="mat-paper", base=str(base))).method == "sft"
    assert "--method sft" in command_text(argv(settings, "SFT", base=str(base)))  # SFT on the DPO preset

    with pytest.raises(UserError, match="^an SFT adapter to start from is for DPO runs"):
        argv(settings, "SFT", str(adapter))
    with pytest.raises(UserError, match="^DPO trains on the preference pairs the store's review events give"):
        argv(settings, "DPO", source=SOURCES[1])
    with pytest.raises(UserError, match=rf"^no PEFT adapter at {tmp_path / 'nowhere'} \(adapter_config.json missing\)"):
        validate(argv(settings, "DPO", str(tmp_path / "nowhere"), base=str(base)))
    assert _method_preset("DPO", False, "mat-paper", SOURCES[1]) == (DPO_PRESET, SOURCES[0])
    assert _method_preset("DPO", True, "tiny", SOURCES[0]) == ("tiny", SOURCES[0])
    assert _method_preset("SFT", False, DPO_PRESET, SOURCES[1]) == ("mat-paper", SOURCES[1])


def finished_job(db: Database, out: Path, metrics: list[dict]) -> str:
    """A training job that has ended, and the run record and metrics.jsonl of its --out folder."""
    out.mkdir(parents=True)
    (out / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics))
    job = jobs.start(db, "train", ["-c", "pass", "--out", str(out)])
    record_start(db, out_dir=out, base_model="tiny", data="db (preference pairs)", examples=3,
                 steps_total=len(metrics), config=build_config(DPO_PRESET, out=str(out)).to_dict())
    deadline = time.monotonic() + 30
    while jobs.get(db, job.id).running and time.monotonic() < deadline:
        time.sleep(0.1)
    return job.id


def test_a_dpo_runs_reward_accuracy_and_margin_are_plotted_beside_its_loss(tmp_path):
    database = Database(tmp_path / "mat.db")
    dpo = [{"step": step, "loss": 0.69 - 0.1 * step, "tokens_per_s": 900.0, "reward_accuracy": accuracy,
            "reward_margin": margin, "pairs": 2} for step, accuracy, margin in ((1, 0.5, 0.0), (2, 1.0, 0.2))]
    *_, accuracy, margin = refresh(database, finished_job(database, tmp_path / "dpo", dpo))
    assert accuracy["visible"] and margin["visible"]
    assert accuracy["value"]["reward_accuracy"].tolist() == [0.5, 1.0]
    assert margin["value"]["reward_margin"].tolist() == [0.0, 0.2] and margin["value"]["step"].tolist() == [1, 2]

    sft = [{"step": 1, "loss": 1.2, "tokens_per_s": 800.0}]
    status, loss, *_, accuracy, margin = refresh(database, finished_job(database, tmp_path / "sft", sft))
    assert loss["loss"].tolist() == [1.2]
    assert not accuracy["visible"] and not margin["visible"]  # an SFT run has no rewards to plot


def test_a_tiny_dpo_run_launched_from_the_tab_plots_its_rewards(tmp_path, mmtraj_records, release_image_dir):
    from gradio_client import Client

    from tests.support.app_server import running_app
    from tests.support.preferences import preference_store

    settings = Settings(data_dir=tmp_path / "app")
    settings.data_dir.mkdir()
    preference_store(settings.db, mmtraj_records, release_image_dir)
    extra = (f"--max-length 1024 --row-tokens 1024 --token-budget 2048 --max-steps 2 --learning-rate 1e-2 "
             f"--cache-dir {tmp_path / 'cache'}")
    form = [SOURCES[0], "", "", False, "", True, "DPO", "", "tiny", str(tmp_path / "dpo"), 1, 0.01, 8, 2, 2048,
            "varlen", False, False, extra]
    with running_app(settings) as url:
        client = Client(url, verbose=False)
        assert client.predict(*form, api_name="/train_launch")[0].startswith("**running**")
        deadline = time.monotonic() + 240
        while (view := client.predict(api_name="/train_refresh"))[0].startswith("**running**"):
            assert time.monotonic() < deadline, "the tiny DPO run did not finish in time"
            time.sleep(1)
    status, loss, *_, accuracy, margin = view
    assert status.startswith("**done**"), status
    assert [row[0] for row in loss["data"]] == [1, 2]
    assert accuracy["visible"] and margin["visible"]
    assert len(accuracy["value"]["data"]) == 2 and all(0 <= row[3] <= 1 for row in accuracy["value"]["data"])
