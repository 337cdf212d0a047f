"""The window's dialogs: export options, settings, about.

Each is opened with ``open()`` (window-modal, no nested event loop) and read back through plain
methods, so tests drive them without a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

from PySide6.QtCore import Qt
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
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.inference.backends import BACKENDS
from instructir_desktop.inference.requests import EngineSettings
from instructir_desktop.io import ImageMetadata
from instructir_desktop.ui.preferences import DEVICES, PRECISIONS

# format name → (label, extensions, quality applies, 16-bit possible)
EXPORT_FORMATS: dict[str, tuple[str, tuple[str, ...], bool, bool]] = {
    "JPEG": ("JPEG", (".jpg", ".jpeg"), True, False),
    "PNG": ("PNG", (".png",), False, True),
    "TIFF": ("TIFF", (".tif", ".tiff"), False, True),
    "WEBP": ("WebP", (".webp",), True, False),
}
EXPORT_FILTER = ";;".join(
    f"{label} ({' '.join('*' + ext for ext in extensions)})" for label, extensions, _, _ in EXPORT_FORMATS.values()
)
LICENCE = "MIT licence. Runs entirely on this computer: no photo or instruction leaves it."
PACKAGE = "instructir-desktop"


def format_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    for name, (_, extensions, _, _) in EXPORT_FORMATS.items():
        if suffix in extensions:
            return name
    return None


def program_version() -> str:
    try:
        return importlib_metadata.version(PACKAGE)
    except importlib_metadata.PackageNotFoundError:
        return "unknown (not installed)"


@dataclass(frozen=True)
class ExportOptions:
    path: Path
    format: str
    quality: int
    bit_depth: int


class ExportDialog(QDialog):
    """File name, format (follows the extension, and the other way round), JPEG/WebP quality, bit depth."""

    def __init__(self, suggested: Path, metadata: ImageMetadata | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.metadata = metadata
        form = QFormLayout()
        self.path_edit = QLineEdit(str(suggested))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        row = QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        form.addRow("File:", row)
        self.format_box = QComboBox()
        for name, (label, _, _, _) in EXPORT_FORMATS.items():
            self.format_box.addItem(label, name)
        form.addRow("Format:", self.format_box)
        self.quality_slider = QSlider(Qt.Orientation.Horizontal)
        self.quality_slider.setRange(1, 100)
        self.quality_slider.setValue(92)
        self.quality_label = QLabel()
        self.quality_slider.valueChanged.connect(lambda value: self.quality_label.setText(f"{value}"))
        quality_row = QHBoxLayout()
        quality_row.addWidget(self.quality_slider, 1)
        quality_row.addWidget(self.quality_label)
        form.addRow("Quality:", quality_row)
        self.depth_box = QComboBox()
        self.depth_box.addItem("8 bits per channel", 8)
        self.depth_box.addItem("16 bits per channel", 16)
        form.addRow("Bit depth:", self.depth_box)
        kept = []
        if metadata is not None:
            kept += ["EXIF"] if metadata.exif else []
            kept += ["ICC profile"] if metadata.icc_profile else []
            kept += ["XMP"] if metadata.xmp else []
        self.metadata_label = QLabel(
            f"Keeps the photo's {', '.join(kept)}." if kept else "The source photo carried no EXIF or colour profile."
        )
        self.metadata_label.setWordWrap(True)
        form.addRow("", self.metadata_label)
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #c0392b;")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.quality_label.setText(str(self.quality_slider.value()))
        self.path_edit.textChanged.connect(self._path_changed)
        self.format_box.currentIndexChanged.connect(self._format_chosen)
        self._path_changed()
        source_depth = metadata.bit_depth if metadata is not None else 8
        self.depth_box.setCurrentIndex(1 if source_depth == 16 and self.depth_box.isEnabled() else 0)

    @property
    def path(self) -> Path:
        return Path(self.path_edit.text().strip())

    def browse(self) -> None:
        name, _ = QFileDialog.getSaveFileName(self, "Export", str(self.path), EXPORT_FILTER)
        if name:
            self.path_edit.setText(name)

    def _path_changed(self) -> None:
        fmt = format_of(self.path)
        ok = fmt is not None and bool(self.path.stem)
        if fmt is not None:
            self.format_box.blockSignals(True)
            self.format_box.setCurrentIndex(self.format_box.findData(fmt))
            self.format_box.blockSignals(False)
        self.error_label.setText("" if ok else "Name the file with .jpg, .png, .tif or .webp.")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)
        self._update_controls()

    def _format_chosen(self) -> None:
        """Choosing a format renames the file to its extension (format follows the name, name follows the format)."""
        fmt = self.format_box.currentData()
        if format_of(self.path) != fmt and self.path_edit.text().strip():
            self.path_edit.setText(str(self.path.with_suffix(EXPORT_FORMATS[fmt][1][0])))
        self._update_controls()

    def _update_controls(self) -> None:
        _, _, lossy, deep = EXPORT_FORMATS[self.format_box.currentData()]
        self.quality_slider.setEnabled(lossy)
        self.depth_box.setEnabled(deep)
        if not deep:
            self.depth_box.setCurrentIndex(0)

    def options(self) -> ExportOptions:
        fmt = self.format_box.currentData()
        _, _, lossy, deep = EXPORT_FORMATS[fmt]
        return ExportOptions(
            self.path, fmt, self.quality_slider.value() if lossy else 95, self.depth_box.currentData() if deep else 8
        )


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
    """Device, precision, backend, tile size, model and encoder folders, autosave interval, new layer vs replace."""

    def __init__(
        self, settings: EngineSettings, autosave_seconds: int, new_layer: bool, parent: QWidget | None = None
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
        self.new_layer_box = QComboBox()
        self.new_layer_box.addItem("Replace the active layer", False)
        self.new_layer_box.addItem("Add a new layer", True)
        form.addRow("Device:", self.device_box)
        form.addRow("Precision:", self.precision_box)
        form.addRow("Backend:", self.backend_box)
        form.addRow("Tile size:", self.tile_spin)
        form.addRow("Model folder:", self.model_field)
        form.addRow("Text encoder folder:", self.encoder_field)
        form.addRow("Autosave every:", self.autosave_spin)
        form.addRow("A restoration:", self.new_layer_box)
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
    def __init__(self, model_name: str, device: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About InstructIR Desktop")
        self.label = QLabel(about_text(model_name, device))
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(buttons)
