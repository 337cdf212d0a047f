"""The export dialog: file, format (follows the extension, and the other way round), quality, bit depth,
keep or strip metadata, keep the photo's colour profile or convert to sRGB.

What each format can hold comes from ``io.WRITE_FORMATS``; the dialog only renders it. Opened with
``open()`` (window-modal, no nested event loop) and read back through ``options()``, so tests drive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
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
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.io import WRITE_FORMATS, ImageMetadata
from instructir_desktop.io.colour import needs_conversion, profile_name

EXPORT_FILTER = ";;".join(f"{f.label} ({' '.join('*' + e for e in f.extensions)})" for f in WRITE_FORMATS.values())


def format_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return next((name for name, f in WRITE_FORMATS.items() if suffix in f.extensions), None)


def default_suffix(metadata: ImageMetadata | None) -> str:
    """The suggested extension: the source's format where it can be written, else TIFF for deep sources."""
    if metadata is not None and metadata.format in WRITE_FORMATS:
        return WRITE_FORMATS[metadata.format].extensions[0]
    return ".tif" if metadata is not None and metadata.bit_depth == 16 else ".png"


@dataclass(frozen=True)
class ExportOptions:
    path: Path
    format: str
    quality: int
    bit_depth: int
    keep_metadata: bool = True
    colour_profile: str = "original"


class ExportDialog(QDialog):
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
        for name, info in WRITE_FORMATS.items():
            self.format_box.addItem(info.label, name)
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
        self.metadata_box = QCheckBox(self._metadata_text())
        self.metadata_box.setChecked(True)
        self.metadata_box.setEnabled(self._carried_metadata() != [])
        form.addRow("Metadata:", self.metadata_box)
        self.profile_box = QComboBox()
        wide = metadata is not None and needs_conversion(metadata.icc_profile)
        name = profile_name(metadata.icc_profile) if wide and metadata and metadata.icc_profile else "sRGB"
        self.profile_box.addItem(f"Keep the photo's profile ({name})", "original")
        self.profile_box.addItem("Convert to sRGB", "srgb")
        self.profile_box.setEnabled(wide)
        form.addRow("Colour profile:", self.profile_box)
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

    def _carried_metadata(self) -> list[str]:
        m = self.metadata
        if m is None:
            return []
        return [name for name, data in (("EXIF", m.exif), ("XMP", m.xmp)) if data]

    def _metadata_text(self) -> str:
        kept = self._carried_metadata()
        if not kept:
            return "The source photo carried no EXIF or XMP."
        camera = self.metadata.camera if self.metadata is not None else None
        about = f" ({camera.describe()})" if camera is not None and camera.describe() else ""
        return f"Keep the photo's {' and '.join(kept)}{about}"

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
        self.error_label.setText("" if ok else "Name the file with .jpg, .png, .tif, .webp, .heic or .avif.")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)
        self._update_controls()

    def _format_chosen(self) -> None:
        """Choosing a format renames the file to its extension (format follows the name, name follows the format)."""
        fmt = self.format_box.currentData()
        if format_of(self.path) != fmt and self.path_edit.text().strip():
            self.path_edit.setText(str(self.path.with_suffix(WRITE_FORMATS[fmt].extensions[0])))
        self._update_controls()

    def _update_controls(self) -> None:
        info = WRITE_FORMATS[self.format_box.currentData()]
        self.quality_slider.setEnabled(info.lossy)
        deep = 16 in info.depths
        self.depth_box.setEnabled(deep)
        if not deep:
            self.depth_box.setCurrentIndex(0)

    def options(self) -> ExportOptions:
        fmt = self.format_box.currentData()
        info = WRITE_FORMATS[fmt]
        return ExportOptions(
            self.path,
            fmt,
            self.quality_slider.value() if info.lossy else 95,
            self.depth_box.currentData() if 16 in info.depths else 8,
            keep_metadata=self.metadata_box.isChecked(),
            colour_profile=str(self.profile_box.currentData()),
        )
