"""The chat after a step, as drawn: a strength slider that commits once per drag or pause, the
slider of the latest step alone enabled (the others say why), chips whose menus change the plan,
and sliders that follow a follow-up. (The decisions behind them: test_editing_runs.py.)"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from fake_engine import FakeEngine
from PySide6.QtCore import Qt
from recording_host import RecordingHost
from test_ui_editor import make_photo, open_window, pixels, send

from instructir_desktop.editing.conversation import RunState
from instructir_desktop.editing.events import DocumentChanged
from instructir_desktop.model.tasks import TASK_TITLES

CANCELLED, DONE, NOTHING, WAITING = RunState.CANCELLED, RunState.DONE, RunState.NOTHING, RunState.WAITING


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    return path, make_photo(path)


def interpret_count(engine: FakeEngine) -> int:
    return engine.interpret_count()


def count_changes(window) -> list[int]:
    changes: list[int] = []
    window.session.events.subscribe(DocumentChanged, lambda _event: changes.append(1))
    return changes


# ---------------------------------------------------------------------------------------------- strength


def test_dragging_the_strength_slider_reblends_once_at_release_without_the_network(qtbot, photo):
    path, original = photo
    engine = FakeEngine()
    window = open_window(qtbot, engine, path)
    run = send(qtbot, window, "remove the noise")
    reply = window.chat.reply_for(run)
    assert not reply.strength_row.isHidden() and reply.strength_slider.isEnabled()
    assert reply.strength_slider.value() == 100 and reply.strength_value_label.text() == "100%"
    restores = len(engine.restore_ids())
    changes = count_changes(window)
    strengths = []
    reply.strength_changed.connect(strengths.append)

    slider = reply.strength_slider
    slider.setSliderDown(True)
    for value in (90, 75, 60, 40):
        slider.setValue(value)
    assert reply.strength_value_label.text() == "40%"
    qtbot.wait(400)  # longer than the debounce: nothing is committed while the slider is held
    assert changes == [] and strengths == []
    slider.setSliderDown(False)  # the release

    assert strengths == [0.4] and len(changes) == 1
    step = window.session.workspace.history.steps[-1]
    assert step.strength == 0.4 and run.strength == 0.4
    np.testing.assert_allclose(pixels(window), original * (1 - 0.5 * 0.4), atol=1e-4)
    assert window._shown == window.session.workspace.image_key  # the canvas was refreshed
    assert len(engine.restore_ids()) == restores and len(window.session.workspace.history) == 1
    assert "strength 40%" in window.history_panel.list.item(1).text()


def test_keys_on_the_slider_are_debounced_into_one_update(qtbot, photo):
    path, original = photo
    window = open_window(qtbot, FakeEngine(), path)
    run = send(qtbot, window, "remove the noise")
    changes = count_changes(window)
    slider = window.chat.reply_for(run).strength_slider
    for _ in range(3):
        qtbot.keyClick(slider, Qt.Key.Key_PageDown)
    assert slider.value() == 70 and changes == []
    qtbot.waitUntil(lambda: len(changes) == 1, timeout=2000)
    qtbot.wait(300)
    assert len(changes) == 1
    np.testing.assert_allclose(pixels(window), original * (1 - 0.5 * 0.7), atol=1e-4)


def test_only_the_latest_steps_slider_is_enabled_and_the_others_say_why(qtbot, photo):
    path, original = photo
    window = open_window(qtbot, FakeEngine(), path)
    first = send(qtbot, window, "remove the noise")
    second = send(qtbot, window, "brighten it")
    assert not window.chat.reply_for(first).strength_slider.isEnabled()
    assert "latest step" in window.chat.reply_for(first).strength_slider.toolTip()
    assert window.chat.reply_for(second).strength_slider.isEnabled()

    # A change forced through anyway (say, a stale event) is refused and the photo kept.
    before = pixels(window).copy()
    assert not window.session.assistant.set_run_strength(first, 0.5)
    np.testing.assert_array_equal(pixels(window), before)

    window.undo()
    assert window.chat.reply_for(first).strength_slider.isEnabled()
    assert not window.chat.reply_for(second).strength_slider.isEnabled()
    assert "undone" in window.chat.reply_for(second).strength_slider.toolTip()
    window.chat.reply_for(first).strength_slider.setValue(50)
    window.chat.reply_for(first).commit_strength()
    np.testing.assert_allclose(pixels(window), original * 0.75, atol=1e-4)
    # Re-blending discarded the undone step, as any new change does.
    assert len(window.session.workspace.history) == 1
    assert "no longer in the history" in window.chat.reply_for(second).strength_slider.toolTip()


def test_the_slider_waits_while_a_restoration_runs(qtbot, photo):
    path, _ = photo
    engine = FakeEngine()
    window = open_window(qtbot, engine, path)
    first = send(qtbot, window, "remove the noise")
    engine.hold = True
    window.chat.send_text("brighten it")
    second = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: second.job is not None and second.job.request_id in engine.held, timeout=5000)
    assert not window.chat.reply_for(first).strength_slider.isEnabled()
    assert "running request" in window.chat.reply_for(first).strength_slider.toolTip()
    engine.release(second.job.request_id)
    qtbot.waitUntil(lambda: second.ended, timeout=5000)
    assert second.state == DONE and window.chat.reply_for(second).strength_slider.isEnabled()


# ---------------------------------------------------------------------------------------------- chips


def test_a_chip_changed_after_the_run_is_rerun_as_a_new_step(qtbot, photo):
    path, original = photo
    engine = FakeEngine()
    window = open_window(qtbot, engine, path)
    run = send(qtbot, window, "remove the noise")
    reply = window.chat.reply_for(run)
    assert reply.run_again_button.isVisibleTo(reply) and reply.run_again_button.text() == "Run again"
    chip = reply.chip_widgets[0]
    assert chip.isEnabled() and chip.menu() is not None
    entries = [action.text() for action in chip.menu().actions()]
    assert entries == list(TASK_TITLES.values())  # one step: nothing to remove
    assert [action.isChecked() for action in chip.menu().actions()] == [task == "denoise" for task in TASK_TITLES]

    window.session.plugins = RecordingHost()
    chip.choose("lowlight")
    assert reply.plan[0].task == "lowlight" and reply.plan[0].confidence == 1.0
    assert reply.chip_texts[0].endswith("· your choice ▾") and reply.run_again_button.text() == "Run edited plan"
    assert window.session.workspace.history.steps[0].tasks == ("denoise",)  # nothing ran yet

    qtbot.mouseClick(reply.run_again_button, Qt.MouseButton.LeftButton)
    again = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: again.ended, timeout=5000)
    assert again is not run and again.state == DONE
    history = window.session.workspace.history
    assert len(history) == 2 and history.steps[1].tasks == ("lowlight",)
    assert history.steps[1].label == again.step_label and "Run again" in window.chat.messages[-2].text
    (call,) = window.session.plugins.calls
    assert [step.task for step in call.params["plan"]] == ["lowlight"]
    assert interpret_count(engine) == 1  # the edited plan did not go through the text model again
    np.testing.assert_allclose(pixels(window), original * 0.25, atol=1e-4)


# ---------------------------------------------------------------------------------------------- follow-ups


def test_a_bit_less_and_a_bit_more_reblend_the_last_step(qtbot, photo):
    path, original = photo
    engine = FakeEngine()
    window = open_window(qtbot, engine, path)
    first = send(qtbot, window, "remove the noise")
    restores = len(engine.restore_ids())

    run = send(qtbot, window, "a bit less")
    assert "75% strength" in run.reply.status
    assert window.session.workspace.history.steps[-1].strength == 0.75
    assert window.chat.reply_for(first).strength_slider.value() == 75  # the slider follows
    np.testing.assert_allclose(pixels(window), original * (1 - 0.5 * 0.75), atol=1e-4)
    send(qtbot, window, "weaker")
    send(qtbot, window, "stronger")
    assert window.session.workspace.history.steps[-1].strength == 0.75
    send(qtbot, window, "a bit more")
    run = send(qtbot, window, "more", NOTHING)
    assert "already at full strength" in run.reply.status
    assert len(engine.restore_ids()) == restores and len(window.session.workspace.history) == 1
