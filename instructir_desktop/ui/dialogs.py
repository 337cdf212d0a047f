"""The window's dialogs: settings and about (the export dialog is in export_dialog.py).

Each is opened with ``open()`` (window-modal, no nested event loop) and read back through plain
methods, so tests drive them without a person.
"""

from __future__ import annotations

from importlib import metadata as importlib_metadata
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.core.logs import log_file
from instructir_desktop.inference.backends import BACKENDS
from instructir_desktop.inference.requests import EngineSettings
from instructir_desktop.instructions.intent import DEFAULT_CONFIDENCE_THRESHOLD, MIN_TASK_PROBABILITY
from instructir_desktop.io import max_pixels
from instructir_desktop.ui.preferences import DEVICES, PRECISIONS

LICENCE = "MIT licence. Runs entirely on this computer: no photo or instruction leaves it."
PACKAGE = "instructir-desktop"


def program_version() -> str:
    try:
        return importlib_metadata.version(PACKAGE)
    except importlib_metadata.PackageNotFoundError:
        return "unknown (not installed)"


class FolderField(QWidget):
    """A folder path with a Browse… button; empty means the default."""

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)

    def browse(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Choose a folder", self.edit.text())
        if name:
            self.edit.setText(name)

    def value(self) -> str | None:
        return self.edit.text().strip() or None

    def set_value(self, value: str | None) -> None:
        self.edit.setText(value or "")


class SettingsDialog(QDialog):
    """Device, precision, backend, tile size, model and encoder folders, autosave interval, new layer vs
    replace, and the largest photo that opens (a guard against decompression bombs)."""

    def __init__(
        self,
        settings: EngineSettings,
        autosave_seconds: int,
        new_layer: bool,
        parent: QWidget | None = None,
        ask_below: float = DEFAULT_CONFIDENCE_THRESHOLD,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self._base = settings
        form = QFormLayout()
        self.device_box = QComboBox()
        self.device_box.addItems(list(DEVICES))
        self.precision_box = QComboBox()
        self.precision_box.addItems(list(PRECISIONS))
        self.backend_box = QComboBox()
        self.backend_box.addItems(list(BACKENDS))
        self.backend_box.setToolTip("auto: ONNX Runtime on the CPU (faster there), torch on a GPU")
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 8192)
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setSpecialValueText("auto")
        self.tile_spin.setSuffix(" px")
        self.model_field = FolderField("the bundled model")
        self.encoder_field = FolderField("the model's own text encoder")
        self.autosave_spin = QSpinBox()
        self.autosave_spin.setRange(0, 3600)
        self.autosave_spin.setSingleStep(15)
        self.autosave_spin.setSpecialValueText("off")
        self.autosave_spin.setSuffix(" s")
        self.pixels_spin = QSpinBox()
        self.pixels_spin.setRange(1, 2000)
        self.pixels_spin.setSingleStep(50)
        self.pixels_spin.setSuffix(" megapixels")
        self.pixels_spin.setValue(max(1, round(max_pixels() / 1_000_000)))
        self.ask_spin = QSpinBox()
        self.ask_spin.setRange(round(MIN_TASK_PROBABILITY * 100), 100)  # lower would change nothing
        self.ask_spin.setSingleStep(5)
        self.ask_spin.setSuffix(" % sure")
        self.ask_spin.setToolTip(
            "A step the model is less sure of than this is offered as a suggestion to press, not run"
        )
        self.ask_spin.setValue(round(ask_below * 100))
        self.new_layer_box = QComboBox()
        self.new_layer_box.addItem("Replace the active layer", False)
        self.new_layer_box.addItem("Add a new layer", True)
        form.addRow("Device:", self.device_box)
        form.addRow("Precision:", self.precision_box)
        form.addRow("Backend:", self.backend_box)
        form.addRow("Tile size:", self.tile_spin)
        form.addRow("Model folder:", self.model_field)
        form.addRow("Text encoder folder:", self.encoder_field)
        # Settings → Models: the window of added networks and the model for each task.
        self.models_button = QPushButton("Models…")
        self.models_button.setToolTip("Add restoration networks and choose the one that runs each task")
        form.addRow("Models per task:", self.models_button)
        form.addRow("Autosave every:", self.autosave_spin)
        form.addRow("A restoration:", self.new_layer_box)
        form.addRow("Largest photo to open:", self.pixels_spin)
        form.addRow("Ask first when below:", self.ask_spin)
        note = QLabel(
            "A new device, precision, backend or model takes effect from the next restoration (the model reloads)."
        )
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.set_values(settings, autosave_seconds, new_layer)

    def set_values(self, settings: EngineSettings, autosave_seconds: int, new_layer: bool) -> None:
        self._base = settings
        self.device_box.setCurrentText(settings.device if settings.device in DEVICES else "auto")
        self.precision_box.setCurrentText(settings.precision if settings.precision in PRECISIONS else "auto")
        self.backend_box.setCurrentText(settings.backend if settings.backend in BACKENDS else "auto")
        self.tile_spin.setValue(settings.tile_size)
        self.model_field.set_value(settings.model_folder)
        self.encoder_field.set_value(settings.encoder)
        self.autosave_spin.setValue(autosave_seconds)
        self.new_layer_box.setCurrentIndex(1 if new_layer else 0)

    def engine_settings(self) -> EngineSettings:
        base = self._base
        model_folder = self.model_field.value()
        return EngineSettings(
            device=self.device_box.currentText(),
            precision=self.precision_box.currentText(),
            backend=self.backend_box.currentText(),
            tile_size=self.tile_spin.value(),
            model_folder=model_folder,
            # A separate weights file only belongs to the model it was given with.
            weights=base.weights if model_folder == base.model_folder else None,
            text_head=base.text_head if model_folder == base.model_folder else None,
            encoder=self.encoder_field.value(),
        )

    def autosave_seconds(self) -> int:
        return self.autosave_spin.value()

    def max_pixels(self) -> int:
        return self.pixels_spin.value() * 1_000_000

    def ask_below(self) -> float:
        return self.ask_spin.value() / 100

    def new_layer(self) -> bool:
        return bool(self.new_layer_box.currentData())


def about_text(model_name: str, device: str) -> str:
    return (
        f"<h3>InstructIR Desktop {program_version()}</h3>"
        "<p>Offline photo restoration driven by plain-language instructions.</p>"
        f"<p>Model: {model_name}<br>Device: {device}</p>"
        f"<p>{LICENCE}</p>"
    )


class AboutDialog(QDialog):
    """Version, model, device and licence; and the log file where the details of every failure
    go (the one-line messages point here), with a button that opens it."""

    def __init__(self, model_name: str, device: str, parent: QWidget | None = None, log: Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About InstructIR Desktop")
        self.log_path = log if log is not None else log_file()
        self.label = QLabel(about_text(model_name, device))
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setWordWrap(True)
        logged = self.log_path.is_file()
        self.log_label = QLabel(
            f"Log of problems: {self.log_path}" if logged else f"Nothing has been logged yet ({self.log_path})."
        )
        self.log_label.setWordWrap(True)
        self.log_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.open_log_button = QPushButton("Open Log File")
        self.open_log_button.setEnabled(logged)
        self.open_log_button.clicked.connect(self.open_log)
        buttons.addButton(self.open_log_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.log_label)
        layout.addWidget(buttons)

    def open_log(self) -> bool:
        """Open the log in the desktop's text viewer."""
        return bool(QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_path))))
