"""In the real window: a photo just opened is greeted with what the analysis saw, as chips at the top
of its conversation; pressing "Fix all" runs the fixes in order as one step; a question about the
photo is answered in the chat without touching it."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from analysis_photos import degraded, natural_photo, with_noise
from fake_engine import FakeEngine
from PySide6.QtCore import Qt

from instructir_desktop.editing.conversation import RunState
from instructir_desktop.io import write_image
from instructir_desktop.ui.main_window import MainWindow


def open_window(qtbot, path) -> MainWindow:
    window = MainWindow(FakeEngine())
    window.interactive = False
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_path(path)
    return window


def test_the_greeting_offers_the_fixes_and_fix_all_runs_them_in_order(qtbot, tmp_path):
    path = tmp_path / "grainy-haze.png"
    write_image(path, with_noise(degraded(natural_photo(), "dehaze", 0.5), 14))
    window = open_window(qtbot, path)
    chat = window.chat
    assert window.session.assistant.runs == []  # opening never waits for the analysis
    window.chat.send_text("hello")  # said before the analysis ended: the greeting still goes first
    qtbot.waitUntil(lambda: chat.greeting is not None, timeout=30000)
    greeting = chat.greeting
    assert chat.messages[0] is greeting
    assert greeting.text.startswith("What I see: ") and "grain" in greeting.text and "Hazy" in greeting.text
    chips = greeting.suggestion_widgets
    assert sorted(chip.text() for chip in chips[:-1]) == ["Remove haze", "Remove noise"]
    assert chips[-1].text() == "Fix all" and "remove noise, then remove haze" in " ".join(chips[-1].toolTip().split())

    qtbot.mouseClick(chips[-1], Qt.MouseButton.LeftButton)
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.ended, timeout=30000)
    assert run.state is RunState.DONE and run.text == "Fix all"
    assert [step.task for step in run.interpretation.steps] == ["denoise", "dehaze"]
    assert len(window.session.workspace.history) == 1
    assert chat.messages[-2].text == "Fix all"  # the person's choice, shown as their message


def test_a_question_is_answered_in_the_chat_and_changes_nothing(qtbot, tmp_path):
    path = tmp_path / "grain.png"
    write_image(path, with_noise(natural_photo(), 16))
    window = open_window(qtbot, path)
    window.chat.send_text("how many megapixels is it?")
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.ended, timeout=30000)
    assert run.state is RunState.NOTHING
    assert window.chat.messages[-1].text.startswith("It is 384×384 pixels: 0.1 megapixels.")
    assert len(window.session.workspace.history) == 0
