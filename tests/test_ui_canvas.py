"""The canvas: zoom keys and wheel, fit and 100 %, and no pixel conversion on repaint or zoom."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QPixmap, QWheelEvent
from PySide6.QtWidgets import QApplication
from ui_fake_engine import FakeEngine

import instructir_desktop.ui.main_window as main_window_module
from instructir_desktop.io import write_image
from instructir_desktop.ui.canvas import ZOOM_STEP, Canvas
from instructir_desktop.ui.main_window import MainWindow


@pytest.fixture
def window(qtbot, tmp_path):
    path = tmp_path / "wide.png"
    write_image(path, np.full((300, 1200, 3), 0.4, dtype=np.float32))
    window = MainWindow(FakeEngine())
    window.interactive = False
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.open_path(path)
    return window


def key(qtbot, window, sequence: str) -> None:
    modifiers = Qt.KeyboardModifier.ControlModifier
    keys = {"=": Qt.Key.Key_Equal, "-": Qt.Key.Key_Minus, "0": Qt.Key.Key_0, "1": Qt.Key.Key_1}
    window.activateWindow()
    qtbot.keyClick(window.canvas, keys[sequence], modifiers)


def test_opening_fits_the_photo_and_keys_zoom(qtbot, window):
    canvas = window.canvas
    viewport = canvas.viewport().rect()
    assert canvas.fit_mode
    assert canvas.zoom == pytest.approx(min(viewport.width() / 1200, viewport.height() / 300), rel=1e-3)
    key(qtbot, window, "1")
    assert canvas.zoom == pytest.approx(1.0) and not canvas.fit_mode
    key(qtbot, window, "=")
    assert canvas.zoom == pytest.approx(ZOOM_STEP)
    key(qtbot, window, "-")
    key(qtbot, window, "-")
    assert canvas.zoom == pytest.approx(1 / ZOOM_STEP)
    assert window.zoom_label.text() == f"{100 / ZOOM_STEP:.0f}%"
    key(qtbot, window, "0")
    assert canvas.fit_mode
    # Fitted, a resize keeps the whole photo in view.
    window.resize(1500, 900)
    qtbot.waitUntil(lambda: canvas.viewport().width() > viewport.width())
    shown = canvas.mapFromScene(canvas.sceneRect()).boundingRect()
    assert abs(shown.width() - canvas.viewport().width()) <= 2  # a wide photo fills the width exactly
    assert canvas.fit_mode


def test_wheel_zooms_about_the_pointer(qtbot):
    canvas = Canvas()
    qtbot.addWidget(canvas)
    canvas.resize(400, 300)
    canvas.show()
    qtbot.waitExposed(canvas)
    pixmap = QPixmap(800, 600)
    pixmap.fill(Qt.GlobalColor.gray)
    canvas.set_pixmap(pixmap)
    canvas.actual_size()
    point = QPointF(100, 80)
    under_before = canvas.mapToScene(point.toPoint())
    event = QWheelEvent(
        point,
        canvas.viewport().mapToGlobal(point),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas.viewport(), event)
    assert canvas.zoom == pytest.approx(ZOOM_STEP)
    under_after = canvas.mapToScene(point.toPoint())
    assert abs(under_after.x() - under_before.x()) <= 2 and abs(under_after.y() - under_before.y()) <= 2


def test_pixels_are_converted_only_when_the_image_changes(qtbot, window, monkeypatch):
    calls = []
    real = main_window_module.flattened_pixmap

    def counting(image):
        calls.append(image.rgb.shape)
        return real(image)

    monkeypatch.setattr(main_window_module, "flattened_pixmap", counting)
    canvas = window.canvas
    for _ in range(3):
        canvas.zoom_in()
        canvas.viewport().repaint()
    canvas.fit()
    window.history_panel.refresh(window.session.history)
    assert calls == []
    window.chat.send_text("remove the noise")
    qtbot.waitUntil(lambda: not window.conversation.busy, timeout=5000)
    assert len(calls) == 1
    window.undo()
    assert len(calls) == 2


def test_compare_clips_the_left_image_at_the_split(qtbot):
    canvas = Canvas()
    qtbot.addWidget(canvas)
    left, right = QPixmap(200, 100), QPixmap(200, 100)
    left.fill(Qt.GlobalColor.black)
    right.fill(Qt.GlobalColor.white)
    canvas.set_compare(left, right)
    canvas.set_split(0.3)
    assert canvas._clip.rect().width() == pytest.approx(60)
    canvas.resize(300, 200)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.actual_size()
    canvas.centerOn(100, 50)
    picture = canvas.viewport().grab().toImage()
    origin = canvas.mapFromScene(0, 0)
    assert picture.pixelColor(origin.x() + 20, origin.y() + 50).lightness() < 50
    assert picture.pixelColor(origin.x() + 150, origin.y() + 50).lightness() > 200
    canvas.end_compare(right)
    assert not canvas.comparing and not canvas._clip.isVisible()
