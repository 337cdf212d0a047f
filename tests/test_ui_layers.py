"""Layers and local edits in the window, with the fake engine: the layers panel (each change one
undo step), rectangle and brush selections drawn with the pointer at any zoom, restores limited to
the selection, panning while a selection tool is active, and "restore into a new layer"."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from fake_engine import FakeEngine
from PySide6.QtCore import QPoint, QPointF, QSettings, Qt
from PySide6.QtWidgets import QApplication

import instructir_desktop.ui.display as display_module
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.selection import Selection
from instructir_desktop.editing.conversation import RunState
from instructir_desktop.io import read_image, write_image
from instructir_desktop.ui.layers_panel import NEW_LAYER_KEY
from instructir_desktop.ui.main_window import MainWindow
from instructir_desktop.ui.selection_tools import BRUSH, HAND, RECTANGLE, selection_overlay

DONE = RunState.DONE


def make_photo(path, height, width, seed=0):
    rng = np.random.default_rng(seed)
    pixels = np.round((0.2 + 0.8 * rng.random((height, width, 3))) * 255) / 255  # never black: 0.5× shows
    write_image(path, pixels.astype(np.float32))
    return read_image(path).rgb


@pytest.fixture
def settings(tmp_path):
    """Preferences in an ini file of the test's own: never the person's settings."""
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def open_window(qtbot, path, settings, engine=None) -> MainWindow:
    window = MainWindow(engine or FakeEngine(), preferences=settings)
    window.interactive = False
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_path(path)
    return window


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.png"
    return path, make_photo(path, 24, 32)


@pytest.fixture
def large(tmp_path):
    """Larger than the canvas once zoomed in, so the view scrolls."""
    path = tmp_path / "large.png"
    return path, make_photo(path, 200, 300, seed=1)


def flattened(window: MainWindow) -> np.ndarray:
    return window.session.workspace.document.flatten().rgb


def send(qtbot, window: MainWindow, text: str = "remove the noise"):
    window.chat.send_text(text)
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.ended, timeout=5000)
    assert run.state == DONE, (run.state, run.reply.status)
    return run


def viewport_point(window: MainWindow, x: float, y: float) -> QPoint:
    """Where the image point (x, y) is on the canvas's viewport, by Qt's own forward mapping."""
    return window.canvas.mapFromScene(QPointF(x, y))


def drag(qtbot, window: MainWindow, points, button=Qt.MouseButton.LeftButton, modifiers=Qt.KeyboardModifier.NoModifier):
    """Press at the first image point, move through the others, release at the last."""
    viewport = window.canvas.viewport()
    positions = [viewport_point(window, x, y) for x, y in points]
    qtbot.mousePress(viewport, button, modifiers, positions[0])
    for position in positions[1:]:
        qtbot.mouseMove(viewport, position)
    qtbot.mouseRelease(viewport, button, modifiers, positions[-1])


def focus_canvas(qtbot, window: MainWindow) -> None:
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)
    window.canvas.setFocus()


def zoom_into(window: MainWindow, zoom: float, x: float, y: float) -> None:
    canvas = window.canvas
    canvas.set_zoom(zoom)
    canvas.centerOn(x, y)
    assert canvas.zoom == pytest.approx(zoom)


# ---------------------------------------------------------------------------------------------- layers panel


def test_the_panel_lists_layers_top_first_and_each_change_is_one_undo_step(qtbot, small, settings):
    path, original = small
    window = open_window(qtbot, path, settings)
    panel, history = window.layers_panel, window.session.workspace.history
    document = window.session.workspace.document
    assert panel.list.count() == 1 and panel.rows[0].name_label.text() == "small"
    assert not panel.rows[0].thumbnail.pixmap().isNull()
    assert not panel.delete_action.isEnabled() and not panel.merge_down_action.isEnabled()

    panel.buttons["duplicate"].click()
    assert len(document) == 2 and len(history) == 1
    assert [row.name_label.text() for row in panel.rows] == ["small copy", "small"]
    assert document.active_index == 1 and panel.list.currentRow() == 0
    assert history.steps[-1].label == "Duplicate layer “small”" and history.steps[-1].kind == "layers"
    assert window.history_panel.list.item(1).text() == "Duplicate layer “small”"
    assert window.menus.undo_action.text() == "&Undo Duplicate layer “small”"

    # Hide the copy from its row's checkbox: one step, and the canvas shows it.
    shown_before = window.canvas.pixmap.toImage()
    panel.rows[0].visible_box.click()
    assert not document.layers[1].visible and len(history) == 2
    assert panel.rows[0].visible_box.isChecked() is False
    assert window.canvas.pixmap.toImage() == shown_before  # the copy hid an identical layer

    # Opacity from the spin box (committed on Enter), then from the slider (on release).
    panel.rows[1].opacity_spin.setValue(40)
    assert document.layers[0].opacity == pytest.approx(0.4) and len(history) == 3
    np.testing.assert_allclose(window.canvas.pixmap.toImage().pixelColor(0, 0).alphaF(), 0.4, atol=0.01)
    panel.rows[1].opacity_slider.setValue(70)
    assert document.layers[0].opacity == pytest.approx(0.7) and len(history) == 4
    assert panel.rows[1].opacity_spin.value() == 70

    for _ in range(3):
        window.undo()
    assert document.layers[0].opacity == 1.0 and document.layers[1].visible
    assert panel.rows[0].visible_box.isChecked() and panel.rows[1].opacity_spin.value() == 100
    window.undo()
    assert len(document) == 1 and panel.list.count() == 1
    np.testing.assert_array_equal(flattened(window), original)


def test_order_merge_and_delete_are_undoable(qtbot, small, settings):
    path, original = small
    window = open_window(qtbot, path, settings)
    panel, document, history = window.layers_panel, window.session.workspace.document, window.session.workspace.history
    panel.duplicate()
    top = document.layers[1]
    assert panel.move_down() and document.layers[0] is top and document.active_index == 0
    assert not panel.move_down_action.isEnabled() and panel.move_up_action.isEnabled()
    assert [row.name_label.text() for row in panel.rows] == ["small", "small copy"]
    assert panel.move_up() and document.layers[1] is top

    panel.set_opacity(1, 0.5)
    document.active_index = 1
    assert panel.merge_down() and len(document) == 1
    np.testing.assert_allclose(flattened(window), original, atol=1e-4)  # merging keeps the look

    window.undo()
    assert len(document) == 2 and document.layers[1].opacity == 0.5
    window.session.workspace.set_active_layer(1)
    assert panel.delete() and len(document) == 1
    # The undone merge was discarded by the delete.
    assert [step.label for step in history.steps] == [
        "Duplicate layer “small”",
        "Move layer “small copy” down",
        "Move layer “small copy” up",
        "Opacity of “small copy” 50%",
        "Delete layer “small copy”",
    ]
    window.undo()
    assert len(document) == 2


def test_choosing_a_row_makes_the_restore_apply_to_that_layer(qtbot, small, settings):
    path, original = small
    window = open_window(qtbot, path, settings)
    panel, document = window.layers_panel, window.session.workspace.document
    panel.duplicate()
    steps = len(window.session.workspace.history)
    item = panel.list.item(1)  # the bottom layer
    qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=panel.list.visualItemRect(item).center())
    assert document.active_index == 0 and panel.list.currentRow() == 1
    assert len(window.session.workspace.history) == steps  # choosing a layer is not a step

    send(qtbot, window)
    bottom, top = document.layers
    np.testing.assert_allclose(bottom.pixels, original * 0.5, atol=1e-4)
    np.testing.assert_array_equal(top.pixels, original)
    panel.set_visible(1, False)
    np.testing.assert_allclose(flattened(window), original * 0.5, atol=1e-4)


# ---------------------------------------------------------------------------------------------- selections


def test_a_rectangle_dragged_at_zoom_limits_the_restore_and_is_undoable(qtbot, large, settings):
    path, original = large
    window = open_window(qtbot, path, settings)
    window.selection_tools.set_tool(RECTANGLE)
    assert window.selection_tools.rectangle_action.isChecked()
    zoom_into(window, 4.5, 150, 100)
    canvas = window.canvas
    # Zoomed in and scrolled: the mapping is neither the identity nor a plain scale.
    assert canvas.horizontalScrollBar().value() > 0 and canvas.verticalScrollBar().value() > 0

    drag(qtbot, window, [(120, 80), (150, 95), (170, 110)])

    selection = window.session.workspace.document.selection
    assert selection is not None
    bounds = selection.bounds
    assert abs(bounds.x - 120) <= 1 and abs(bounds.y - 80) <= 1
    assert abs(bounds.right - 170) <= 1 and abs(bounds.bottom - 110) <= 1
    assert canvas.preview_path is None and not canvas.overlay.isNull()
    assert len(window.session.workspace.history) == 0  # a selection is not an edit

    send(qtbot, window)
    after = flattened(window)
    inside = selection.mask > 0
    np.testing.assert_array_equal(after[~inside], original[~inside])
    np.testing.assert_allclose(after[inside], original[inside] * 0.5, atol=1e-4)
    assert window.session.workspace.history.steps[-1].bounds is not None
    window.undo()
    np.testing.assert_array_equal(flattened(window), original)


def test_a_brush_stroke_at_zoom_limits_the_restore(qtbot, large, settings):
    path, original = large
    window = open_window(qtbot, path, settings)
    tools = window.selection_tools
    tools.set_tool(BRUSH)
    tools.brush_spin.setValue(6)
    assert tools.brush_radius == 6
    zoom_into(window, 3.0, 60, 60)

    drag(qtbot, window, [(40, 60), (50, 60), (60, 61), (70, 60)])

    selection = window.session.workspace.document.selection
    bounds = selection.bounds
    assert abs(bounds.x - 34) <= 2 and abs(bounds.right - 76) <= 2
    assert abs(bounds.y - 54) <= 2 and abs(bounds.bottom - 66) <= 2
    assert selection.mask[60, 55] == 1.0 and selection.mask[40, 55] == 0.0

    send(qtbot, window)
    after = flattened(window)
    outside = selection.mask == 0
    np.testing.assert_array_equal(after[outside], original[outside])
    np.testing.assert_allclose(after[60, 55], original[60, 55] * 0.5, atol=1e-4)
    window.undo()
    np.testing.assert_array_equal(flattened(window), original)


def test_feather_softens_the_edge_and_shift_adds_alt_removes(qtbot, large, settings):
    path, _ = large
    window = open_window(qtbot, path, settings)
    tools = window.selection_tools
    tools.set_tool(RECTANGLE)
    tools.feather_spin.setValue(4.0)
    zoom_into(window, 2.0, 60, 60)
    drag(qtbot, window, [(40, 40), (80, 80)])
    mask = window.session.workspace.document.selection.mask
    assert mask[60, 60] == pytest.approx(1.0) and 0.0 < mask[60, 40] < 1.0 and mask[60, 30] == 0.0

    tools.set_feather_radius(0)
    drag(qtbot, window, [(90, 40), (100, 50)], modifiers=Qt.KeyboardModifier.ShiftModifier)
    mask = window.session.workspace.document.selection.mask
    assert mask[45, 95] == 1.0 and mask[60, 60] == pytest.approx(1.0)
    drag(qtbot, window, [(50, 50), (70, 70)], modifiers=Qt.KeyboardModifier.AltModifier)
    mask = window.session.workspace.document.selection.mask
    assert mask[60, 60] == 0.0 and mask[45, 95] == 1.0 and mask[75, 75] > 0.9

    # A click without a drag deselects.
    drag(qtbot, window, [(10, 10)])
    assert window.session.workspace.document.selection is None and window.canvas.overlay.isNull()


def test_select_all_and_deselect_shortcuts_redraw_only_the_overlay(qtbot, small, settings, monkeypatch):
    path, _ = small
    window = open_window(qtbot, path, settings)
    calls = []
    real = display_module.flattened_pixmap
    monkeypatch.setattr(display_module, "flattened_pixmap", lambda image: calls.append(1) or real(image))
    focus_canvas(qtbot, window)
    qtbot.keyClick(window.canvas, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    selection = window.session.workspace.document.selection
    assert selection is not None and selection.mask.all()
    assert not window.canvas.overlay.isNull() and window.selection_tools.deselect_action.isEnabled()
    qtbot.keyClick(window.canvas, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert window.session.workspace.document.selection is None and window.canvas.overlay.isNull()
    window.layers_panel.duplicate()
    window.session.workspace.set_active_layer(0)
    window.session.workspace.set_active_layer(1)
    window.selection_tools.invert()
    # The duplicate changed the stack (one conversion); selections and the active layer did not.
    assert len(calls) == 1
    assert len(window.session.workspace.history) == 1


def test_the_overlay_is_small_outlined_and_leaves_the_selected_pixels_clear():
    mask = np.zeros((5000, 3000), np.float32)
    mask[1000:2000, 500:1500] = 1.0
    mask[2000:2400, 500:1500] = 0.25  # a feathered edge: three quarters unselected
    rgba, step = selection_overlay(mask, max_side=1000)
    assert step == 5 and rgba.shape == (1000, 600, 4)
    # Inside: nothing over the pixels being judged. Outside: dimmed with black, never tinted.
    assert rgba[300, 200, 3] == 0
    assert rgba[100, 100, 3] == 80 and tuple(rgba[100, 100, :3]) == (0, 0, 0)
    assert rgba[450, 200, 3] == 60  # three quarters of the dimming on the feathered part
    assert rgba[200, 150, 3] == 255  # the outline on the selection's edge (row 1000 / 5)


def test_pan_with_the_middle_button_or_space_while_a_selection_tool_is_active(qtbot, large, settings):
    path, _ = large
    window = open_window(qtbot, path, settings)
    focus_canvas(qtbot, window)
    window.selection_tools.set_tool(RECTANGLE)
    zoom_into(window, 4.0, 150, 100)
    canvas = window.canvas
    viewport = canvas.viewport()
    bars = canvas.horizontalScrollBar(), canvas.verticalScrollBar()

    def pan(button, start: QPoint, end: QPoint) -> list[int]:
        before = [bar.value() for bar in bars]
        qtbot.mousePress(viewport, button, pos=start)
        qtbot.mouseMove(viewport, end)
        qtbot.mouseRelease(viewport, button, pos=end)
        return [bar.value() - value for bar, value in zip(bars, before, strict=True)]

    assert pan(Qt.MouseButton.MiddleButton, QPoint(200, 200), QPoint(150, 170)) == [50, 30]
    assert window.session.workspace.document.selection is None

    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    assert canvas._space_held
    assert pan(Qt.MouseButton.LeftButton, QPoint(200, 200), QPoint(220, 190)) == [-20, 10]
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    assert not canvas._space_held
    assert window.session.workspace.document.selection is None  # panning selected nothing

    # The hand tool (the default) pans with the left button.
    window.selection_tools.set_tool(HAND)
    assert window.selection_tools.tool == HAND and canvas.tool is None
    assert pan(Qt.MouseButton.LeftButton, QPoint(200, 200), QPoint(190, 200)) == [10, 0]
    assert window.session.workspace.document.selection is None


# ---------------------------------------------------------------------------------------------- new layer


def test_restore_into_a_new_layer_is_one_step_and_persists(qtbot, small, settings):
    path, original = small
    window = open_window(qtbot, path, settings)
    panel, session = window.layers_panel, window.session
    assert not panel.new_layer_action.isChecked() and not session.workspace.restore_into_new_layer
    panel.new_layer_action.trigger()
    assert session.workspace.restore_into_new_layer and panel.new_layer_box.isChecked()
    document = session.workspace.document
    session.workspace.set_selection(Selection.rectangle(24, 32, Bounds(x=4, y=6, width=12, height=10)))

    run = send(qtbot, window)

    assert len(document) == 2 and document.active_index == 1 and len(session.workspace.history) == 1
    background, restored = document.layers
    np.testing.assert_array_equal(background.pixels, original)  # the layer below is untouched
    assert restored.name == run.text and panel.rows[0].name_label.text() == run.text
    np.testing.assert_array_equal(restored.alpha, document.selection.mask)
    after = flattened(window)
    inside = document.selection.mask > 0
    np.testing.assert_allclose(after[~inside], original[~inside], atol=1e-6)
    np.testing.assert_allclose(after[inside], original[inside] * 0.5, atol=1e-4)
    # The strength can still be changed without the network, as for a replacing restore.
    session.workspace.history.set_strength(0, 0.0)
    np.testing.assert_allclose(flattened(window), original, atol=1e-4)
    session.workspace.history.set_strength(0, 1.0)

    window.undo()
    assert len(document) == 1 and panel.list.count() == 1
    np.testing.assert_array_equal(flattened(window), original)
    window.redo()
    assert len(document) == 2

    # Remembered for the next window; turning it off goes back to replacing.
    again = MainWindow(FakeEngine(), preferences=QSettings(settings.fileName(), QSettings.Format.IniFormat))
    qtbot.addWidget(again)
    assert again.layers_panel.new_layer_action.isChecked() and again.session.workspace.restore_into_new_layer
    panel.new_layer_box.click()
    assert not session.workspace.restore_into_new_layer and settings.value(NEW_LAYER_KEY) in (False, "false")
    session.workspace.set_selection(None)
    send(qtbot, window, "it's too dark")
    assert len(document) == 2 and len(session.workspace.history) == 2
