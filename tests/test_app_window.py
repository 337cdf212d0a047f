"""The application window: opens photos (command line, drop), refuses bad files, asks before losing work."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from fake_engine import FakeEngine
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from instructir_desktop.io import write_image
from instructir_desktop.ui.app import MainWindow
from instructir_desktop.ui.qimages import to_qimage


def new_window(qtbot) -> MainWindow:
    window = MainWindow(FakeEngine())
    window.interactive = False
    qtbot.addWidget(window)
    return window


def test_window_opens_a_photo_and_shows_its_size(qtbot, tmp_path):
    path = tmp_path / "photo.png"
    write_image(path, np.full((30, 50, 3), 0.5, dtype=np.float32))
    window = new_window(qtbot)
    assert window.open_path(path)
    assert "50 × 30" in window.statusBar().currentMessage()
    assert window.size_label.text() == "50 × 30"
    assert path.name in window.windowTitle()
    assert window.canvas.has_image and window.canvas.pixmap.width() == 50


def test_window_reports_a_broken_file_and_keeps_the_current_photo(qtbot, tmp_path):
    good = tmp_path / "good.png"
    write_image(good, np.zeros((8, 8, 3), dtype=np.float32))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    window = new_window(qtbot)
    window.open_path(good)
    assert not window.open_path(broken)
    assert "broken.jpg" in window.statusBar().currentMessage()
    assert window.session.workspace.path == good


def test_dropping_a_photo_opens_it(qtbot, tmp_path):
    path = tmp_path / "dropped.png"
    write_image(path, np.zeros((10, 12, 3), dtype=np.float32))
    window = new_window(qtbot)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)
    assert window.session.workspace.path == path


def test_closing_with_unsaved_changes_asks_first(qtbot, tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    write_image(path, np.full((8, 8, 3), 0.5, dtype=np.float32))
    window = new_window(qtbot)
    window.interactive = True
    window.show()
    qtbot.waitExposed(window)
    window.open_path(path)
    window.chat.send_text("remove the noise")
    qtbot.waitUntil(lambda: not window.session.assistant.busy, timeout=5000)
    assert window.session.workspace.modified
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Discard]
    asked = []

    def question(*args, **kwargs):
        asked.append(args[2])
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", question)
    assert not window.close()
    assert window.isVisible() and len(asked) == 1
    assert window.close()
    assert len(asked) == 2 and window.session.engine.closed


def test_to_qimage_rounds_float_pixels():
    pixels = np.zeros((2, 3, 3), dtype=np.float32)
    pixels[0, 0] = (1.0, 0.5, 0.0)
    image = to_qimage(pixels)
    assert (image.width(), image.height()) == (3, 2)
    colour = image.pixelColor(0, 0)
    assert (colour.red(), colour.green(), colour.blue()) == (255, 128, 0)
