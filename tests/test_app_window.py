"""The application window (a plain viewer until the editor lands): opens photos, refuses bad files."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from instructir_desktop.io import write_image  # noqa: E402
from instructir_desktop.ui.app import MainWindow, to_qimage  # noqa: E402


def test_window_opens_a_photo_and_shows_its_size(qtbot, tmp_path):
    path = tmp_path / "photo.png"
    write_image(path, np.full((30, 50, 3), 0.5, dtype=np.float32))
    window = MainWindow()
    qtbot.addWidget(window)
    assert window.open_path(path)
    assert "50 × 30" in window.statusBar().currentMessage()
    assert path.name in window.windowTitle()
    assert window.view.pixmap() is not None and not window.view.pixmap().isNull()


def test_window_reports_a_broken_file_and_keeps_the_current_photo(qtbot, tmp_path):
    good = tmp_path / "good.png"
    write_image(good, np.zeros((8, 8, 3), dtype=np.float32))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    window = MainWindow()
    qtbot.addWidget(window)
    window.open_path(good)
    assert not window.open_path(broken)
    assert "broken.jpg" in window.statusBar().currentMessage()
    assert window.path == good


def test_to_qimage_rounds_float_pixels():
    pixels = np.zeros((2, 3, 3), dtype=np.float32)
    pixels[0, 0] = (1.0, 0.5, 0.0)
    image = to_qimage(pixels)
    assert (image.width(), image.height()) == (3, 2)
    colour = image.pixelColor(0, 0)
    assert (colour.red(), colour.green(), colour.blue()) == (255, 128, 0)
