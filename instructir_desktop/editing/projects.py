"""Files of the open photo: reading a photo or project into a history, the metadata a project
carries for later exports, and saving, autosaving and exporting as jobs any thread can run from a
snapshot taken on the loop's thread."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instructir_desktop.core.document import Document
from instructir_desktop.editing.transcript import TRANSCRIPT_KEY, TranscriptEntry, decode_transcript
from instructir_desktop.history import History, HistoryError, SavedState, read_project, save_project
from instructir_desktop.io import ImageMetadata, max_pixels, read_image, write_image

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
    transcript: tuple[TranscriptEntry, ...] = ()  # the conversation saved with a project


def load_file(path: Path) -> OpenedFile:
    """Read a photo or a project: decoding, building the document and the original's thumbnail.

    Touches no session, so any thread can run it (a large photo is read off the GUI thread).
    Raises ImageReadError, ProjectError or OSError.
    """
    if path.suffix.lower() == PROJECT_SUFFIX:
        # The pixel limit that guards photos guards projects too (Settings → Largest photo to open).
        contents = read_project(path, max_pixels=max_pixels())
        contents.history.set_clean()
        return OpenedFile(
            contents.history,
            path,
            path,
            metadata_from_attachments(contents.extra),
            original_thumbnail(contents.history),
            transcript=decode_transcript(contents.extra.get(TRANSCRIPT_KEY)),
        )
    image = read_image(path)
    document = Document.from_image(image.rgb, image.alpha, name=path.stem)
    return OpenedFile(History(document), path, None, image.metadata, document.thumbnail(), image.notices)


def original_thumbnail(history: History) -> np.ndarray | None:
    try:
        return history.state_at(0).thumbnail()
    except HistoryError:  # the first steps were dropped to save memory
        return None


def project_job(history: History, path: Path, extra: dict[str, bytes]) -> Callable[[], None]:
    """Writing ``history`` (layers, masks, every step) to ``path`` as a job any thread can run. The
    snapshot is taken now and shares the pixels copy-on-write, so editing goes on meanwhile."""
    snapshot = history.snapshot()
    return lambda: save_project(path, snapshot, extra=extra, mark_clean=False)


@dataclass(frozen=True)
class ExportChoices:
    """How an export is written (the export dialog's choices; the defaults keep the source's)."""

    quality: int = 95
    bit_depth: int | None = None  # None: the source's, where the format can hold it
    keep_metadata: bool = True
    convert_to_srgb: bool = False  # else the photo's own colour profile is kept


def export_job(
    history: History, metadata: ImageMetadata | None, path: Path, choices: ExportChoices
) -> Callable[[], Path]:
    """Writing the flattened document with the source's metadata to ``path`` as a job any thread
    can run, from a copy-on-write snapshot taken now. The job returns the path written and raises
    ImageWriteError or OSError."""
    snapshot = history.document.frozen_copy()

    def write() -> Path:
        rgb, alpha = snapshot.flatten()
        written: Path = write_image(
            path,
            rgb,
            alpha,
            metadata=metadata,
            quality=choices.quality,
            bit_depth=choices.bit_depth,
            keep_metadata=choices.keep_metadata,
            colour_profile="srgb" if choices.convert_to_srgb else "original",
        )
        return written

    return write


def read_recovered(path: Path) -> OpenedFile:
    """An autosave as it was: unsaved, with its source and project paths. Raises ProjectError."""
    contents = read_project(path, clean_index=-1, max_pixels=max_pixels())
    try:
        source = json.loads(contents.extra.get(SOURCE_KEY, b"{}").decode("utf-8"))
    except ValueError:
        source = {}
    if not isinstance(source, dict):
        source = {}
    source_path, project_path = source.get("path"), source.get("project_path")
    return OpenedFile(
        contents.history,
        Path(source_path) if isinstance(source_path, str) else None,
        Path(project_path) if isinstance(project_path, str) else None,
        metadata_from_attachments(contents.extra),
        original_thumbnail(contents.history),
        transcript=decode_transcript(contents.extra.get(TRANSCRIPT_KEY)),
    )


def autosave_attachments(
    metadata: ImageMetadata | None, path: Path | None, project_path: Path | None
) -> dict[str, bytes]:
    """What an autosave carries beside the history: the source's metadata, and where the work came from."""
    source = {
        "path": None if path is None else str(path),
        "project_path": None if project_path is None else str(project_path),
    }
    extra = metadata_attachments(metadata)
    extra[SOURCE_KEY] = json.dumps(source).encode("utf-8")
    return extra
