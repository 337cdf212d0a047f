"""The open photo: document, undo history, where it came from, and how to apply a restoration.

A thin Qt wrapper around the Qt-free ``Document`` and ``History``: every change goes through
here so that one ``changed`` signal tells the canvas and the history panel to refresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from instructir_desktop.core.document import Document, Layer
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.selection import Selection
from instructir_desktop.history import (
    History,
    HistoryError,
    Restoration,
    SavedState,
    Step,
    read_project,
    save_project,
)
from instructir_desktop.inference.requests import RestoreResult
from instructir_desktop.io import ImageMetadata, read_image, write_image

PROJECT_SUFFIX = ".irproject"
# Project attachments (``history.project`` "extra"): the source photo's metadata, so that an export
# after reopening a project still carries its EXIF/ICC/XMP and bit depth; and, in an autosave, where
# the work came from.
SOURCE_KEY = "source.json"
EXIF_KEY, ICC_KEY, XMP_KEY = "source.exif", "source.icc", "source.xmp"


def metadata_attachments(metadata: ImageMetadata | None) -> dict[str, bytes]:
    if metadata is None:
        return {}
    attachments = {
        key: data
        for key, data in ((EXIF_KEY, metadata.exif), (ICC_KEY, metadata.icc_profile), (XMP_KEY, metadata.xmp))
        if data
    }
    description = {
        "format": metadata.format,
        "source_mode": metadata.source_mode,
        "bit_depth": metadata.bit_depth,
        "grayscale": metadata.grayscale,
        "dpi": None if metadata.dpi is None else list(metadata.dpi),
    }
    attachments["source-metadata.json"] = json.dumps(description).encode("utf-8")
    return attachments


def metadata_from_attachments(extra: dict[str, bytes]) -> ImageMetadata | None:
    """The metadata saved by ``metadata_attachments`` (None: the project has none, or it is unreadable)."""
    raw = extra.get("source-metadata.json")
    if raw is None:
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
        dpi = record.get("dpi")
        bit_depth = int(record["bit_depth"])
        return ImageMetadata(
            format=str(record["format"]),
            source_mode=str(record["source_mode"]),
            bit_depth=bit_depth if bit_depth in (8, 16) else 8,
            grayscale=bool(record["grayscale"]),
            exif=extra.get(EXIF_KEY),
            icc_profile=extra.get(ICC_KEY),
            xmp=extra.get(XMP_KEY),
            dpi=None if not dpi else (float(dpi[0]), float(dpi[1])),
        )
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None  # the pixels are what matters; an export then simply carries no metadata


def _enlarge(values: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of the layers an upscale did not restore (numpy only on the GUI thread)."""
    return np.repeat(np.repeat(values, factor, axis=0), factor, axis=1)


@dataclass(frozen=True)
class PendingSave:
    """Which history, in which state, a project save running on another thread holds."""

    history: History
    state: SavedState


@dataclass(frozen=True)
class OpenedFile:
    """A photo or project read from disk, ready for ``Session.adopt``."""

    history: History
    path: Path | None  # the photo it came from
    project_path: Path | None
    metadata: ImageMetadata | None
    thumbnail: np.ndarray | None  # the original's, for the history panel
    notices: tuple[str, ...] = ()  # what reading the photo dropped or changed, to tell the person


def load_file(path: Path) -> OpenedFile:
    """Read a photo or a project: decoding, building the document and the original's thumbnail.

    Touches no session, so any thread can run it (a large photo is read off the GUI thread).
    Raises ImageReadError, ProjectError or OSError.
    """
    if path.suffix.lower() == PROJECT_SUFFIX:
        contents = read_project(path)
        contents.history.set_clean()
        return OpenedFile(
            contents.history,
            path,
            path,
            metadata_from_attachments(contents.extra),
            original_thumbnail(contents.history),
        )
    image = read_image(path)
    document = Document.from_image(image.rgb, image.alpha, name=path.stem)
    return OpenedFile(History(document), path, None, image.metadata, document.thumbnail(), image.notices)


def original_thumbnail(history: History) -> np.ndarray | None:
    try:
        return history.state_at(0).thumbnail()
    except HistoryError:  # the first steps were dropped to save memory
        return None


