"""Project files: the document and its whole history in one zip, so a project reopens undoable.

Layout (format version 2)::

    manifest.json        format name and version, the document's layers and selection, every step
    blobs/NNNNNN.bin     one stored pixel array: its zlib chunks back to back (stored, not deflated:
                         they are compressed already); the manifest gives shape and chunk lengths.
                         Each distinct array is written once: a history stores the same pixels
                         several times (a step's "before" is the step before's result, the
                         document's layer is the last step's result), and every use names the
                         one entry. Version 1 (still read) wrote each use separately.
    thumbnails/NNNNNN.npy  each step's uint8 RGBA thumbnail
    extra/KEY            optional named attachments (bytes) the application keeps with the project,
                         listed in the manifest's ``extra`` object (for example the source photo's
                         EXIF and ICC profile); older files have none, older readers ignore them

Every read is checked: a file that is not a zip, has no manifest, names another format or a newer
version, or whose data does not match its description raises ProjectError (a ValueError) with a
message that says what is wrong, never anything else. Sizes are checked before anything is
allocated: every picture the project declares (the document, a layer stack, a stored array) must
fit the pixel limit the reader is given, and the stored bytes must be no more than their shape
can need, so a file declaring 131072 × 131072 pixels is refused in one sentence, not by running
out of memory.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from instructir_desktop.history.branches import Branch, check_tree
from instructir_desktop.history.changes import (
    Change,
    PatchChange,
    StackChange,
    StoredRestoration,
    StoredStack,
)
from instructir_desktop.history.codec import EncodedArray, content_digest, encode
from instructir_desktop.history.history import DEFAULT_MEMORY_LIMIT, History
from instructir_desktop.history.project_reader import ProjectError, ProjectReader, UnsupportedProjectVersion
from instructir_desktop.history.steps import Step

FORMAT_NAME = "instructir-desktop-project"
FORMAT_VERSION = 2
# Version 1 differs only in not sharing blob entries between uses; it is read the same way.
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
# Limits that no real project reaches but that keep a damaged file from asking for absurd memory.
_MAX_MANIFEST_BYTES = 256 * 1024 * 1024
_MAX_EXTRA_BYTES = 64 * 1024 * 1024
_EXTRA_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


# ---------------------------------------------------------------------------------------------- saving


class _Writer:
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.count = 0
        self._written: dict[bytes, str] = {}  # content digest → the entry that holds it

    def blob(self, array: EncodedArray | None) -> dict[str, Any] | None:
        if array is None:
            return None
        digest = content_digest(array)
        entry = self._written.get(digest)
        if entry is None:  # the first use of these pixels: written; later uses name the same entry
            self.count += 1
            entry = f"blobs/{self.count:06d}.bin"
            self.archive.writestr(entry, b"".join(data for _, data in array.chunks), zipfile.ZIP_STORED)
            self._written[digest] = entry
        return {
            "entry": entry,
            "shape": list(array.shape),
            "rows_per_chunk": array.rows_per_chunk,
            "chunks": [[name, len(data)] for name, data in array.chunks],
        }

    def attachment(self, key: str, data: bytes) -> str:
        entry = f"extra/{key}"
        self.archive.writestr(entry, bytes(data), zipfile.ZIP_DEFLATED)
        return entry

    def thumbnail(self, values: np.ndarray) -> str:
        self.count += 1
        entry = f"thumbnails/{self.count:06d}.npy"
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(values, dtype=np.uint8), allow_pickle=False)
        self.archive.writestr(entry, buffer.getvalue(), zipfile.ZIP_DEFLATED)
        return entry

    def restoration(self, restoration: StoredRestoration | None) -> dict[str, Any] | None:
        if restoration is None:
            return None
        return {
            "original": self.blob(restoration.original),
            "restored": self.blob(restoration.restored),
            "mask": self.blob(restoration.mask),
            "strength": restoration.strength,
        }

    def stack(self, stack: StoredStack) -> dict[str, Any]:
        return {
            "height": stack.height,
            "width": stack.width,
            "active_index": stack.active_index,
            "layers": [
                {
                    **_properties(layer.id, layer.name, layer.opacity, layer.visible, layer.blend_mode),
                    "kept": layer.kept,
                    "pixels": self.blob(layer.pixels),
                    "alpha": self.blob(layer.alpha),
                }
                for layer in stack.layers
            ],
        }

    def step(self, step: Step) -> dict[str, Any]:
        return {
            "label": step.label,
            "tasks": list(step.tasks),
            "strength": step.strength,
            "seconds": step.seconds,
            "model_id": step.model_id,
            "created": step.created,
            "thumbnail": self.thumbnail(step.thumbnail),
            "change": self.change(step.change),
            "plan": [
                [task.task, task.instruction, task.factor, *([task.model] if task.model else [])] for task in step.plan
            ],
        }

    def branch(self, branch: Branch) -> dict[str, Any]:
        return {
            "fork": branch.fork,
            "created": branch.created,
            "steps": [self.step(step) for step in branch.steps],
            "branches": [self.branch(nested) for nested in branch.branches],
        }

    def change(self, change: Change | None) -> dict[str, Any] | None:
        if isinstance(change, PatchChange):
            bounds = change.bounds
            return {
                "type": "pixels",
                "layer_id": change.layer_id,
                "bounds": [bounds.x, bounds.y, bounds.width, bounds.height],
                "before": self.blob(change.before),
                "after": self.blob(change.after),
                "alpha_before": self.blob(change.alpha_before),
                "alpha_after": self.blob(change.alpha_after),
                "restoration": self.restoration(change.restoration),
            }
        if isinstance(change, StackChange):
            return {
                "type": "layers",
                "before": self.stack(change.before),
                "after": self.stack(change.after),
                "restored_layer_id": change.restored_layer_id,
                "restoration": self.restoration(change.restoration),
            }
        return None


def _properties(layer_id: str, name: str, opacity: float, visible: bool, blend_mode: str) -> dict[str, Any]:
    return {"id": layer_id, "name": name, "opacity": opacity, "visible": visible, "blend_mode": blend_mode}


def _check_extra(extra: Mapping[str, bytes]) -> None:
    for key, data in extra.items():
        if not isinstance(key, str) or not _EXTRA_KEY.fullmatch(key):
            raise ValueError(f"project attachment name {key!r} must be letters, digits, '.', '_' or '-'")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"project attachment {key!r} must be bytes")
        if len(data) > _MAX_EXTRA_BYTES:
            raise ValueError(f"project attachment {key!r} is larger than {_MAX_EXTRA_BYTES} bytes")


def save_project(
    path: str | os.PathLike[str],
    history: History,
    *,
    extra: Mapping[str, bytes] | None = None,
    mark_clean: bool = True,
) -> None:
    """Write ``history.document`` and every step to ``path``, then mark the history clean.

    ``extra``: named attachments kept with the project (read back by :func:`read_project`); names
    are letters, digits, ``.``, ``_`` and ``-``. ``mark_clean=False`` leaves the history's saved
    state alone (an autosave is not a save the person made).

    The file is written beside the target and moved over it at the end, so a failed save never
    leaves half a project behind.
    """
    extra = dict(extra or {})
    _check_extra(extra)
    target = Path(path)
    partial = target.with_name(target.name + ".saving")
    document = history.document
    try:
        with zipfile.ZipFile(partial, "w", allowZip64=True) as archive:
            writer = _Writer(archive)
            layers = [
                {
                    **_properties(layer.id, layer.name, layer.opacity, layer.visible, layer.blend_mode),
                    "pixels": writer.blob(encode(layer.pixels)),
                    "alpha": writer.blob(None if layer.alpha is None else encode(layer.alpha)),
                }
                for layer in document.layers
            ]
            steps = [writer.step(step) for step in history.steps]
            manifest = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "document": {
                    "height": document.height,
                    "width": document.width,
                    "active_index": document.active_index,
                    "layers": layers,
                    # The selection the person made is part of their work (older readers skip it).
                    "selection": writer.blob(None if document.selection is None else encode(document.selection.mask)),
                },
                # Alternatives and plans are optional keys: older readers skip them.
                "history": {
                    "index": history.index,
                    "steps": steps,
                    "branches": [writer.branch(branch) for branch in history.branches],
                },
            }
            if extra:
                manifest["extra"] = {key: writer.attachment(key, data) for key, data in extra.items()}
            archive.writestr(MANIFEST, json.dumps(manifest, indent=1), zipfile.ZIP_DEFLATED)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    if mark_clean:
        history.set_clean()


@dataclass
class ProjectContents:
    """What :func:`read_project` found: the history and the named attachments saved with it."""

    history: History
    extra: dict[str, bytes] = field(default_factory=dict)


def load_project(
    path: str | os.PathLike[str], memory_limit: int = DEFAULT_MEMORY_LIMIT, *, max_pixels: int | None = None
) -> History:
    """Read a project: its document (``History.document``) with the history as saved, marked clean.

    Raises ProjectError (a ValueError) for anything that is not a readable project of a known version
    (or declares a picture larger than ``max_pixels``), and OSError when the file cannot be opened.
    """
    return read_project(path, memory_limit, max_pixels=max_pixels).history


def read_project(
    path: str | os.PathLike[str],
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    *,
    clean_index: int | None = None,
    max_pixels: int | None = None,
) -> ProjectContents:
    """Like :func:`load_project`, also returning the attachments saved with ``extra`` (none: empty).

    ``clean_index``: the step index to count as saved (None: the index as saved; -1: none, so the
    reopened history counts as modified, as after recovering an autosave). ``max_pixels``: the
    largest picture the project may declare (None: only the format's own limit on each side).
    """
    name = os.path.basename(os.fspath(path))
    try:
        with zipfile.ZipFile(path) as archive:
            return _read(archive, memory_limit, clean_index, max_pixels)
    except zipfile.BadZipFile as error:
        raise ProjectError(f"{name} is not a project file (not a zip archive: {error})") from None
    except ProjectError as error:
        text = str(error)
        raise type(error)(text if name in text else f"{name}: {text}") from None
    except (
        ValueError,
        KeyError,
        TypeError,
        IndexError,
        EOFError,
        OverflowError,
        SyntaxError,
        zipfile.LargeZipFile,
    ) as error:
        # Anything the checks above did not foresee is still a damaged file, not a crash.
        raise ProjectError(f"{name} is damaged: {error}") from None
    except (MemoryError, RecursionError):
        raise ProjectError(f"{name} is damaged: it describes more than this computer can hold") from None


def _read_extra(reader: ProjectReader, manifest: dict[str, Any]) -> dict[str, bytes]:
    record = manifest.get("extra", {})
    if not isinstance(record, dict):
        raise ProjectError("manifest.extra is not an object")
    extra = {}
    for key, entry in record.items():
        if not isinstance(key, str) or not _EXTRA_KEY.fullmatch(key) or entry != f"extra/{key}":
            raise ProjectError(f"manifest.extra has a damaged entry {key!r}")
        extra[key] = reader.entry(entry, f"extra.{key}", _MAX_EXTRA_BYTES)
    return extra


def _read(
    archive: zipfile.ZipFile, memory_limit: int, clean_index: int | None = None, max_pixels: int | None = None
) -> ProjectContents:
    reader = ProjectReader(archive, max_pixels)
    raw = reader.entry(MANIFEST, "the project", _MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ProjectError(f"the project's manifest is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ProjectError("this file is not an InstructIR Desktop project")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProjectError("the project's format version is missing")
    if version not in READABLE_VERSIONS:
        newer = " (made by a newer version of the program)" if version > FORMAT_VERSION else ""
        raise UnsupportedProjectVersion(f"project format version {version} is not supported{newer}")
    document = reader.document(reader.field(manifest, "document", dict, "manifest"), "document")
    record = reader.field(manifest, "history", dict, "manifest")
    entries = reader.field(record, "steps", list, "history")
    steps = [reader.step(entry, f"history.steps[{number}]") for number, entry in enumerate(entries)]
    index = reader.field(record, "index", int, "history")
    if not 0 <= index <= len(steps):
        raise ProjectError(f"history.index {index} is outside 0..{len(steps)}")
    branches = reader.branches(record, "history")
    try:
        check_tree(branches, 0, len(steps))
    except ValueError as error:
        raise ProjectError(f"history.branches: {error}") from None
    extra = _read_extra(reader, manifest)
    clean = index if clean_index is None else clean_index
    history = History.restored(document, steps, index, clean_index=clean, memory_limit=memory_limit, branches=branches)
    return ProjectContents(history, extra)
