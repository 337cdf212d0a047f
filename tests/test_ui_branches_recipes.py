"""The real window: alternatives in the history panel (switch, compare, save and reopen), and the
File menu's recipes (save one, run one on a folder with progress and Cancel)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from fake_engine import FakeEngine
from PySide6.QtCore import Qt
from ui_file_helpers import make_png, new_window

from instructir_desktop.editing.conversation import RunState
from instructir_desktop.editing.recipe_folder import FolderState
from instructir_desktop.editing.recipes import load_recipe
from instructir_desktop.io import read_image
from instructir_desktop.ui import compare_view

FACTORS = {"denoise": 0.5, "lowlight": 0.8}


def by_task(request) -> np.ndarray:
    """Each task gives its own picture, so two branches can be told apart."""
    return np.asarray(request.pixels, np.float32) * FACTORS[request.plan[0].task]


def send(qtbot, window, text: str):
    window.chat.send_text(text)
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.ended, timeout=10000)
    assert run.state is RunState.DONE, (run.state, run.reply.status)
    return run


def pixels(window) -> np.ndarray:
    return window.session.workspace.document.flatten().rgb


def test_switch_and_compare_alternatives_and_they_survive_save_and_reopen(qtbot, prefs, tmp_path, monkeypatch):
    engine = FakeEngine()
    engine.restore = by_task
    window = new_window(qtbot, prefs, tmp_path, engine)
    source = make_png(tmp_path / "photo.png")
    assert window.open_path(source)
    original = pixels(window).copy()
    panel = window.history_panel
    assert not panel.branches.isVisibleTo(window)

    send(qtbot, window, "remove the noise")
    window.undo()
    send(qtbot, window, "brighten it")
    np.testing.assert_allclose(pixels(window), original * 0.8, atol=1e-4)
    assert panel.branches.isVisibleTo(window) and panel.branch_choice.count() == 1
    assert panel.branch_choice.itemText(0) == "Alternative after the original: remove the noise"
    assert panel.list.count() == 2  # the line: the original and "brighten it"

    # Compare the current state with the alternative's end, side by side.
    shown: list[np.ndarray] = []
    real = compare_view.flattened_pixmap
    monkeypatch.setattr(compare_view, "flattened_pixmap", lambda image: shown.append(image.rgb) or real(image))
    panel.choose_compare(1, panel.right_choice.count() - 1)
    panel.compare_button.click()
    assert window.canvas.comparing and "Alternative" in window.compare_view.right_label.text()
    np.testing.assert_allclose(shown[0], original * 0.8, atol=1e-4)
    np.testing.assert_allclose(shown[1], original * 0.5, atol=1e-4)
    panel.compare_button.click()

    # Switch: the alternative is the photo again, and what it replaced is the alternative now.
    panel.switch_button.click()
    np.testing.assert_allclose(pixels(window), original * 0.5, atol=1e-4)
    assert panel.branch_choice.itemText(0) == "Alternative after the original: brighten it"
    assert [step.label for step in window.session.workspace.history.steps] == ["remove the noise"]

    project = tmp_path / "work.irproject"
    assert window.session.files.save_project(project)
    other = new_window(qtbot, prefs, tmp_path, FakeEngine())
    assert other.open_path(project)
    np.testing.assert_allclose(pixels(other), original * 0.5, atol=1e-4)
    assert other.history_panel.branch_choice.itemText(0) == "Alternative after the original: brighten it"
    other.history_panel.switch_button.click()
    np.testing.assert_allclose(pixels(other), original * 0.8, atol=1e-4)
    assert other.history_panel.branch_choice.itemText(0) == "Alternative after the original: remove the noise"


def test_file_menu_saves_a_recipe_and_runs_it_on_a_folder_with_progress_and_cancel(qtbot, prefs, tmp_path):
    engine = FakeEngine(threaded=True)
    window = new_window(qtbot, prefs, tmp_path, engine)
    recipes = window.recipe_actions
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    assert recipes.save_action in file_menu.actions() and recipes.apply_action in file_menu.actions()
    assert window.open_path(make_png(tmp_path / "photo.png"))
    send(qtbot, window, "remove the noise")

    recipe_path = tmp_path / "mine.toml"
    recipes.ask_recipe_to_save = lambda suggested: recipe_path
    recipes.save_action.trigger()
    assert [task.instruction for step in load_recipe(recipe_path).steps for task in step.tasks] == ["remove the noise"]
    assert "Saved the recipe" in window.statusBar().currentMessage()

    folder, out = tmp_path / "shoot", tmp_path / "done"
    folder.mkdir()
    for number in range(3):
        make_png(folder / f"p{number}.png", seed=number)
    answers = iter([folder, out])
    recipes.ask_recipe_to_apply = lambda: recipe_path
    recipes.ask_folder = lambda title: next(answers)
    engine.hold = True  # the first photo waits, so its progress and Cancel can be seen
    recipes.apply_action.trigger()
    run = window.session.recipes.active
    qtbot.waitUntil(lambda: recipes.progress_bar.isVisibleTo(window) and bool(engine.held), timeout=10000)
    assert recipes.cancel_button.isVisibleTo(window) and not recipes.apply_action.isEnabled()
    qtbot.mouseClick(recipes.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: run.ended, timeout=10000)
    assert run.state is FolderState.CANCELLED and not recipes.progress_bar.isVisibleTo(window)
    assert "Run it again" in window.statusBar().currentMessage()

    engine.hold = False
    answers = iter([folder, out])
    recipes.apply_action.trigger()
    again = window.session.recipes.active
    qtbot.waitUntil(lambda: again.ended, timeout=10000)
    assert again.state is FolderState.DONE and len(again.tally.written) == 3
    for number in range(3):
        before = read_image(folder / f"p{number}.png").rgb
        np.testing.assert_allclose(read_image(out / f"p{number}.png").rgb, before * 0.5, atol=1 / 255)


@pytest.mark.parametrize("ask", ["recipe", "folder"])
def test_a_dismissed_dialog_changes_nothing(qtbot, prefs, tmp_path, ask):
    window = new_window(qtbot, prefs, tmp_path)
    recipes = window.recipe_actions
    recipes.ask_recipe_to_apply = lambda: None if ask == "recipe" else tmp_path / "r.toml"
    recipes.ask_folder = lambda title: None
    assert not recipes.apply_to_folder()
    assert window.session.recipes.active is None
