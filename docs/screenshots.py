"""The README's screenshots of every tab, taken from the running app, so they show what the app shows today.

    python docs/screenshots.py [--out docs]

On a temporary data folder: the repository's release-shaped fixture records (our own content) imported into
Review; a synthesis run against the scripted endpoint the tests use; a tiny training run on the CPU; two GTA runs
on the fixture benchmark, one answering nothing useful ("base") and one giving the reference answers ("tuned");
and a Chat question whose model replies are scripted while the face detector, the sandbox and the app are real.
Debian's Chromium takes one PNG per tab: docs/chat.png, review.png, synthesize.png, train.png, evaluate.png,
settings.png. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.chat_sessions import connect, free_port  # noqa: E402

GTA = ROOT / "tests" / "fixtures" / "gta_dataset.json"
CHAT_MODEL = "t3-agent"
QUESTION = "How many people are in this photo, and where are their faces?"


def scripted(body: dict) -> str:
    """The model for every request of the screenshots: Chat's steps, and the two evaluation runs' answers."""
    if body.get("model") == CHAT_MODEL:
        if not any(message["role"] == "assistant" for message in body["messages"]):
            return ("Thought: I will find the faces in the photo with the face detector.\nCode:\n```py\n"
                    "faces = facedetection(image_path='attachments/astronaut.png')\nprint(faces)\n```<end_action>")
        return ("Thought: The detector found one face, so one person is in the photo.\nCode:\n```py\n"
                "final_answer('One person; the face box is given above.')\n```<end_action>")
    asked = json.dumps(body["messages"])
    for item in json.loads(GTA.read_text()).values():
        truth = item["gt_answer"]
        if item["dialogs"][0]["content"][:60] in asked and isinstance(truth, dict) and body.get("model") == "tuned":
            answer = ", ".join(group[0] for group in truth["whitelist"])
            return f"Thought: I have the answer.\nCode:\n```py\nfinal_answer({answer!r})\n```<end_action>"
    return "Thought: I cannot tell.\nCode:\n```py\nfinal_answer('no idea')\n```<end_action>"


def prepare(data: Path, scratch: Path, model_url: str, synthesis_url: str) -> None:
    """Fill the data folder as a team's would look: imported, synthesized, trained, evaluated."""
    from skimage import data as photos

    from PIL import Image
    from tests.support.samples import fixture_records, gta_folder
    from tests.support.train_records import release_images

    db = data / "mat.db"
    records = scratch / "records.json"
    records.write_text(json.dumps(fixture_records()))
    images = release_images(json.loads(records.read_text()), scratch / "images")
    Image.fromarray(photos.astronaut()).save(scratch / "astronaut.png")
    env = {**os.environ, "MAT_DB": str(db), "MAT_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}

    def python(*argv: str, **extra: str) -> None:
        done = subprocess.run([sys.executable, *argv], cwd=ROOT, env={**env, **extra}, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"python {' '.join(argv)}: {done.stderr.strip()[-500:]}")

    python("-m", "review", "import", str(records), "--db", str(db), "--images", str(images), "--source", "release")
    ids = [record["id"] for record in json.loads(records.read_text())]
    for trajectory_id in ids[:8]:
        python("-m", "review", "decide", "--approve", "--reviewer", "ann", "--db", str(db), "--", trajectory_id)
    python("-m", "review", "decide", "--reject", "wrong_answer", "--reviewer", "bob", "--db", str(db), "--", ids[8])
    python("-m", "synthesis", "run", "--tasks", "6", "--db", str(db), "--base-url", synthesis_url, "--embedder",
           "hash", "--model", "gpt-4o-mini")
    python("-m", "train", "--data", str(records), "--images", str(images), "--tiny", "--out",
           str(data / "train" / "tiny"), "--max-steps", "8", "--db", str(db))
    folder = gta_folder(GTA, scratch / "gta")
    for model in ("base", "tuned"):
        python("-m", "eval", "gta", "--data", str(folder), "--db", str(db), "--base-url", model_url, "--model", model,
               "--run-id", f"gta-{model}", MAT_TYPED_API_KEY="sk-screens")


def shoot(url: str, out: Path, photo: Path) -> None:
    from tests.support.browser import chromium_page

    with chromium_page(1400, 1000) as page:
        page.goto(url)
        page.get_by_text("Sandbox:").wait_for()
        page.locator("#chat-input input[type=file]").set_input_files(str(photo))
        page.locator("#chat-input textarea").fill(QUESTION)
        page.keyboard.press("Enter")
        page.get_by_text("One person").first.wait_for(timeout=120_000)
        page.screenshot(path=str(out / "chat.png"), full_page=True)
        for tab, ready in (("Review", "#review-list .body-cell"), ("Synthesize", "#synthesis-state"),
                           ("Train", "#train-status"), ("Evaluate", "[role=tab]:has-text('Results')"), ("Settings", "#settings-table")):
            page.get_by_role("tab", name=tab, exact=True).click()
            page.locator(ready).first.wait_for(timeout=60_000)
            if tab == "Review":
                page.locator("#review-list .body-cell").first.click()
            if tab == "Evaluate":
                compare_runs(page)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / f"{tab.lower()}.png"), full_page=True)


def compare_runs(page) -> None:
    """Evaluate's Results with both runs picked: their scores, the chart, the tasks."""
    page.get_by_role("tab", name="Results", exact=True).click()
    for run_id in ("gta-base", "gta-tuned"):
        page.locator("#eval-runs input").first.click()
        page.get_by_role("option", name=f"{run_id} ·").first.click()
    page.keyboard.press("Escape")  # close the run picker
    page.locator("#eval-chart svg").first.wait_for(timeout=30_000)


def main() -> None:
    from tests.support.openai_server import FakeOpenAI
    from tests.support.synthesis_server import SynthesisServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch_dir, FakeOpenAI(responder=scripted) as model, \
            SynthesisServer() as synthesis:
        scratch = Path(scratch_dir)
        data = scratch / "data"
        prepare(data, scratch, model.url, synthesis.url)
        env = {**os.environ, "MAT_DATA_DIR": str(data), "MAT_BASE_URL": model.url, "MAT_API_KEY": "sk-screens",
               "MAT_MODEL": CHAT_MODEL, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1"}
        app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            connect(f"http://127.0.0.1:{port}/", app)
            shoot(f"http://127.0.0.1:{port}/", args.out, scratch / "astronaut.png")
        finally:
            app.terminate()
            app.wait(timeout=30)
    print(json.dumps({"screenshots": sorted(p.name for p in args.out.glob("*.png"))}))


if __name__ == "__main__":
    main()
