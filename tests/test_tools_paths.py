"""Every path a tool receives must resolve inside the task's working directory or name an attachment."""

from __future__ import annotations

import pytest

from agent.tools import bind_tools, profile_tools
from agent.tools.base import ToolContext, ToolError


@pytest.fixture
def layout(tmp_path):
    workdir, outside = tmp_path / "task", tmp_path / "outside"
    workdir.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    (workdir / "notes.txt").write_text("inside the task")
    upload = tmp_path / "uploads" / "report.txt"
    upload.parent.mkdir()
    upload.write_text("the attached report")
    ctx = ToolContext(workdir=workdir, attachments={"report.txt": upload})
    return ctx, bind_tools(profile_tools("mat"), ctx)["inspect_file_as_text"], outside


@pytest.mark.parametrize("path", ["../outside/secret.txt", "sub/../../outside/secret.txt"])
def test_dotdot_escape_is_refused(layout, path):
    _, read, _ = layout
    with pytest.raises(ToolError, match="is not allowed: only the task's working directory and attachments"):
        read(file_path=path)


def test_absolute_path_outside_is_refused(layout):
    _, read, outside = layout
    with pytest.raises(ToolError, match="is not allowed"):
        read(file_path=str(outside / "secret.txt"))


def test_symlink_inside_pointing_outside_is_refused(layout):
    ctx, read, outside = layout
    (ctx.workdir / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(ToolError, match="is not allowed"):
        read(file_path="link.txt")


def test_files_inside_and_attachments_by_name_are_read(layout):
    ctx, read, _ = layout
    assert "inside the task" in read(file_path="notes.txt")
    assert "inside the task" in read(file_path=str(ctx.workdir / "notes.txt"))
    assert "the attached report" in read(file_path="report.txt")


def test_missing_file_is_named(layout):
    _, read, _ = layout
    with pytest.raises(ToolError, match="file not found: 'nope.pdf'"):
        read(file_path="nope.pdf")


def test_image_tools_refuse_outside_paths_too(layout, tmp_path):
    ctx, _, outside = layout
    tools = bind_tools(profile_tools("mat+ocr") + profile_tools("gta"), ctx)
    for name, kwargs in [("ocr", {"image_path": "../outside/secret.txt"}),
                         ("facedetection", {"image_path": "/etc/hostname"}),
                         ("DrawBox", {"image": "../outside/secret.txt", "bbox": "(0, 0, 1, 1)"})]:
        with pytest.raises(ToolError, match="is not allowed"):
            tools[name](**kwargs)
