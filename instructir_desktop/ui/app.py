"""The application window.

For now a plain viewer: it opens the photo given on the command line (or by the Open action)
and shows it fitted to the window. The editor (canvas, chat panel, history) replaces it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel, QMainWindow, QMessageBox

from instructir_desktop.io import ImageReadError, read_image

APP_NAME = "InstructIR Desktop"


def to_qimage(rgb: np.ndarray) -> QImage:
    """An 8-bit copy of float RGB pixels for display."""
    pixels = np.ascontiguousarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8))
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.resize(1100, 720)
        self.view = QLabel("Open a photo (Ctrl+O) to begin.")
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view.setMinimumSize(320, 240)
        self.setCentralWidget(self.view)
        self._pixmap: QPixmap | None = None
        self.path: Path | None = None
        open_action = QAction("&Open…", self)
        open_action.setShortcut(QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self.choose_file)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        menu = self.menuBar().addMenu("&File")
        menu.addAction(open_action)
        menu.addAction(quit_action)
        self.statusBar().showMessage("Ready")

    def choose_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open photo", "", "Images (*.jpg *.jpeg *.png *.tif *.tiff *.webp)")
        if name:
            self.open_path(Path(name))

    def open_path(self, path: Path) -> bool:
        try:
            image = read_image(path)
        except ImageReadError as error:
            self.statusBar().showMessage(str(error))
            if self.isVisible():
                QMessageBox.warning(self, APP_NAME, str(error))
            return False
        self.path = path
        self._pixmap = QPixmap.fromImage(to_qimage(image.rgb))
        self.setWindowTitle(f"{path.name} — {APP_NAME}")
        self.statusBar().showMessage(f"{path.name}: {image.width} × {image.height}, {image.metadata.bit_depth}-bit")
        self._show_fitted()
        return True

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._show_fitted()

    def _show_fitted(self) -> None:
        if self._pixmap is None:
            return
        self.view.setPixmap(
            self._pixmap.scaled(
                self.view.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        )


def run_application(argv: Sequence[str]) -> int:
    app = QApplication.instance() or QApplication([sys.argv[0], *argv])
    app.setApplicationName(APP_NAME)
    window = MainWindow()
    window.show()
    images = [a for a in argv if not a.startswith("-")]
    if images:
        window.open_path(Path(images[0]))
    return int(app.exec())
