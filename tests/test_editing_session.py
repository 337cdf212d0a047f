"""A whole editing session, headless: no Qt, the fake engine, the real plugin host and history.

Open a photo, instruct, follow up, cancel, undo, compare, edit a selection, save, reopen, export:
every decision the editor makes is taken here, in ``instructir_desktop.editing``.
"""

from __future__ import annotations

import numpy as np
import pytest
from editing_harness import Harness, make_photo
from fake_engine import FakeEngine
from PIL import Image

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.selection import Selection
from instructir_desktop.editing.conversation import RunState
from instructir_desktop.editing.events import (
    BusyChanged,
    DocumentChanged,
    Level,
    PreviewCleared,
    PreviewShown,
    RunEnded,
    StatusMessage,
)
from instructir_desktop.io import read_image


@pytest.fixture
def harness():
    made = Harness()
    yield made
    made.close()


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    return path, make_photo(path)


def test_a_whole_session_from_open_to_export(harness, photo, tmp_path):
    path, original = photo
    session = harness.session
    assert session.files.open(path, background=False)
    assert session.workspace.document.size == (24, 32)

    # An instruction: read, shown as a plan, run through the plugin host, one undoable step.
    run = harness.send("there's grain everywhere")
    assert [step.task for step in run.reply.plan] == ["denoise"]
    assert run.reply.text.startswith("I'll remove the noise")
    assert "Done in" in run.reply.status and "fake device" in run.reply.status
    assert run.reply.strength == 1.0 and run.reply.strength_blocked == ""
    history = harness.workspace.history
    assert (len(history), history.index) == (1, 1)
    assert history.steps[0].label == "there's grain everywhere" and history.steps[0].tasks == ("denoise",)
    np.testing.assert_allclose(harness.pixels(), original * 0.5, atol=1e-4)

    # A follow-up re-blends it without the network: 0.75 of the way from the photo to the result.
    restores = len(harness.engine.restore_ids())
    weaker = harness.send("a bit less")
    assert "75%" in weaker.reply.status
    np.testing.assert_allclose(harness.pixels(), original * (1 - 0.5 * 0.75), atol=1e-4)
    assert len(harness.engine.restore_ids()) == restores and run.reply.strength == 0.75

    # Cancel while it runs: the photo stays as it was.
    harness.engine.hold = True
    before = harness.pixels().copy()
    held = harness.assistant.send("too dark, brighten it")
    harness.until(lambda: held.job is not None and held.job.request_id in harness.engine.held)
    harness.assistant.cancel(held)
    harness.ended(held)
    assert held.state is RunState.CANCELLED and "unchanged" in held.reply.status
    np.testing.assert_array_equal(harness.pixels(), before)
    harness.engine.hold = False

    # Undo and redo from the chat.
    harness.send("undo that")
    np.testing.assert_array_equal(harness.pixels(), original)
    harness.send("redo")
    np.testing.assert_allclose(harness.pixels(), before, atol=1e-6)

    # Compare: the two states can be named and reached.
    assert harness.workspace.comparable(0, 1) == ""
    assert harness.workspace.state_name(0) == "Original"
    assert harness.workspace.state_name(1) == "1. there's grain everywhere"

    # A local edit: only the selection changes.
    harness.workspace.set_selection(Selection.rectangle(24, 32, Bounds(x=4, y=4, width=16, height=12), 0))
    before = harness.pixels().copy()
    harness.send("remove the rain")
    after = harness.pixels()
    outside = np.ones((24, 32), dtype=bool)
    outside[4:16, 4:20] = False
    np.testing.assert_array_equal(after[outside], before[outside])
    np.testing.assert_allclose(after[~outside], before[~outside] * 0.5, atol=1e-4)
    assert harness.workspace.history.steps[-1].bounds.area <= 12 * 16

    # Never over the original photo.
    original_bytes = path.read_bytes()
    assert not session.files.export(path)
    assert path.read_bytes() == original_bytes
    assert any(
        isinstance(e, StatusMessage) and "original" in e.text and e.level is Level.WARNING for e in harness.events
    )

    # Save, reopen: the history comes back and still undoes.
    project = tmp_path / "work.irproject"
    assert session.files.save_project(project)
    assert not harness.workspace.modified
    assert session.files.open(project, background=False)
    assert len(harness.workspace.history) == 2
    harness.workspace.undo()
    np.testing.assert_allclose(harness.pixels(), before, atol=1e-6)

    # Export: a new file.
    target = tmp_path / "photo-restored.png"
    assert session.files.export(target, background=False)
    np.testing.assert_allclose(read_image(target).rgb, before, atol=1 / 255)


