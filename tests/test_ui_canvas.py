"""The canvas: zoom keys and wheel, fit and 100 %, no pixel conversion on repaint or zoom, the mip
pyramid it paints big photos from, and a restoration's preview overlay."""

from __future__ import annotations

import os
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from fake_engine import FakeEngine
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QPixmap, QWheelEvent
from PySide6.QtWidgets import QApplication

import instructir_desktop.ui.display as display_module
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.io import write_image
from instructir_desktop.ui import qimages
from instructir_desktop.ui.canvas import ZOOM_STEP, Canvas
from instructir_desktop.ui.main_window import MainWindow
from instructir_desktop.ui.qimages import MipImage, half_size, to_argb32


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
    real = display_module.flattened_pixmap

    def counting(image):
        calls.append(image.rgb.shape)
        return real(image)

    monkeypatch.setattr(display_module, "flattened_pixmap", counting)
    canvas = window.canvas
    for _ in range(3):
        canvas.zoom_in()
        canvas.viewport().repaint()
    canvas.fit()
    window.history_panel.refresh(window.session.workspace.history)
    assert calls == []
    window.chat.send_text("remove the noise")
    qtbot.waitUntil(lambda: not window.session.assistant.busy, timeout=5000)
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
    canvas.resize(300, 200)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.actual_size()
    canvas.centerOn(100, 50)
    # The split is 30 % across the canvas (90 px of 300), wherever the photo lies under it.
    split_x = round(0.3 * canvas.viewport().width())
    assert canvas._clip.rect().width() == pytest.approx(canvas.image_point(QPointF(split_x, 0)).x(), abs=0.5)
    picture = canvas.viewport().grab().toImage()
    row = canvas.mapFromScene(0, 50).y()
    assert picture.pixelColor(split_x - 10, row).lightness() < 50
    assert picture.pixelColor(split_x + 10, row).lightness() > 200
    canvas.end_compare(right)
    assert not canvas.comparing and not canvas._clip.isVisible()


def test_each_mip_level_is_a_rounded_2x2_box_average_of_the_one_before():
    level = np.arange(5 * 7 * 4, dtype=np.uint8).reshape(5, 7, 4)
    half = half_size(level)
    assert half.shape == (3, 4, 4)
    wide = level.astype(np.float64)
    assert half[0, 0, 1] == int(wide[0:2, 0:2, 1].mean() + 0.5)
    assert half[1, 2, 3] == int(wide[2:4, 4:6, 3].mean() + 0.5)
    assert half[1, 3, 0] == int(wide[2:4, 6, 0].mean() + 0.5)  # the odd last column
    assert half[2, 1, 2] == int(wide[4, 2:4, 2].mean() + 0.5)  # the odd last row
    assert half[2, 3, 0] == level[4, 6, 0]  # the odd corner

    mip = MipImage(np.zeros((1000, 3000, 4), dtype=np.uint8))
    sizes = [(image.width(), image.height()) for image in mip.levels]
    assert sizes[:3] == [(3000, 1000), (1500, 500), (750, 250)] and max(sizes[-1]) <= 64
    assert mip.level_for(1.0) == 0 and mip.level_for(0.6) == 0  # full resolution from 50 % up
    assert mip.level_for(0.5) == 1 and mip.level_for(0.3) == 1 and mip.level_for(0.25) == 2
    assert mip.level_for(1 / 1000) == len(mip.levels) - 1


def test_display_pixels_are_native_argb32_premultiplied_by_alpha():
    rgb = np.array([[[1.0, 0.5, 0.0], [0.2, 0.4, 0.6]]], dtype=np.float32)
    opaque = MipImage.from_float(rgb)
    assert opaque.opaque and opaque.levels[0].pixelColor(0, 0).getRgb() == (255, 128, 0, 255)
    alpha = np.array([[0.5, 1.0]], dtype=np.float32)
    translucent = MipImage(to_argb32(rgb, alpha), opaque=False)
    colour = translucent.levels[0].pixelColor(0, 0)
    assert colour.alpha() == 128 and abs(colour.red() - 255) <= 2 and abs(colour.green() - 128) <= 2
    assert translucent.levels[0].pixelColor(1, 0).getRgb() == (51, 102, 153, 255)


