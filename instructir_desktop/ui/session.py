"""The open photo: document, undo history, where it came from, and how to apply a restoration.

A thin Qt wrapper around the Qt-free ``Document`` and ``History``: every change goes through
here so that one ``changed`` signal tells the canvas and the history panel to refresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from instructir_desktop.core.document import Document, Layer
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.history import History, HistoryError, Restoration, Step, load_project, save_project
from instructir_desktop.inference.requests import RestoreResult
from instructir_desktop.io import ImageMetadata, read_image, write_image

PROJECT_SUFFIX = ".irproject"


def _enlarge(values: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of the layers an upscale did not restore (numpy only on the GUI thread)."""
    return np.repeat(np.repeat(values, factor, axis=0), factor, axis=1)


class Session(QObject):
    changed = Signal()  # the document's pixels or the history moved
    opened = Signal()  # a new photo or project replaced everything

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.history: History | None = None
        self.path: Path | None = None  # the photo (or project) it was opened from
        self.project_path: Path | None = None
        self.metadata: ImageMetadata | None = None  # the source photo's, kept for export
        # The history keeps a thumbnail per step, not of the photo as opened: made once here.
        self.original_thumbnail: np.ndarray | None = None

    @property
    def document(self) -> Document | None:
        return None if self.history is None else self.history.document

    @property
    def modified(self) -> bool:
        return self.history is not None and not self.history.is_clean

    # ------------------------------------------------------------------ files

    def open_image(self, path: Path) -> None:
        """Raises ImageReadError; the current photo is kept then."""
        image = read_image(path)
        document = Document.from_image(image.rgb, image.alpha, name=path.stem)
        self.history = History(document)
        self.path = path
        self.project_path = None
        self.metadata = image.metadata
        self.original_thumbnail = document.thumbnail()
        self.opened.emit()
        self.changed.emit()

    def open_project(self, path: Path) -> None:
        """Raises ProjectError; the current photo is kept then."""
        history = load_project(path)
        history.set_clean()
        try:
            thumbnail: np.ndarray | None = history.state_at(0).thumbnail()
        except HistoryError:  # the first steps were dropped to save memory
            thumbnail = None
        self.history = history
        self.path = path
        self.project_path = path
        self.metadata = None  # a project does not carry the source's EXIF yet
        self.original_thumbnail = thumbnail
        self.opened.emit()
        self.changed.emit()

    def save_project(self, path: Path) -> None:
        assert self.history is not None
        save_project(path, self.history)
        self.project_path = path
        self.changed.emit()

    def export(self, path: Path, *, quality: int = 95, bit_depth: int | None = None) -> Path:
        """Write the flattened image with the source's metadata (EXIF, ICC, XMP, DPI). Raises ImageWriteError.

        The work now exists outside the program, so closing no longer asks about unsaved changes.
        """
        assert self.history is not None
        rgb, alpha = self.history.document.flatten()
        written = write_image(path, rgb, alpha, metadata=self.metadata, quality=quality, bit_depth=bit_depth)
        self.history.set_clean()
        self.changed.emit()
        return written

    # ------------------------------------------------------------------ history

    def undo(self) -> bool:
        if self.history is None or not self.history.can_undo:
            return False
        self.history.undo()
        self.changed.emit()
        return True

    def redo(self) -> bool:
        if self.history is None or not self.history.can_redo:
            return False
        self.history.redo()
        self.changed.emit()
        return True

    def set_index(self, index: int) -> None:
        """Show the state after ``index`` steps (HistoryError if it was dropped to save memory)."""
        assert self.history is not None
        if index != self.history.index:
            self.history.set_index(index)
            self.changed.emit()

    def apply_action_result(
        self, pixels: np.ndarray, layer_id: str, *, label: str, action_id: str, seconds: float
    ) -> Step | None:
        """A plugin action's result (already composited through the selection) as one undoable step.

        Only the rectangle that changed is stored, so a local edit costs a local patch.
        """
        assert self.history is not None
        layer = self.history.document.layer(layer_id)
        bounds = Bounds.of_difference(layer.pixels, pixels)
        if bounds is None:
            return None  # the action changed nothing: no empty step in the history
        restoration = Restoration(layer.pixels[bounds.slices], pixels[bounds.slices], None, 1.0)
        step = self.history.push_restoration(
            layer_id, bounds, restoration, label=label, tasks=(action_id,), seconds=seconds, model_id=action_id
        )
        self.changed.emit()
        return step

    def apply_restoration(
        self, result: RestoreResult, layer_id: str, *, label: str, tasks: Sequence[str], strength: float
    ) -> Step | None:
        """Apply a finished restoration as one undoable step (the caller has checked it is not stale)."""
        assert self.history is not None
        document = self.history.document
        restoration = Restoration(result.original, result.restored, result.mask, strength)
        if result.scale == 1:
            step: Step | None = self.history.push_restoration(
                layer_id,
                result.bounds,
                restoration,
                label=label,
                tasks=tuple(tasks),
                seconds=result.seconds,
                model_id=result.model_id,
            )
        else:
            # An upscale changes the canvas size: every layer is replaced, the restored one by the result.
            layers = []
            for layer in document.layers:
                if layer.id == layer_id:
                    alpha = None if result.alpha is None else np.array(result.alpha, dtype=np.float32)
                    pixels = np.array(result.pixels, dtype=np.float32)
                else:
                    alpha = None if layer.alpha is None else _enlarge(layer.alpha, result.scale)
                    pixels = _enlarge(layer.pixels, result.scale)
                layers.append(
                    Layer(
                        pixels,
                        alpha,
                        name=layer.name,
                        opacity=layer.opacity,
                        visible=layer.visible,
                        blend_mode=layer.blend_mode,
                        id=layer.id,
                    )
                )
            step = self.history.push_layers(
                layers,
                document.active_index,
                restoration=restoration,
                restored_layer_id=layer_id,
                label=label,
                tasks=tuple(tasks),
                seconds=result.seconds,
                model_id=result.model_id,
            )
        self.changed.emit()
        return step
