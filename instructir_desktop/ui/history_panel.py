"""The history panel: every step with its thumbnail, instruction, tasks, strength and time; compare two steps.

Row 0 is the photo as opened, row i the state after step i (the history's own index), so a row
number can be handed straight to ``History.set_index`` and ``History.image_at``. Alternatives
(steps undone and then replaced by another instruction) are listed under the steps, to switch to;
the compare choices offer their ends too (``History.tip_state``).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QIcon, QPalette, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.editing.models import added_models_in
from instructir_desktop.editing.workspace import branch_name
from instructir_desktop.history import History, Step
from instructir_desktop.model.tasks import TASK_TITLES
from instructir_desktop.ui.qimages import rgba_to_qimage

ICON_SIZE = QSize(64, 64)


def describe_history_step(step: Step) -> str:
    """The step's words and, for a restoration, its tasks, strength, time and the added models that
    ran it (the built-in one is not named). A plugin action's
    tasks are its internal id: its label already names it, so only the model's tasks are listed."""
    if not step.tasks and not step.can_reblend:
        return step.label  # a layer command ("Merge down"): no tasks, strength or time to speak of
    tasks = ", ".join(TASK_TITLES[task] for task in step.tasks if task in TASK_TITLES)
    added = added_models_in(step.model_id)
    on_models = f"on {', '.join(added)}" if added else ""
    details = [
        part for part in (tasks, f"strength {round(step.strength * 100)}%", f"{step.seconds:.1f} s", on_models) if part
    ]
    return f"{step.label}\n{' · '.join(details)}"


class HistoryPanel(QWidget):
    index_chosen = Signal(int)  # show the state after this many steps
    compare_requested = Signal(int, int)
    compare_closed = Signal()
    branch_chosen = Signal(int)  # continue from this alternative

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("historyPanel")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.list = QListWidget()
        self.list.setIconSize(ICON_SIZE)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setWordWrap(True)
        self.list.itemClicked.connect(self._clicked)
        layout.addWidget(self.list, 1)

        self.branches = QWidget()
        branch_row = QHBoxLayout(self.branches)
        branch_row.setContentsMargins(0, 0, 0, 0)
        branch_row.addWidget(QLabel("Alternatives"))
        self.branch_choice = QComboBox()
        self.branch_choice.setToolTip("Steps you undid and then replaced with another instruction")
        branch_row.addWidget(self.branch_choice, 1)
        self.switch_button = QPushButton("Switch")
        self.switch_button.setToolTip("Continue from this alternative; the current steps become one")
        self.switch_button.clicked.connect(self._switch_clicked)
        branch_row.addWidget(self.switch_button)
        layout.addWidget(self.branches)
        self.branches.setVisible(False)

        row = QHBoxLayout()
        row.addWidget(QLabel("Compare"))
        self.left_choice = QComboBox()
        self.right_choice = QComboBox()
        row.addWidget(self.left_choice, 1)
        row.addWidget(QLabel("with"))
        row.addWidget(self.right_choice, 1)
        layout.addLayout(row)
        self.compare_button = QPushButton("Compare")
        self.compare_button.setCheckable(True)
        self.compare_button.toggled.connect(self._compare_toggled)
        layout.addWidget(self.compare_button)
        self._thumbnails: dict[int, tuple[np.ndarray, QIcon]] = {}  # id(thumbnail) → (thumbnail, icon)
        self._refreshing = False
        self._last_index = 0

    def refresh(self, history: History | None, original_thumbnail: np.ndarray | None = None) -> None:
        self._refreshing = True
        try:
            self._fill(history, original_thumbnail)
        finally:
            self._refreshing = False

    def _fill(self, history: History | None, original_thumbnail: np.ndarray | None) -> None:
        self.list.clear()
        left, right = self.left_choice.currentIndex(), self.right_choice.currentIndex()
        self.left_choice.clear()
        self.right_choice.clear()
        self.branch_choice.clear()
        if history is None:
            self.branches.setVisible(False)
            self.setEnabled(False)
            return
        self.setEnabled(True)
        names = ["Original photo"]
        original = QListWidgetItem("Original photo")
        live: dict[int, tuple[np.ndarray, QIcon]] = {}
        if original_thumbnail is not None:
            original.setIcon(self._icon(original_thumbnail, live))
        self.list.addItem(original)
        dimmed = QBrush(self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
        for number, step in enumerate(history.steps, start=1):
            item = QListWidgetItem(self._icon(step.thumbnail, live), describe_history_step(step))
            item.setToolTip(f"Step {number}: {step.label}")
            if not history.oldest_index <= number <= history.newest_index:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
                item.setToolTip("Dropped to keep the history within its memory limit")
            elif number > history.index:
                item.setForeground(dimmed)  # undone: still there for redo
            self.list.addItem(item)
            names.append(f"{number}. {step.label}")
        self._thumbnails = live
        self.list.setCurrentRow(history.index)
        self.branch_choice.clear()
        for number in range(len(history.branches)):
            name = branch_name(history, number)
            self.branch_choice.addItem(name, number)
            names.append(name)  # its end, to compare: index ``history.tip_state(number)``
        self.branches.setVisible(bool(history.branches))
        for index, name in enumerate(names):
            self.left_choice.addItem(name, index)
            self.right_choice.addItem(name, index)
        # Keep the person's choice; by default compare the original with the current state.
        self.left_choice.setCurrentIndex(left if 0 <= left < len(names) else 0)
        # The right side follows the current state unless the person picked another step.
        follows = not 0 <= right < len(names) or right == self._last_index
        self.right_choice.setCurrentIndex(history.index if follows else right)
        self._last_index = history.index

    def _icon(self, thumbnail: np.ndarray, live: dict[int, tuple[np.ndarray, QIcon]]) -> QIcon:
        """The icon of a thumbnail, converted once. The cache holds the array itself, so its id
        cannot be reused by another array while the entry exists."""
        cached = self._thumbnails.get(id(thumbnail))
        if cached is not None and cached[0] is thumbnail:
            icon = cached[1]
        else:
            icon = QIcon(QPixmap.fromImage(rgba_to_qimage(thumbnail)))
        live[id(thumbnail)] = (thumbnail, icon)
        return icon

    def choose_compare(self, left: int, right: int) -> None:
        self.left_choice.setCurrentIndex(left)
        self.right_choice.setCurrentIndex(right)

    @property
    def comparing(self) -> bool:
        """The compare button is down: two history states are on the canvas."""
        return self.compare_button.isChecked()

    def set_comparing(self, comparing: bool) -> None:
        self.compare_button.blockSignals(True)
        self.compare_button.setChecked(comparing)
        self.compare_button.blockSignals(False)

    def _clicked(self, item: QListWidgetItem) -> None:
        if not self._refreshing:
            self.index_chosen.emit(self.list.row(item))

    def _switch_clicked(self) -> None:
        number = self.branch_choice.currentIndex()
        if number >= 0:
            self.branch_chosen.emit(number)

    def _compare_toggled(self, on: bool) -> None:
        if on:
            self.compare_requested.emit(self.left_choice.currentIndex(), self.right_choice.currentIndex())
        else:
            self.compare_closed.emit()