def test_a_big_photo_paints_the_visible_part_from_the_smallest_level_large_enough(qtbot, monkeypatch):
    canvas = Canvas()
    qtbot.addWidget(canvas)
    canvas.resize(600, 400)
    canvas.show()
    qtbot.waitExposed(canvas)
    pixels = np.zeros((2000, 3000, 4), dtype=np.uint8)
    pixels[..., 1] = 200  # green (B, G, R, A in memory)
    pixels[..., 3] = 255
    canvas.set_image(MipImage(pixels))
    item = canvas.image_item
    viewport = canvas.viewport().rect()

    def no_conversion(*args, **kwargs):
        raise AssertionError("pixels were converted while painting")

    for name in ("to_argb32", "half_size"):
        monkeypatch.setattr(qimages, name, no_conversion)
    monkeypatch.setattr(MipImage, "from_qimage", no_conversion)

    assert canvas.fit_mode and canvas.zoom < 0.25
    QApplication.processEvents()  # the scene indexes the new item
    canvas.viewport().repaint()
    assert item.last_level == 2  # a quarter-size level (750×500) for a fifth-size view
    assert item.last_source.width() <= 750 and item.last_source.height() <= 500
    assert canvas.visible_image_bounds() == Bounds(0, 0, 3000, 2000)
    centre = canvas.viewport().grab().toImage().pixelColor(viewport.center())
    assert (centre.red(), centre.green(), centre.blue()) == (0, 200, 0)

    canvas.actual_size()
    canvas.centerOn(1500, 1000)
    canvas.viewport().repaint()
    assert item.last_level == 0
    # Only about the viewport's worth of full-resolution pixels is read, not the photo.
    assert item.last_source.width() <= viewport.width() + 2 and item.last_source.height() <= viewport.height() + 2
    visible = canvas.visible_image_bounds()
    assert visible is not None
    assert abs(visible.width - viewport.width()) <= 1 and abs(visible.height - viewport.height()) <= 1
    assert visible.intersect(Bounds(1500, 1000, 1, 1)).area == 1


def test_a_result_preview_covers_its_bounds_and_hides_while_comparing(qtbot):
    canvas = Canvas()
    qtbot.addWidget(canvas)
    canvas.resize(300, 200)
    canvas.show()
    qtbot.waitExposed(canvas)
    white = QPixmap(200, 100)
    white.fill(Qt.GlobalColor.white)
    canvas.set_pixmap(white)
    canvas.actual_size()
    canvas.centerOn(100, 50)
    preview = np.zeros((20, 30, 3), dtype=np.float32)  # half resolution of a 60×40 area
    canvas.show_result_preview(preview, Bounds(10, 20, 60, 40))
    assert canvas.result_preview_visible and canvas.result_badge_text == "Preview"
    picture = canvas.viewport().grab().toImage()
    inside, outside = canvas.mapFromScene(65, 55), canvas.mapFromScene(120, 55)
    assert picture.pixelColor(inside).lightness() < 30
    assert picture.pixelColor(outside).lightness() > 220
    canvas.set_compare(white, white)
    assert not canvas.result_preview_visible and canvas.result_preview_bounds == Bounds(10, 20, 60, 40)
    canvas.end_compare(white)
    assert canvas.result_preview_visible
    canvas.clear_result_preview()
    assert not canvas.result_preview_visible and canvas.result_badge_text == ""


def shown_colour(window) -> tuple[int, int, int]:
    image = window.canvas.image.levels[0]
    colour = image.pixelColor(image.width() // 2, image.height() // 2)
    return colour.red(), colour.green(), colour.blue()


def test_a_large_photo_is_converted_off_the_gui_thread_and_stale_builds_are_dropped(qtbot, window, monkeypatch):
    """Results and undos of a big photo must not freeze the window while its display image is built."""
    builder = window.display
    builder.synchronous_pixels = 0  # treat the test photo as a large one
    gate = threading.Event()
    threads = []
    real = display_module.flattened_pixmap

    def gated(image):
        threads.append(threading.current_thread())
        assert gate.wait(10)
        return real(image)

    monkeypatch.setattr(display_module, "flattened_pixmap", gated)
    before = shown_colour(window)
    window.chat.send_text("remove the noise")  # the fake engine halves the pixels
    qtbot.waitUntil(lambda: not window.session.assistant.busy, timeout=5000)
    qtbot.waitUntil(lambda: len(threads) == 1, timeout=5000)
    # The result is in the document, the build is held: the canvas keeps the old image meanwhile
    # and the event loop keeps running (this test's waits run on it).
    assert len(window.session.workspace.history) == 1 and builder.busy
    assert shown_colour(window) == before
    window.undo()  # while the first build still runs: its image is stale once it finishes
    window.redo()
    gate.set()
    qtbot.waitUntil(lambda: not builder.busy, timeout=5000)
    assert all(thread is not threading.main_thread() for thread in threads)
    # Only the newest request was built after the held one (the undo's was replaced by the redo's).
    assert len(threads) == 2
    halved = tuple(round(value * 0.5) for value in before)
    assert all(abs(a - b) <= 1 for a, b in zip(shown_colour(window), halved, strict=True))


def test_comparing_states_of_a_large_photo_builds_them_off_the_gui_thread(qtbot, window):
    window.compare_view.builds.synchronous_pixels = 0  # treat the test photo as a large one
    before = shown_colour(window)
    window.chat.send_text("remove the noise")
    qtbot.waitUntil(lambda: not window.session.assistant.busy, timeout=5000)
    assert window.compare_view.compare(0, 1)
    assert window.compare_view.isVisible() and window.history_panel.comparing
    qtbot.waitUntil(lambda: window.canvas.comparing, timeout=5000)
    left = window.canvas._left.mip.levels[0]
    colour = left.pixelColor(left.width() // 2, left.height() // 2)
    assert (colour.red(), colour.green(), colour.blue()) == before  # the original on the left
    window.compare_view.end_compare()
    assert not window.canvas.comparing

    # A compare overtaken by an edit before its images are ready is dropped, not shown.
    window.history_panel.compare_button.setChecked(True)
    window.undo()
    qtbot.wait(200)
    assert not window.compare_view.builds.busy and not window.canvas.comparing