def test_a_failure_and_a_stale_result_leave_the_photo_as_it_was(harness, photo):
    path, original = photo
    harness.session.files.open(path, background=False)
    harness.engine.fail_with = "not enough memory for this photo"
    failed = harness.send("remove the noise", RunState.FAILED)
    assert "not enough memory for this photo" in failed.reply.status
    np.testing.assert_array_equal(harness.pixels(), original)

    harness.send("remove the noise")
    harness.engine.hold = True
    held = harness.assistant.send("too dark, brighten it")
    harness.until(lambda: held.job is not None and held.job.request_id in harness.engine.held)
    harness.workspace.undo()  # the person undoes while it runs
    harness.engine.release(held.job.request_id)
    harness.ended(held)
    assert held.state is RunState.STALE and "not applied" in held.reply.status
    np.testing.assert_array_equal(harness.pixels(), original)


def test_messages_sent_together_chain_and_busy_is_announced(photo):
    harness = Harness(FakeEngine(threaded=True))
    try:
        path, original = photo
        harness.session.files.open(path, background=False)
        first = harness.assistant.send("remove the noise")
        second = harness.assistant.send("it's too dark")
        harness.ended(second)
        assert (first.state, second.state) == (RunState.DONE, RunState.DONE)
        np.testing.assert_allclose(harness.pixels(), original * 0.25, atol=1e-4)
        busy = [event.busy for event in harness.events if isinstance(event, BusyChanged)]
        assert busy == [True, False]
        ended = [event.run for event in harness.events if isinstance(event, RunEnded)]
        assert ended == [first, second]
    finally:
        harness.close()


def test_a_big_photo_gets_a_preview_of_the_visible_area_first(harness, photo):
    path, original = photo
    harness.session.files.open(path, background=False)
    harness.assistant.preview_min_pixels = 100
    visible = Bounds(x=8, y=4, width=16, height=12)
    harness.assistant.viewport = lambda: visible
    run = harness.send("remove the noise")
    shown = [event for event in harness.events if isinstance(event, PreviewShown)]
    assert len(shown) == 1 and shown[0].bounds == visible
    np.testing.assert_allclose(shown[0].pixels, original[4:16:2, 8:24:2] * 0.5, atol=1e-6)
    # The result replaced it: the preview is gone and the reply says how it ended.
    kinds = [type(event) for event in harness.events]
    assert kinds.index(PreviewCleared) > kinds.index(PreviewShown)
    assert "Done" in run.reply.status


def test_without_a_photo_the_reply_says_to_open_one(harness):
    run = harness.assistant.send("remove the noise")
    assert run.state is RunState.FAILED and "Open a photo first" in run.reply.text


def test_the_document_changed_event_follows_every_change(harness, photo):
    path, _ = photo
    harness.session.files.open(path, background=False)
    count = sum(isinstance(event, DocumentChanged) for event in harness.events)
    harness.send("remove the noise")
    harness.workspace.undo()
    assert sum(isinstance(event, DocumentChanged) for event in harness.events) == count + 2


def test_export_keeps_exif(harness, tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    source = tmp_path / "holiday.jpg"
    Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(source, quality=95, exif=exif.tobytes())
    harness.session.files.open(source, background=False)
    harness.send("remove the noise")
    target = tmp_path / "holiday-restored.jpg"
    assert harness.session.files.export(target, background=False)
    with Image.open(target) as exported:
        assert exported.getexif()[0x010F] == "TestCam"
        assert abs(int(np.asarray(exported)[5, 5, 0]) - 100) <= 2
    # An export is not a save: the step is in no project yet, and the session says where it went.
    assert harness.workspace.unsaved_work and harness.workspace.exported_path == target
