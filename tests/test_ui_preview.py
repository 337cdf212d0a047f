"""A restoration of a big photo shows a quick preview of the visible area first, then the result.

The preview is an overlay on the canvas (with a "Preview" badge), never a document change or a
history step, and it is gone once the run ends: replaced by the result, cancelled or failed.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from fake_engine import FakeEngine
from PySide6.QtCore import Qt
from recording_host import RecordingHost

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.editing.assistant import PREVIEW_MIN_PIXELS
from instructir_desktop.editing.conversation import RunState
from instructir_desktop.io import read_image, write_image
from instructir_desktop.ui.main_window import MainWindow

CANCELLED, DONE, FAILED, STALE = RunState.CANCELLED, RunState.DONE, RunState.FAILED, RunState.STALE


@pytest.fixture
def photo(tmp_path):
    """A 240×360 photo in four flat quadrants (so a scaled preview still has exact colours)."""
    pixels = np.empty((240, 360, 3), dtype=np.float32)
    pixels[:120, :180], pixels[:120, 180:] = (0.8, 0.6, 0.4), (0.4, 0.8, 0.6)
    pixels[120:, :180], pixels[120:, 180:] = (0.6, 0.4, 0.8), (0.8, 0.8, 0.8)
    path = tmp_path / "quadrants.png"
    write_image(path, pixels)
    return path, read_image(path).rgb


def open_window(qtbot, engine: FakeEngine, path, *, previews: bool = True) -> MainWindow:
    window = MainWindow(engine)
    window.interactive = False
    qtbot.addWidget(window)
    window.resize(1100, 700)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_path(path)
    window.session.plugins = RecordingHost()
    if previews:
        window.session.assistant.preview_min_pixels = 0  # this small photo counts as big
    return window


def pixels(window: MainWindow) -> np.ndarray:
    document = window.session.workspace.document
    assert document is not None
    return document.flatten().rgb


def zoom_into_the_middle(window: MainWindow) -> Bounds:
    canvas = window.canvas
    canvas.set_zoom(4.0)
    canvas.centerOn(180, 120)
    bounds = canvas.visible_image_bounds()
    assert bounds is not None and 0 < bounds.area < 240 * 360
    return bounds


def shown_colour(window: MainWindow, x: float, y: float) -> tuple[int, int, int]:
    """The colour on screen at image point (x, y)."""
    canvas = window.canvas
    point = canvas.mapFromScene(x, y)
    colour = canvas.viewport().grab().toImage().pixelColor(point.x(), point.y())
    return colour.red(), colour.green(), colour.blue()


def start_held(qtbot, window: MainWindow, engine: FakeEngine, text: str = "remove the noise"):
    window.chat.send_text(text)
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.job is not None and run.job.request_id in engine.held, timeout=5000)
    return run


def test_the_preview_of_the_visible_area_shows_first_then_the_result_replaces_it(qtbot, photo):
    path, original = photo
    engine = FakeEngine(hold=True)
    window = open_window(qtbot, engine, path)
    zoom_into_the_middle(window)
    assert shown_colour(window, 170, 110) == (204, 153, 102)

    run = start_held(qtbot, window, engine)

    canvas = window.canvas
    visible = canvas.visible_image_bounds()  # (the chat's new messages may have moved the layout)
    assert visible is not None and visible.area < 240 * 360 / 2 and visible.intersect(Bounds(170, 110, 1, 1)).area
    (call,) = window.session.plugins.calls
    assert call.action_id == "restore.instruct" and call.given.preview_bounds == visible
    qtbot.waitUntil(lambda: canvas.result_preview_visible, timeout=5000)
    assert canvas.result_preview_bounds == visible
    assert canvas.result_badge_text == "Preview"
    assert "Preview" in run.reply.status
    # On screen: the restored (halved) colours; in the document and the history: nothing yet.
    assert shown_colour(window, 170, 110) == pytest.approx((102, 76, 51), abs=2)
    np.testing.assert_array_equal(pixels(window), original)
    assert len(window.session.workspace.history) == 0 and not window.session.workspace.modified

    engine.release(run.job.request_id)
    qtbot.waitUntil(lambda: run.ended, timeout=5000)

    assert run.state == DONE
    assert not canvas.result_preview_visible and canvas.result_preview_bounds is None
    assert canvas.result_badge_text == ""
    assert "Preview" not in run.reply.status
    np.testing.assert_allclose(pixels(window), original * 0.5, atol=1e-4)
    assert shown_colour(window, 170, 110) == pytest.approx((102, 76, 51), abs=2)
    history = window.session.workspace.history
    assert (len(history), history.index) == (1, 1)


def test_cancel_during_the_preview_removes_it_and_leaves_the_photo_as_it_was(qtbot, photo):
    path, original = photo
    engine = FakeEngine(hold=True)
    window = open_window(qtbot, engine, path)
    run = start_held(qtbot, window, engine)
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.result_preview_visible, timeout=5000)
    assert canvas.result_preview_bounds == Bounds(0, 0, 360, 240)  # fitted: the whole photo is visible

    qtbot.mouseClick(window.chat.reply_for(run).cancel_button, Qt.MouseButton.LeftButton)
    assert not canvas.result_preview_visible  # at once, before the engine confirms
    qtbot.waitUntil(lambda: run.ended, timeout=5000)

    assert run.state == CANCELLED
    assert not canvas.result_preview_visible and canvas.result_preview_bounds is None
    np.testing.assert_array_equal(pixels(window), original)
    assert shown_colour(window, 90, 60) == (204, 153, 102)
    assert len(window.session.workspace.history) == 0 and not window.session.workspace.modified


def test_a_failure_after_the_preview_removes_it(qtbot, photo):
    path, original = photo
    engine = FakeEngine(hold=True)
    engine.fail_with = "out of memory"
    window = open_window(qtbot, engine, path)
    run = start_held(qtbot, window, engine)
    qtbot.waitUntil(lambda: window.canvas.result_preview_visible, timeout=5000)
    engine.release(run.job.request_id)
    qtbot.waitUntil(lambda: run.ended, timeout=5000)
    assert run.state == FAILED
    assert not window.canvas.result_preview_visible
    np.testing.assert_array_equal(pixels(window), original)
    assert len(window.session.workspace.history) == 0


def test_a_preview_whose_photo_changed_is_removed_and_its_result_dropped(qtbot, photo):
    path, original = photo
    engine = FakeEngine()
    window = open_window(qtbot, engine, path)
    window.chat.send_text("remove the noise")
    qtbot.waitUntil(lambda: not window.session.assistant.busy, timeout=5000)
    engine.hold = True
    run = start_held(qtbot, window, engine, "brighten it")
    qtbot.waitUntil(lambda: window.canvas.result_preview_visible, timeout=5000)
    window.undo()  # the photo changes under the preview
    assert not window.canvas.result_preview_visible
    engine.release(run.job.request_id)
    qtbot.waitUntil(lambda: run.ended, timeout=5000)
    assert run.state == STALE
    np.testing.assert_array_equal(pixels(window), original)


def test_a_preview_that_arrives_after_cancel_is_not_shown(qtbot, photo):
    path, _ = photo
    engine = FakeEngine(hold=True)
    window = open_window(qtbot, engine, path)
    run = start_held(qtbot, window, engine)
    qtbot.waitUntil(lambda: window.canvas.result_preview_visible, timeout=5000)
    window.session.assistant.cancel(run)
    assert not run.ended and not window.canvas.result_preview_visible
    # A preview still on its way from the worker when the cancel was asked for.
    window.session.events.emit(engine.previews[-1])
    assert not window.canvas.result_preview_visible
    qtbot.waitUntil(lambda: run.ended, timeout=5000)
    assert run.state == CANCELLED and not window.canvas.result_preview_visible


def test_small_photos_and_upscales_get_no_preview(qtbot, photo):
    path, _ = photo
    engine = FakeEngine()
    window = open_window(qtbot, engine, path, previews=False)
    assert window.session.assistant.preview_min_pixels == PREVIEW_MIN_PIXELS >= 1_000_000
    window.chat.send_text("remove the noise")
    qtbot.waitUntil(lambda: not window.session.assistant.busy, timeout=5000)
    window.session.assistant.preview_min_pixels = 0
    window.chat.send_text("upscale it")
    qtbot.waitUntil(lambda: not window.session.assistant.busy, timeout=5000)
    calls = window.session.plugins.calls
    assert len(engine.restore_ids()) == 2 and len(calls) == 2
    assert all(call.given.preview_bounds is None for call in calls)
    assert engine.previews == []
    assert [run.state for run in window.session.assistant.runs] == [DONE, DONE]


def test_the_preview_of_a_selection_only_restore_changes_only_the_selection(qtbot, photo):
    from instructir_desktop.core.selection import Selection

    path, _ = photo
    engine = FakeEngine(hold=True)
    window = open_window(qtbot, engine, path)
    window.session.workspace.document.selection = Selection.rectangle(
        240, 360, Bounds(x=0, y=0, width=180, height=120), 0
    )
    start_held(qtbot, window, engine)
    qtbot.waitUntil(lambda: window.canvas.result_preview_visible, timeout=5000)
    assert shown_colour(window, 90, 60) == pytest.approx((102, 76, 51), abs=2)  # inside: restored
    assert shown_colour(window, 270, 180) == (204, 204, 204)  # outside: as it was
