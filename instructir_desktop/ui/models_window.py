"""Settings → Models: the model store in a window. Lists every model, adds files (a file dialog, or
a file dropped on the window), removes them, and chooses the model that serves each task.

It renders ``editing.models.ModelChoices`` and sends it what the person does; what a file is, and
whether it may be added, is decided there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.editing.engine_client import EngineClient
from instructir_desktop.editing.models import (
    MODEL_FILE_SUFFIXES,
    AddReport,
    ModelChoiceError,
    ModelChoices,
    add_files,
    add_files_on_worker,
)
from instructir_desktop.model.tasks import TASK_TITLES, TASKS

COLUMNS = ("Name", "Architecture", "Scale", "Tasks", "Default for", "Source")
DETECT = ""  # the task combo's "detect it from the file"


class ModelsWindow(QDialog):
    added = Signal(object)  # the AddReport of files added (from the dialog or dropped)

    def __init__(
        self, choices: ModelChoices, parent: QWidget | None = None, client: EngineClient | None = None
    ) -> None:
        super().__init__(parent)
        self.choices = choices
        # Files are read on the engine's worker when there is one (they take torch and seconds).
        self.client = client
        self.adding = False
        self.setWindowTitle("Models")
        self.setAcceptDrops(True)
        self.resize(760, 480)
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Each step of a plan runs on its task's model. Add a network you trust (.safetensors or .pth: "
            "SwinIR, SCUNet, NAFNet, SPAN, Real-ESRGAN, FFDNet, …) with Add or by dropping its file here, "
            "then choose it below. “models check” on the command line measures it first."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        layout.addWidget(self.table, 1)

        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add…")
        self.add_button.clicked.connect(self.choose_files)
        self.task_choice = QComboBox()
        self.task_choice.addItem("Task: detect from the file", DETECT)
        for task in TASKS:
            self.task_choice.addItem(f"Task: {TASK_TITLES[task]}", task)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setEnabled(False)
        self.remove_button.clicked.connect(self.remove_selected)
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.task_choice)
        buttons.addStretch(1)
        buttons.addWidget(self.remove_button)
        layout.addLayout(buttons)

        defaults = QFormLayout()
        self.default_choices: dict[str, QComboBox] = {}
        for task in TASKS:
            combo = QComboBox()
            combo.activated.connect(lambda _index, task=task: self._default_chosen(task))
            self.default_choices[task] = combo
            defaults.addRow(f"{TASK_TITLES[task]} runs on", combo)
        layout.addLayout(defaults)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout.addWidget(close)
        self.refresh()

    # ------------------------------------------------------------------ drawing

    def refresh(self) -> None:
        try:
            models = self.choices.models()
        except ModelChoiceError as error:
            self.say(str(error))
            return
        self.table.setRowCount(len(models))
        for row, model in enumerate(models):
            cells = (
                model.name,
                model.architecture,
                f"×{model.scale}",
                ", ".join(TASK_TITLES[task] for task in model.tasks if task in TASK_TITLES),
                ", ".join(TASK_TITLES[task] for task in model.default_for if task in TASK_TITLES),
                "built in" if model.bundled else model.source_file or "added",
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, model.id)
                self.table.setItem(row, column, item)
        for task, combo in self.default_choices.items():
            combo.blockSignals(True)
            combo.clear()
            for model in models:
                if task in model.tasks:
                    combo.addItem(model.label, model.id)
                    if task in model.default_for:
                        combo.setCurrentIndex(combo.count() - 1)
            combo.blockSignals(False)
        self._selection_changed()

    def say(self, text: str) -> None:
        self.status.setText(text)

    @property
    def selected_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return None if item is None else str(item.data(Qt.ItemDataRole.UserRole))

    def row_of(self, model_id: str) -> int:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == model_id:
                return row
        raise KeyError(model_id)

    def _selection_changed(self) -> None:
        self.remove_button.setEnabled(self.selected_id not in (None, "bundled"))

    # ------------------------------------------------------------------ what the person does

    def choose_files(self) -> None:
        patterns = " ".join(f"*{suffix}" for suffix in MODEL_FILE_SUFFIXES)
        paths, _ = QFileDialog.getOpenFileNames(self, "Add models", "", f"Model weights ({patterns})")
        if paths:
            self.add_files(paths)

    def add_files(self, paths: Sequence[str | Path]) -> None:
        """Add each file; when done, the list is redrawn and the status line says what happened to
        each (``added`` is emitted with the report)."""
        task = str(self.task_choice.currentData() or DETECT)
        tasks = (task,) if task else ()
        self.adding = True
        self.add_button.setEnabled(False)
        self.say("Reading " + ", ".join(Path(path).name for path in paths) + "…")
        if self.client is None:
            self._added(add_files(self.choices, paths, tasks))
        else:
            add_files_on_worker(self.client, self.choices, paths, tasks, self._added)

    def _added(self, report: AddReport) -> None:
        self.adding = False
        self.add_button.setEnabled(True)
        self.refresh()
        self.say("\n".join(report.lines))
        self.added.emit(report)

    def remove_selected(self) -> None:
        model_id = self.selected_id
        if model_id is None:
            return
        try:
            removed = self.choices.remove(model_id)
        except ModelChoiceError as error:
            self.say(str(error))
            return
        self.refresh()
        self.say(f"Removed {removed.label}; its tasks run on the built-in model again.")

    def _default_chosen(self, task: str) -> None:
        combo = self.default_choices[task]
        model_id = combo.currentData()
        if model_id is None:
            return
        try:
            chosen = self.choices.set_default(task, str(model_id))
        except ModelChoiceError as error:
            self.say(str(error))
        else:
            self.say(f"{TASK_TITLES[task]} now runs on {chosen.label}.")
        self.refresh()

    def choose_default(self, task: str, model_id: str) -> None:
        """As if the person picked ``model_id`` in ``task``'s list."""
        combo = self.default_choices[task]
        index = combo.findData(model_id)
        if index < 0:
            raise KeyError(f"{model_id} does not serve {task}")
        combo.setCurrentIndex(index)
        combo.activated.emit(index)

    # ------------------------------------------------------------------ drop a file on the window

    @staticmethod
    def dropped_files(event: QDragEnterEvent | QDropEvent) -> list[str]:
        """The model files among what is dragged (the main window sends them here too)."""
        mime = event.mimeData()
        if not mime.hasUrls():
            return []
        return [
            url.toLocalFile()
            for url in mime.urls()
            if url.isLocalFile() and Path(url.toLocalFile()).suffix.lower() in MODEL_FILE_SUFFIXES
        ]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.dropped_files(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        files = self.dropped_files(event)
        if files:
            event.acceptProposedAction()
            self.add_files(files)
        else:
            event.ignore()
