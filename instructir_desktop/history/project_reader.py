"""Reading a project file's manifest and entries, every value checked before it is used.

Each method reads one part of the manifest (``where`` names it in messages) and raises
ProjectError with a sentence that says what is wrong. Sizes are checked before anything is
allocated (see ``history.project``).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from instructir_desktop.core.document import BLEND_MODES, Document, Layer
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.selection import Selection
from instructir_desktop.history.branches import Branch
from instructir_desktop.history.changes import (
    Change,
    PatchChange,
    StackChange,
    StoredLayer,
    StoredRestoration,
    StoredStack,
)
from instructir_desktop.history.codec import ENCODINGS, ITEM_SIZE, EncodedArray, decode, shared
from instructir_desktop.history.steps import PlannedTask, Step

# Limits that no real project reaches but that keep a damaged file from asking for absurd memory.
MAX_SIDE = 1 << 17
_MAX_THUMBNAIL_BYTES = 4 * 1024 * 1024

_T = TypeVar("_T")


class ProjectError(ValueError):
    """A project file that cannot be read: damaged, not a project, or from an unknown format version."""


class UnsupportedProjectVersion(ProjectError):
    """A project written in a format version this program does not know (usually a newer one)."""


class ProjectReader:
    """Reads the manifest, naming the place of anything wrong ("history.steps[3].change.bounds")."""

    def __init__(self, archive: zipfile.ZipFile, max_pixels: int | None = None) -> None:
        self.archive = archive
        self.max_pixels = max_pixels
        # An entry named by several uses is read once and its array shared (version 2 writes each
        # distinct array once): the history holds it once in memory too.
        self._blobs: dict[tuple[Any, ...], EncodedArray] = {}

    def within_limit(self, height: int, width: int, where: str) -> None:
        """Refuse a picture larger than the pixel limit before anything of its size is allocated."""
        if self.max_pixels is not None and height * width > self.max_pixels:
            raise ProjectError(
                f"{where} is {width:,} × {height:,} = {height * width:,} pixels, more than the limit of "
                f"{self.max_pixels:,} (raise “Largest photo to open” in Settings if the project is genuine)"
            )

    def field(self, record: Any, key: str, kind: type[_T] | tuple[type, ...], where: str) -> Any:
        if not isinstance(record, dict):
            raise ProjectError(f"{where} is not an object")
        if key not in record:
            raise ProjectError(f"{where}.{key} is missing")
        value = record[key]
        # JSON has no separate integers and booleans for Python's isinstance: keep them apart.
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ProjectError(f"{where}.{key} has the wrong type")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise ProjectError(f"{where}.{key} has the wrong type")
        return value

    def optional(self, record: Any, key: str, read: Callable[[Any, str], _T], where: str) -> _T | None:
        value = self.field(record, key, (dict, type(None)), where)
        return None if value is None else read(value, f"{where}.{key}")

    def side(self, record: Any, key: str, where: str) -> int:
        value = self.field(record, key, int, where)
        if not 0 < value <= MAX_SIDE:
            raise ProjectError(f"{where}.{key} is not a possible image size: {value}")
        return int(value)

    def blob(self, record: Any, where: str) -> EncodedArray:
        entry = self.field(record, "entry", str, where)
        shape = self.field(record, "shape", list, where)
        if not 1 <= len(shape) <= 3 or any(not isinstance(s, int) or isinstance(s, bool) for s in shape):
            raise ProjectError(f"{where}.shape is not an array shape")
        if any(not 0 <= s <= MAX_SIDE for s in shape):
            raise ProjectError(f"{where}.shape {shape} is not a possible size")
        self.within_limit(shape[0], shape[1] if len(shape) > 1 else 1, where)
        rows = self.field(record, "rows_per_chunk", int, where)
        chunks = self.field(record, "chunks", list, where)
        if rows < 1:
            raise ProjectError(f"{where}.rows_per_chunk must be positive")
        lengths = []
        for chunk in chunks:
            if (
                not isinstance(chunk, list)
                or len(chunk) != 2
                or chunk[0] not in ENCODINGS
                or not isinstance(chunk[1], int)
                or chunk[1] < 0
            ):
                raise ProjectError(f"{where}.chunks is damaged")
            lengths.append((chunk[0], chunk[1]))
        expected_chunks = -(-shape[0] // rows)
        if len(lengths) != expected_chunks:
            raise ProjectError(f"{where} has {len(lengths)} chunks, its shape needs {expected_chunks}")
        # Neither zlib nor zstd makes data much larger than it was: more stored bytes than the shape can need
        # is a damaged (or hostile) description, refused before reading them.
        row_values = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
        for (name, length), chunk_rows in zip(lengths, _chunk_rows(shape[0], rows), strict=True):
            if length > chunk_rows * row_values * ITEM_SIZE[name] + _ZLIB_SLACK:
                raise ProjectError(f"{where}.chunks declare more data than its shape can hold")
        key = (entry, tuple(shape), rows, tuple(lengths))
        if key in self._blobs:
            return self._blobs[key]
        data = self.entry(entry, where, sum(length for _, length in lengths))
        if len(data) != sum(length for _, length in lengths):
            raise ProjectError(f"{where}: {entry} is {len(data)} bytes, the manifest says otherwise")
        parts, offset = [], 0
        for name, length in lengths:
            parts.append((name, data[offset : offset + length]))
            offset += length
        array = shared(EncodedArray(tuple(shape), rows, tuple(parts)))
        self._blobs[key] = array
        return array

    def entry(self, name: str, where: str, size_limit: int) -> bytes:
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise ProjectError(f"{where}: the file has no {name}") from None
        if info.file_size > size_limit:
            raise ProjectError(f"{where}: {name} is larger than its description allows")
        try:
            return self.archive.read(info)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error) as error:
            raise ProjectError(f"{where}: {name} is damaged ({error})") from None

    def pixels(self, record: Any, where: str, shape: tuple[int, ...]) -> EncodedArray:
        array = self.blob(record, where)
        if array.shape != shape:
            raise ProjectError(f"{where} has shape {array.shape}, expected {shape}")
        return array

    def optional_pixels(self, record: Any, key: str, where: str, shape: tuple[int, ...]) -> EncodedArray | None:
        return self.optional(record, key, lambda value, at: self.pixels(value, at, shape), where)

    def properties(self, record: Any, where: str) -> tuple[str, str, float, bool, str]:
        layer_id = self.field(record, "id", str, where)
        name = self.field(record, "name", str, where)
        opacity = self.field(record, "opacity", float, where)
        visible = self.field(record, "visible", bool, where)
        blend_mode = self.field(record, "blend_mode", str, where)
        if not 0.0 <= opacity <= 1.0:
            raise ProjectError(f"{where}.opacity must be between 0 and 1")
        if blend_mode not in BLEND_MODES:
            raise ProjectError(f"{where}.blend_mode {blend_mode!r} is not known")
        return layer_id, name, opacity, visible, blend_mode

    def restoration(self, record: Any, where: str, height: int, width: int) -> StoredRestoration:
        strength = self.field(record, "strength", float, where)
        if not 0.0 <= strength <= 1.0:
            raise ProjectError(f"{where}.strength must be between 0 and 1")
        return StoredRestoration(
            self.optional_pixels(record, "original", where, (height, width, 3)),
            self.pixels(self.field(record, "restored", dict, where), f"{where}.restored", (height, width, 3)),
            self.optional_pixels(record, "mask", where, (height, width)),
            strength,
        )

    def stack(self, record: Any, where: str) -> StoredStack:
        height, width = self.side(record, "height", where), self.side(record, "width", where)
        self.within_limit(height, width, where)
        active = self.field(record, "active_index", int, where)
        layers = []
        for number, entry in enumerate(self.field(record, "layers", list, where)):
            at = f"{where}.layers[{number}]"
            layer_id, name, opacity, visible, blend_mode = self.properties(entry, at)
            kept = self.field(entry, "kept", bool, at)
            pixels = self.optional_pixels(entry, "pixels", at, (height, width, 3))
            alpha = self.optional_pixels(entry, "alpha", at, (height, width))
            if kept and (pixels is not None or alpha is not None):
                raise ProjectError(f"{at} is kept but also stores pixels")
            layers.append(StoredLayer(layer_id, name, opacity, visible, blend_mode, kept, pixels, alpha))
        if layers and not 0 <= active < len(layers):
            raise ProjectError(f"{where}.active_index is outside the stack")
        return StoredStack(height, width, active, tuple(layers))

    def change(self, record: Any, where: str) -> Change:
        kind = self.field(record, "type", str, where)
        if kind == "pixels":
            layer_id = self.field(record, "layer_id", str, where)
            numbers = self.field(record, "bounds", list, where)
            if len(numbers) != 4 or any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in numbers):
                raise ProjectError(f"{where}.bounds is not a rectangle")
            bounds = Bounds(*numbers)
            if bounds.empty or bounds.right > MAX_SIDE or bounds.bottom > MAX_SIDE:
                raise ProjectError(f"{where}.bounds is not a possible rectangle")
            colour, plane = (bounds.height, bounds.width, 3), (bounds.height, bounds.width)
            restoration = self.optional(
                record, "restoration", lambda value, at: self.restoration(value, at, bounds.height, bounds.width), where
            )
            after = self.optional_pixels(record, "after", where, colour)
            if after is None and restoration is None:
                raise ProjectError(f"{where} has neither an after image nor a restoration")
            return PatchChange(
                layer_id,
                bounds,
                self.pixels(self.field(record, "before", dict, where), f"{where}.before", colour),
                after,
                self.optional_pixels(record, "alpha_before", where, plane),
                self.optional_pixels(record, "alpha_after", where, plane),
                restoration,
            )
        if kind == "layers":
            after_stack = self.stack(self.field(record, "after", dict, where), f"{where}.after")
            restored_id = self.field(record, "restored_layer_id", (str, type(None)), where)
            restoration = self.optional(
                record,
                "restoration",
                lambda value, at: self.restoration(value, at, after_stack.height, after_stack.width),
                where,
            )
            if (restored_id is None) != (restoration is None):
                raise ProjectError(f"{where}: a restoration needs the id of the layer it restored")
            if restoration is not None and restoration.original is None:
                raise ProjectError(f"{where}.restoration.original is missing")
            return StackChange(
                self.stack(self.field(record, "before", dict, where), f"{where}.before"),
                after_stack,
                restored_id,
                restoration,
            )
        raise ProjectError(f"{where}.type {kind!r} is not a known kind of change")

    def thumbnail(self, name: str, where: str) -> np.ndarray:
        data = self.entry(name, where, _MAX_THUMBNAIL_BYTES)
        try:
            values = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as error:  # numpy reads the header with ast: SyntaxError too, among others
            raise ProjectError(f"{where}: the thumbnail is damaged ({error})") from None
        if values.dtype != np.uint8 or values.ndim != 3 or values.shape[2] != 4:
            raise ProjectError(f"{where}: the thumbnail is not an RGBA image")
        return values

    def step(self, record: Any, where: str) -> Step:
        tasks = self.field(record, "tasks", list, where)
        if any(not isinstance(task, str) for task in tasks):
            raise ProjectError(f"{where}.tasks must be text")
        plan = []
        for task in record.get("plan", []) if isinstance(record, dict) else []:  # older files have none
            if (  # task, words, factor, and the model when one was chosen (older files: three)
                not isinstance(task, list)
                or len(task) not in (3, 4)
                or not all(isinstance(text, str) for text in (*task[:2], *task[3:]))
                or not (task[2] is None or (isinstance(task[2], int) and not isinstance(task[2], bool)))
            ):
                raise ProjectError(f"{where}.plan is damaged")
            plan.append(PlannedTask(*task))
        return Step(
            plan=tuple(plan),
            label=self.field(record, "label", str, where),
            change=self.optional(record, "change", self.change, where),
            thumbnail=self.thumbnail(self.field(record, "thumbnail", str, where), where),
            tasks=tuple(tasks),
            strength=self.field(record, "strength", float, where),
            seconds=self.field(record, "seconds", float, where),
            model_id=self.field(record, "model_id", str, where),
            created=self.field(record, "created", float, where),
        )

    def branch(self, record: Any, where: str) -> Branch:
        entries = self.field(record, "steps", list, where)
        return Branch(
            fork=self.field(record, "fork", int, where),
            steps=[self.step(entry, f"{where}.steps[{number}]") for number, entry in enumerate(entries)],
            branches=self.branches(record, where),
            created=self.field(record, "created", float, where),
        )

    def branches(self, record: Any, where: str) -> list[Branch]:
        entries = record.get("branches", []) if isinstance(record, dict) else []  # older files have none
        if not isinstance(entries, list):
            raise ProjectError(f"{where}.branches is not a list")
        return [self.branch(entry, f"{where}.branches[{number}]") for number, entry in enumerate(entries)]

    def document(self, record: Any, where: str) -> Document:
        height, width = self.side(record, "height", where), self.side(record, "width", where)
        self.within_limit(height, width, "the project's picture")
        active = self.field(record, "active_index", int, where)
        layers = []
        for number, entry in enumerate(self.field(record, "layers", list, where)):
            at = f"{where}.layers[{number}]"
            layer_id, name, opacity, visible, blend_mode = self.properties(entry, at)
            pixels = self.pixels(self.field(entry, "pixels", dict, at), f"{at}.pixels", (height, width, 3))
            alpha = self.optional_pixels(entry, "alpha", at, (height, width))
            layers.append(
                Layer(
                    _decoded(pixels, at),
                    None if alpha is None else _decoded(alpha, at),
                    name=name,
                    opacity=opacity,
                    visible=visible,
                    blend_mode=blend_mode,
                    id=layer_id,
                )
            )
        if not layers:
            raise ProjectError(f"{where} has no layers")
        if not 0 <= active < len(layers):
            raise ProjectError(f"{where}.active_index is outside the stack")
        # Projects saved before selections were kept have no "selection" at all.
        mask = self.optional_pixels(record, "selection", where, (height, width)) if "selection" in record else None
        try:
            document = Document(height, width, layers, active)
            if mask is not None:
                document.selection = Selection(_decoded(mask, f"{where}.selection"))
        except ValueError as error:
            raise ProjectError(f"{where}: {error}") from None
        return document


def _chunk_rows(total: int, rows: int) -> list[int]:
    return [min(rows, total - start) for start in range(0, total, rows)]


# Bytes per stored value of each encoding (``history.codec``), and what zlib may add to a chunk.
_ZLIB_SLACK = 1024  # zlib and zstd add at most a few hundred bytes to incompressible data


def _decoded(array: EncodedArray, where: str) -> np.ndarray:
    try:
        return decode(array)
    except ValueError as error:
        raise ProjectError(f"{where}: {error}") from None
