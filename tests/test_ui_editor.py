"""The editor window draws the session and sends it what the person does: a message's plan as
chips, progress with time left and Cancel, the history panel, compare, shortcuts. (What the
session decides is tested headless, in test_editing_*.py.)"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from fake_engine import FakeEngine
from PySide6.QtCore import Qt, QThread
from PySide6.QtWidgets import QApplication

from instructir_desktop.editing.conversation import RunState
from instructir_desktop.editing.replies import format_eta
from instructir_desktop.inference.requests import EngineEvent
from instructir_desktop.io import read_image, write_image
from instructir_desktop.ui.main_window import MainWindow

CANCELLED, DONE, FAILED, NOTHING, STALE = (
    RunState.CANCELLED,
    RunState.DONE,
    RunState.FAILED,
    RunState.NOTHING,
    RunState.STALE,
)


def make_photo(path, height=24, width=32, seed=0):
    rng = np.random.default_rng(seed)
    pixels = np.round(rng.random((height, width, 3)) * 255) / 255
    write_image(path, pixels.astype(np.float32))
    return read_image(path).rgb


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    return path, make_photo(path)


def open_window(qtbot, engine, path) -> MainWindow:
    window = MainWindow(engine)
    window.interactive = False
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_path(path)
    return window


def pixels(window: MainWindow) -> np.ndarray:
    document = window.session.workspace.document
    assert document is not None
    return document.flatten().rgb


def send(qtbot, window: MainWindow, text: str, state: RunState = DONE):
    window.chat.send_text(text)
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.ended, timeout=20000)  # a hang guard: the first upscale imports torch
    assert run.state == state, (run.state, run.reply.status)
    return run


@pytest.mark.parametrize("threaded", [False, True])
def test_a_message_becomes_a_plan_and_one_history_step(qtbot, photo, threaded):
    path, original = photo
    engine = FakeEngine(threaded=threaded)
    window = open_window(qtbot, engine, path)
    gui_thread = QApplication.instance().thread()
    delivered_on = []
    window.session.events.subscribe(
        EngineEvent, lambda _event: delivered_on.append(QThread.currentThread() is gui_thread)
    )

    run = send(qtbot, window, "there's grain everywhere")

    assert all(delivered_on) and delivered_on
    assert window.chat.reply_for(run).chip_texts == ["Remove noise · sure 87 % ▾"]
    assert run.reply.text.startswith("I'll remove the noise")
    assert "Done in 0.2 s on fake device" in run.reply.status
    assert not window.chat.reply_for(run).in_progress
    history = window.session.workspace.history
    assert len(history) == 1 and history.index == 1
    assert history.steps[0].label == "there's grain everywhere"
    assert history.steps[0].tasks == ("denoise",)
    np.testing.assert_allclose(pixels(window), original * 0.5, atol=1e-4)
    assert window.session.workspace.modified and "•" in window.windowTitle()
    assert "Fake model" in window.engine_label.text()


def test_progress_shows_an_eta_and_cancel_leaves_the_photo_as_it_was(qtbot, photo):
    path, _ = photo
    engine = FakeEngine(hold=True)
    window = open_window(qtbot, engine, path)
    before = pixels(window).copy()
    window.chat.send_text("remove the noise")
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: "50%" in window.chat.reply_for(run).progress_label.text(), timeout=5000)
    assert window.chat.reply_for(run).in_progress
    assert "about 3 s left" in window.chat.reply_for(run).progress_label.text()
    assert window.chat.reply_for(run).progress_bar.value() == 500

    qtbot.mouseClick(window.chat.reply_for(run).cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: run.ended, timeout=5000)

    assert run.state == CANCELLED and "unchanged" in run.reply.status
    assert engine.cancelled == {run.job.request_id}
    np.testing.assert_array_equal(pixels(window), before)
    assert len(window.session.workspace.history) == 0 and not window.session.workspace.modified


def test_without_a_photo_the_chat_says_to_open_one(qtbot):
    window = MainWindow(FakeEngine())
    window.interactive = False
    qtbot.addWidget(window)
    window.chat.send_text("remove the noise")
    run = window.session.assistant.runs[-1]
    assert run.state == FAILED and "Open a photo first" in run.reply.text


def test_enter_sends_up_recalls_and_examples_show_on_an_empty_chat(qtbot, photo):
    path, _ = photo
    window = open_window(qtbot, FakeEngine(), path)
    assert window.chat.examples.isVisible() and len(window.chat.example_buttons) >= 4
    sent = []
    window.chat.message_sent.connect(sent.append)
    qtbot.keyClicks(window.chat.input, "remove the noise")
    qtbot.keyClick(window.chat.input, Qt.Key.Key_Return)
    assert sent == ["remove the noise"]
    assert window.chat.input.text() == ""
    assert not window.chat.examples.isVisible()
    qtbot.keyClick(window.chat.input, Qt.Key.Key_Up)
    assert window.chat.input.text() == "remove the noise"
    qtbot.waitUntil(lambda: not window.session.assistant.busy, timeout=5000)


def test_an_example_button_fills_the_box_and_runs_nothing_until_sent(qtbot, photo):
    path, _ = photo
    window = open_window(qtbot, FakeEngine(), path)
    qtbot.mouseClick(window.chat.example_buttons[0], Qt.MouseButton.LeftButton)
    assert window.chat.input.text() == window.chat.example_buttons[0].text()
    assert window.session.assistant.runs == [] and len(window.session.workspace.history) == 0
    qtbot.keyClick(window.chat.input, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.session.assistant.busy, timeout=5000)
    assert window.session.assistant.runs[0].text == window.chat.example_buttons[0].text()
    assert len(window.session.workspace.history) == 1


def test_undo_and_redo_shortcuts_work_from_the_chat_input(qtbot, photo):
    path, original = photo
    window = open_window(qtbot, FakeEngine(), path)
    send(qtbot, window, "remove the noise")
    restored = pixels(window).copy()
    window.activateWindow()
    window.chat.input.setFocus()
    qtbot.keyClick(window.chat.input, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(pixels(window), original)
    assert window.menus.redo_action.isEnabled()
    qtbot.keyClick(
        window.chat.input, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    np.testing.assert_array_equal(pixels(window), restored)


def test_history_panel_lists_steps_and_clicking_one_shows_it(qtbot, photo):
    path, original = photo
    window = open_window(qtbot, FakeEngine(), path)
    send(qtbot, window, "remove the noise")
    send(qtbot, window, "brighten it")
    panel = window.history_panel
    assert panel.list.count() == 3
    text = panel.list.item(1).text()
    assert "remove the noise" in text and "Remove noise" in text and "strength 100%" in text and " s" in text
    assert not panel.list.item(0).icon().isNull() and not panel.list.item(1).icon().isNull()
    assert panel.list.currentRow() == 2

    item = panel.list.item(0)
    rect = panel.list.visualItemRect(item)
    qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.session.workspace.history.index == 0
    np.testing.assert_array_equal(pixels(window), original)
    assert panel.list.count() == 3 and panel.list.currentRow() == 0
    window.show_history_index(2)
    np.testing.assert_allclose(pixels(window), original * 0.25, atol=1e-4)


def test_compare_two_steps_with_a_split_slider(qtbot, photo):
    path, _ = photo
    window = open_window(qtbot, FakeEngine(), path)
    send(qtbot, window, "remove the noise")
    send(qtbot, window, "brighten it")
    window.history_panel.choose_compare(0, 2)
    window.history_panel.compare_button.click()
    assert window.canvas.comparing and window.compare_view.isVisible()
    assert "Original" in window.compare_view.left_label.text()
    assert "brighten it" in window.compare_view.right_label.text()
    window.compare_view.split_slider.setValue(250)
    assert window.canvas.split == pytest.approx(0.25)
    window.history_panel.compare_button.click()
    assert not window.canvas.comparing and not window.compare_view.isVisible()


def test_upscale_changes_the_size_in_one_undoable_step(qtbot, photo):
    path, _ = photo
    window = open_window(qtbot, FakeEngine(), path)
    send(qtbot, window, "upscale it")
    assert window.session.workspace.document.size == (48, 64)
    assert window.canvas.pixmap.width() == 64
    window.undo()
    assert window.session.workspace.document.size == (24, 32)


def test_format_eta():
    assert format_eta(None) == ""
    assert format_eta(0.2) == "almost done"
    assert format_eta(12.4) == "about 12 s left"
    assert format_eta(125) == "about 2 min 05 s left"


def test_preloading_the_model_reports_a_missing_model_in_the_status_bar(qtbot, photo):
    from instructir_desktop.inference.engine import Engine

    def no_model(settings):
        raise RuntimeError("no restoration weights are installed")

    engine = Engine(runtime_loader=no_model)
    window = MainWindow(engine)
    window.interactive = False
    qtbot.addWidget(window)
    window.preload_model()
    qtbot.waitUntil(lambda: window.engine_label.text() == "No model loaded", timeout=5000)
    assert "no restoration weights" in window.statusBar().currentMessage()
    engine.close()


def test_a_restore_shares_the_layer_with_the_worker_and_later_edits_copy_it(qtbot, photo):
    """No full-size copy of the photo on the GUI thread when a restore starts, and the worker's
    snapshot stays exactly as sent whatever the person does meanwhile."""
    from recording_host import RecordingHost

    path, _ = photo
    engine = FakeEngine()
    window = open_window(qtbot, engine, path)
    window.session.plugins = host = RecordingHost()
    send(qtbot, window, "remove the noise")
    layer = window.session.workspace.document.active_layer
    engine.hold = True
    window.chat.send_text("remove the noise")
    held = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: bool(engine.held), timeout=5000)
    given = host.calls[-1].given
    assert given.image is layer.pixels  # shared, not copied
    sent = given.image.copy()

    window.undo()  # writes the first step's "before" pixels into the layer: into a copy of it
    assert not np.array_equal(layer.pixels, sent)
    np.testing.assert_array_equal(given.image, sent)
    engine.release(held.job.request_id)
    qtbot.waitUntil(lambda: held.ended, timeout=5000)
    assert held.state == STALE  # the photo moved on: the held result is not applied
    assert len(window.session.workspace.history) == 1 and window.session.workspace.history.index == 0
