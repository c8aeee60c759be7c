"""The step viewer renders MM-Traj records (fixtures, release sample) safely and completely, with no server."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agent.steps import Step, Task, Trajectory
from review.viewer import EMPTY, View, build_viewer, image_views, render


def _trajectory(record: dict) -> Trajectory:
    return Trajectory.from_conversations(record["conversations"])


def _text(markup: str) -> str:
    """The visible text, roughly: tags dropped, entities left (enough to find words)."""
    return re.sub(r"<[^>]+>", "", markup)


def _tags(markup: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every start tag a browser would build from the markup, with its attributes."""
    found = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, [(k, v or "") for k, v in attrs]))

    Collector().feed(markup)
    return found


def test_every_sample_record_renders_each_step_and_its_observation_or_error(fidelity_records):
    for record in fidelity_records:
        trajectory = _trajectory(record)
        markup = render(View(trajectory, title=record["id"], answer=record["answer"]))
        assert markup.count('class="mat-step"') == len(trajectory.steps), record["id"]
        errors = sum(step.error is not None for step in trajectory.steps)
        assert markup.count('class="mat-error"') == errors, record["id"]
        assert "Final answer (code)" in markup or trajectory.final_answer is None


def test_record_with_error_turns_shows_error_text_and_the_task(mmtraj_records):
    record = next(r for r in mmtraj_records if r["id"] == "GGLn7Jma")
    markup = render(View(_trajectory(record)))
    assert "what steps could we take to save for the beach vacation" in markup
    assert "Error in code parsing" in markup
    assert markup.count('<span class="mat-badge bad">error</span>') == 2


def test_code_is_highlighted_and_tools_are_badged(mmtraj_records):
    record = next(r for r in mmtraj_records if r["id"] == "GGLn7Jma")
    markup = render(View(_trajectory(record)))
    assert '<span class="mat-badge">visualizer</span>' in markup
    assert 'style="color:' in markup  # Pygments inline colours on the code


def test_untrusted_text_cannot_inject_markup():
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    step = Step(index=0, model_output="x", thought=evil, code=f"print('{evil}')", observation=evil)
    final = Step(index=1, model_output="y", thought="done", code="final_answer(1)", is_final=True, final_answer="1")
    trajectory = Trajectory(task=Task(text=evil, images=[evil]), system_prompt="s", steps=[step, final])
    markup = render(View(trajectory, title=evil, answer=evil, reference_answer=evil, verdict=evil, verdict_reason=evil))
    tags = _tags(markup)
    assert "script" not in {name for name, _ in tags}
    assert not [attr for _, attrs in tags for attr, _ in attrs if attr.startswith("on")]
    assert all(value.startswith("data:image/") for name, attrs in tags if name == "img" for attr, value in attrs if attr == "src")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup


def test_missing_images_are_marked_and_present_ones_are_inlined(tmp_path: Path):
    from PIL import Image

    Image.new("RGB", (800, 600), "red").save(tmp_path / "here.png")
    trajectory = Trajectory(task=Task(text="look", images=["here.png", "gone.jpg"]), system_prompt="s")
    markup = render(View(trajectory, base_dir=tmp_path))
    assert "missing image: gone.jpg" in markup
    assert markup.count('<img src="data:image/jpeg;base64,') == 1
    assert "missing image: here.png" not in markup


def test_a_file_that_is_not_an_image_counts_as_missing(tmp_path: Path):
    (tmp_path / "fake.png").write_text("not an image")
    views = image_views(["fake.png"], tmp_path)
    assert views[0].missing is False
    trajectory = Trajectory(task=Task(text="look", images=["fake.png"]), system_prompt="s")
    assert "missing image: fake.png" in render(View(trajectory, images=views))


def test_step_images_produced_are_shown(tmp_path: Path):
    from PIL import Image

    Image.new("RGB", (40, 40), "blue").save(tmp_path / "out.png")
    step = Step(index=0, model_output="m", thought="draw", code="x=1", observation="ok", images=["out.png"])
    markup = render(View(Trajectory(task=Task("t"), system_prompt="s", steps=[step]), base_dir=tmp_path))
    assert "Images produced" in markup and "data:image/jpeg;base64," in markup


def test_edited_fields_are_badged_and_the_original_is_available(mmtraj_records):
    record = next(r for r in mmtraj_records if r["id"] == "GGLn7Jma")
    original = _trajectory(record)
    edited = copy.deepcopy(original)
    edited.steps[0].thought = "A clearer thought."
    edited.steps[1].error = None
    edited.steps[1].observation = "fixed output"
    markup = render(View(edited, original=original, answer="new", original_answer=record["answer"]))
    assert markup.count('<span class="mat-badge edit">edited</span>') == 3  # step 0, step 1, answer
    assert "show original thought" in markup
    assert "show original observation" in markup and "Error in code parsing" in markup
    assert "show original answer" in markup
    assert "A clearer thought." in markup


def test_unedited_trajectory_has_no_edit_marks(mmtraj_records):
    trajectory = _trajectory(mmtraj_records[0])
    markup = render(View(trajectory, original=copy.deepcopy(trajectory), answer="a", original_answer="a"))
    assert "mat-badge edit" not in markup and "show original" not in markup


@pytest.mark.parametrize(
    ("answer", "reference", "badge"),
    [('"320"', "320", "matches reference"), ("320 kcal", "320", "differs from reference")],
)
def test_answer_is_compared_with_the_reference(answer, reference, badge):
    final = Step(index=0, model_output="m", code=f"final_answer({answer})", is_final=True, final_answer=answer)
    markup = render(View(Trajectory(Task("t"), "s", [final]), reference_answer=reference))
    assert badge in markup


def test_verifier_verdict_and_reason_are_shown(mmtraj_records):
    trajectory = _trajectory(mmtraj_records[0])
    markup = render(View(trajectory, verdict="no", verdict_reason="The tool arguments are wrong."))
    assert '<span class="mat-badge bad">no</span>' in markup
    assert "The tool arguments are wrong." in _text(markup)


def test_build_viewer_gives_a_component_and_an_update(mmtraj_records):
    import gradio as gr

    with gr.Blocks():
        viewer = build_viewer()
    assert isinstance(viewer.component, gr.HTML)
    assert viewer.update(None) == EMPTY
    assert 'class="mat-step"' in viewer.update(View(_trajectory(mmtraj_records[0])))