class Session(QObject):
    changed = Signal()  # the document's pixels or the history moved
    opened = Signal()  # a new photo or project replaced everything
    # Changes that leave the image as it looks (no reflattening): the selection, the active layer.
    selection_changed = Signal()
    active_layer_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.history: History | None = None
        self.path: Path | None = None  # the photo (or project) it was opened from
        self.project_path: Path | None = None
        self.metadata: ImageMetadata | None = None  # the source photo's, kept for export
        # The history keeps a thumbnail per step, not of the photo as opened: made once here.
        self.original_thumbnail: np.ndarray | None = None
        # A finished restoration lands as a new layer above the one it restored, instead of replacing it.
        self.restore_into_new_layer = False

    @property
    def document(self) -> Document | None:
        return None if self.history is None else self.history.document

    @property
    def modified(self) -> bool:
        return self.history is not None and not self.history.is_clean

    @property
    def image_key(self) -> tuple[int, int] | None:
        """Changes when the flattened image may have changed: the canvas reconverts only then."""
        document = self.document
        return None if document is None else (id(document), document.revision)

    # ------------------------------------------------------------------ selection and layers

    def set_selection(self, selection: Selection | None) -> None:
        """The region the next restoration is limited to (None or empty: the whole layer)."""
        document = self.document
        if document is None:
            return
        if selection is not None and selection.is_empty:
            selection = None
        document.selection = selection
        self.selection_changed.emit()

    def set_active_layer(self, index: int) -> None:
        """The layer the next restoration applies to (not a history step: nothing changes yet)."""
        document = self.document
        if document is None or index == document.active_index:
            return
        document.active_index = index
        self.active_layer_changed.emit()

    def edit_layers(self, label: str, change: Callable[[Document], object]) -> Step | None:
        """Run ``change`` on the document's layer stack as one undoable step (None: it changed nothing).

        ``change`` uses ``Document``'s layer methods or sets layer properties; when it raises, the
        stack is put back as it was and the error goes to the caller.
        """
        assert self.history is not None
        document = self.history.document
        with self.history.record(label) as recording:
            change(document)
            document.touch()  # a property alone (visibility, opacity) does not move the revision
        self.changed.emit()
        return recording.step

    # ------------------------------------------------------------------ files

    def adopt(self, opened: OpenedFile) -> None:
        """Make a file read by ``load_file`` (on any thread) the open one."""
        self._adopt(opened.history, opened.path, opened.project_path, opened.metadata, opened.thumbnail)

    def open_recovered(self, path: Path) -> None:
        """Reopen an autosave (see ``autosave_job``) as it was: unsaved, with its source and project paths.

        Raises ProjectError; the current photo is kept then. Nothing recovered counts as saved, so
        closing asks before losing it again.
        """
        contents = read_project(path, clean_index=-1)
        try:
            source = json.loads(contents.extra.get(SOURCE_KEY, b"{}").decode("utf-8"))
        except ValueError:
            source = {}
        if not isinstance(source, dict):
            source = {}
        source_path, project_path = source.get("path"), source.get("project_path")
        self._adopt(
            contents.history,
            Path(source_path) if isinstance(source_path, str) else None,
            Path(project_path) if isinstance(project_path, str) else None,
            metadata_from_attachments(contents.extra),
        )

    def _adopt(
        self,
        history: History,
        path: Path | None,
        project_path: Path | None,
        metadata: ImageMetadata | None,
        thumbnail: np.ndarray | None = None,
    ) -> None:
        if thumbnail is None:
            thumbnail = original_thumbnail(history)
        self.history = history
        self.path = path
        self.project_path = project_path
        self.metadata = metadata
        self.original_thumbnail = thumbnail
        self.opened.emit()
        self.changed.emit()

    def save_project_job(self, path: Path) -> tuple[Callable[[], None], PendingSave]:
        """Saving the project (layers, masks, the whole history, the source's EXIF/ICC/XMP and bit
        depth) as a job any thread can run, from a snapshot taken now, and what it saves: hand
        that to ``saved`` once the job has finished. The job raises OSError."""
        assert self.history is not None
        pending = PendingSave(self.history, self.history.saved_state())
        return self._project_job(path, metadata_attachments(self.metadata)), pending

    def saved(self, path: Path, pending: PendingSave) -> None:
        """A ``save_project_job`` finished: the project is at ``path``, and the state it holds is
        the saved one (even if the person moved on meanwhile: then there is something unsaved)."""
        if pending.history is not self.history or self.history is None:
            return  # another photo was opened meanwhile; the file is written all the same
        self.project_path = path
        self.history.clean_after_save(pending.state)
        self.changed.emit()

    def autosave_job(self, path: Path) -> Callable[[], None]:
        """Writing everything to a recovery file as a job any thread can run, leaving the
        saved/unsaved state as it is. The job raises OSError."""
        source = {
            "path": None if self.path is None else str(self.path),
            "project_path": None if self.project_path is None else str(self.project_path),
        }
        extra = metadata_attachments(self.metadata)
        extra[SOURCE_KEY] = json.dumps(source).encode("utf-8")
        return self._project_job(path, extra)

    def _project_job(self, path: Path, extra: dict[str, bytes]) -> Callable[[], None]:
        # A snapshot taken now that shares the pixels copy-on-write: editing goes on meanwhile.
        assert self.history is not None
        snapshot = self.history.snapshot()
        return lambda: save_project(path, snapshot, extra=extra, mark_clean=False)

    def export_job(
        self,
        path: Path,
        *,
        quality: int = 95,
        bit_depth: int | None = None,
        keep_metadata: bool = True,
        colour_profile: str = "original",
    ) -> tuple[Callable[[], Path], PendingSave]:
        """``export`` as a job any thread can run, from a copy-on-write snapshot of the document
        taken now, and what it exports: hand that to ``exported`` once the job has finished. The
        job returns the path written and raises ImageWriteError or OSError."""
        assert self.history is not None
        snapshot = self.history.document.frozen_copy()
        metadata = self.metadata
        pending = PendingSave(self.history, self.history.saved_state())

        def write() -> Path:
            rgb, alpha = snapshot.flatten()
            return write_image(
                path,
                rgb,
                alpha,
                metadata=metadata,
                quality=quality,
                bit_depth=bit_depth,
                keep_metadata=keep_metadata,
                colour_profile="srgb" if colour_profile == "srgb" else "original",
            )

        return write, pending

    def exported(self, pending: PendingSave) -> None:
        """An ``export_job`` finished: the state it wrote no longer counts as unsaved work."""
        if pending.history is not self.history or self.history is None:
            return
        self.history.clean_after_save(pending.state)
        self.changed.emit()

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
        if result.scale == 1 and self.restore_into_new_layer:
            added = self._restoration_as_layer(result, layer_id, label=label, tasks=tasks, strength=strength)
            self.changed.emit()
            return added
        restoration = Restoration(result.original, result.restored, result.mask, strength)
        prepared = result.prepared
        if prepared is not None and result.scale == 1 and prepared.stored.strength == strength:
            # The worker did the pixel work and compression: only a swap happens on the GUI thread.
            step: Step | None = self.history.push_prepared(
                layer_id,
                result.bounds,
                prepared,
                label=label,
                tasks=tuple(tasks),
                seconds=result.seconds,
                model_id=result.model_id,
            )
        elif result.scale == 1:
            step = self.history.push_restoration(
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
                layers.append(layer.with_content(pixels, alpha))
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

    def _restoration_as_layer(
        self, result: RestoreResult, layer_id: str, *, label: str, tasks: Sequence[str], strength: float
    ) -> Step | None:
        """The restoration as a new layer just above ``layer_id``, the document looking as if replaced.

        The new layer holds the restored pixels (re-blendable at another strength); a selection
        becomes its alpha, so it covers only the selected region and the layer below shows elsewhere.
        """
        assert self.history is not None
        document = self.history.document
        source = document.layer(layer_id)
        index = document.index_of(layer_id)
        region = result.bounds.slices
        restored = source.pixels.copy()
        restored[region] = result.restored
        alpha = None if source.alpha is None else source.alpha.copy()
        if result.mask is not None:
            coverage = np.zeros(document.size, dtype=np.float32)
            coverage[region] = result.mask
            alpha = coverage if alpha is None else alpha * coverage
        name = label if len(label) <= 40 else label[:39] + "…"
        layer = Layer(restored, alpha, name=name or "Restored")
        layers = list(document.layers)
        layers.insert(index + 1, layer)
        return self.history.push_layers(
            layers,
            index + 1,
            restoration=Restoration(source.pixels, restored, None, strength),
            restored_layer_id=layer.id,
            label=label,
            tasks=tuple(tasks),
            seconds=result.seconds,
            model_id=result.model_id,
        )
