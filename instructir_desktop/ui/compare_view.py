"""Comparing two states of the history on the canvas, with a split line between them, and the
bar under the canvas that names them and moves the split. The line sits at a fraction of the
canvas's width, whatever the zoom and scroll, and follows a drag on the canvas."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

from instructir_desktop.editing.background import Background
from instructir_desktop.editing.workspace import Workspace
from instructir_desktop.ui.canvas import Canvas
from instructir_desktop.ui.display import DisplayBuilds
from instructir_desktop.ui.history_panel import HistoryPanel
from instructir_desktop.ui.qimages import MipImage, flattened_pixmap

ImagePair = tuple[MipImage, MipImage]


class CompareView(QWidget):
    """The compare bar; ``ended`` asks the window to show the document again."""

    ended = Signal()

    def __init__(
        self,
        canvas: Canvas,
        history_panel: HistoryPanel,
        workspace: Workspace,
        background: Background,
        warn: Callable[[str], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._canvas = canvas
        self._history_panel = history_panel
        self._workspace = workspace
        self._warn = warn
        self._choice: tuple[int, int] = (0, 0)
        self.builds: DisplayBuilds[ImagePair] = DisplayBuilds(background, self._built, lane="compare")
        bar = QHBoxLayout(self)
        bar.setContentsMargins(8, 2, 8, 2)
        self.left_label = QLabel()
        self.right_label = QLabel()
        self.split_slider = QSlider(Qt.Orientation.Horizontal)
        self.split_slider.setRange(0, 1000)
        self.split_slider.setValue(500)
        self.split_slider.valueChanged.connect(lambda value: canvas.set_split(value / 1000))
        # Dragging on the canvas moves the line; the slider follows it.
        canvas.split_changed.connect(self._split_dragged)
        close = QPushButton("Close compare")
        close.clicked.connect(self.end_compare)
        bar.addWidget(self.left_label)
        bar.addWidget(self.split_slider, 1)
        bar.addWidget(self.right_label)
        bar.addWidget(close)
        self.setVisible(False)
        history_panel.compare_requested.connect(self.compare)
        history_panel.compare_closed.connect(self.end_compare)

    def _split_dragged(self, fraction: float) -> None:
        blocked = self.split_slider.blockSignals(True)
        self.split_slider.setValue(round(fraction * 1000))
        self.split_slider.blockSignals(blocked)

    def compare(self, left: int, right: int) -> bool:
        """Show two states of the history with a split line between them (same zoom and scroll)."""
        workspace = self._workspace
        history, document = workspace.history, workspace.document
        if history is None or document is None:
            return False
        problem = workspace.comparable(left, right)
        if problem:
            self._warn(problem)
            self._history_panel.set_comparing(False)
            return False
        self._choice = (left, right)
        self.left_label.setText(f"◀ {workspace.state_name(left)}")
        self.right_label.setText(f"{workspace.state_name(right)} ▶")
        self.setVisible(True)
        self._history_panel.set_comparing(True)
        if document.height * document.width <= self.builds.synchronous_pixels:
            self._show(flattened_pixmap(history.image_at(left)), flattened_pixmap(history.image_at(right)))
            return True
        # Rebuilding two states of a large photo takes a second: in the background, from a
        # copy-on-write snapshot, while the canvas keeps showing the photo.
        snapshot = history.snapshot()

        def build() -> ImagePair:
            return flattened_pixmap(snapshot.image_at(left)), flattened_pixmap(snapshot.image_at(right))

        self.builds.submit((self._key(), left, right), build, lambda: (self._key(), *self._choice))
        return True

    def _key(self) -> Hashable:
        return self._workspace.history_key if self._history_panel.comparing else None

    def _built(self, _key: Hashable, images: ImagePair | None) -> None:
        if images is None:  # the background build failed: do it here, where the error surfaces
            history = self._workspace.history
            if history is None:
                return
            left, right = self._choice
            images = (flattened_pixmap(history.image_at(left)), flattened_pixmap(history.image_at(right)))
        self._show(*images)

    def _show(self, left: MipImage, right: MipImage) -> None:
        self._canvas.set_compare(left, right)
        self._canvas.set_split(self.split_slider.value() / 1000)

    def end_compare(self) -> None:
        self.builds.forget()
        if not self._canvas.comparing:
            return
        self.setVisible(False)
        self._history_panel.set_comparing(False)
        self.ended.emit()

    def document_changed(self) -> None:
        """The photo moved on: what was compared no longer is what the history holds."""
        if self._canvas.comparing:
            self.setVisible(False)
            self._history_panel.set_comparing(False)
