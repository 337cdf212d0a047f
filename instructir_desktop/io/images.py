"""Read and write photographs without losing what the file carried.

The network works on float RGB in [0, 1]. The files people bring are JPEG, PNG, TIFF or WebP in 8 or 16 bits
per channel, with alpha, palettes, CMYK, EXIF orientation and colour profiles. This module is the only place
that knows about any of that, so the rest of the program can treat every picture alike and still save it back
the way it came in.

Pillow decodes and encodes the 8-bit cases. Pillow 13 silently cuts 16-bit RGB(A) PNG and TIFF data down to
8 bits, which would throw away exactly the precision a restoration tool exists to protect, so those files go
through the small numpy/zlib codecs further down. All TIFF *writing* goes through our own codec too: Pillow's
TIFF writer cannot take EXIF and XMP together through its public options, and one writer means both bit
depths carry metadata identically.

Pillow's plugin classes are opened directly instead of through ``Image.open`` so that its process-wide
decompression-bomb limit (about 179 MP) does not veto JPEG and PNG pictures that our own, explicit
``max_pixels`` allows (200 MP phone cameras exist); our limit is checked from the header before any pixel is
decoded. Pillow's TIFF and WebP plugins repeat their own check while loading; a picture refused there is
reported as too large in the same way, and an 8-bit TIFF between Pillow's warning and error thresholds makes
it emit its DecompressionBombWarning (we touch neither the process-wide warning filters nor Pillow's globals).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import stat
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided
from PIL import Image, ImageFile

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "READ_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "ImageHeader",
    "ImageMetadata",
    "ImageReadError",
    "ImageWriteError",
    "LoadedImage",
    "format_for_path",
    "read_image",
    "read_image_header",
    "write_image",
]

DEFAULT_MAX_PIXELS = 200_000_000
OPTIMIZED_JPEG_MAX_PIXELS = 2_000_000  # see _encode

_EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
READ_EXTENSIONS: frozenset[str] = frozenset(_EXTENSION_FORMATS)
WRITE_EXTENSIONS: frozenset[str] = frozenset(_EXTENSION_FORMATS)

_FORMAT_ALIASES = {"JPEG": "JPEG", "JPG": "JPEG", "PNG": "PNG", "TIFF": "TIFF", "TIF": "TIFF", "WEBP": "WEBP"}
_EIGHT_BIT_ONLY = frozenset({"JPEG", "WEBP"})
_EXIF_PREFIX = b"Exif\x00\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Metadata blocks bigger than this are treated as damage rather than read into memory.
_MAX_METADATA_BYTES = 64 << 20
# Memory the PNG wavefront unfilter may use for its skewed working copies; bounds peak use on huge images.
_WAVEFRONT_BUDGET_BYTES = 96 << 20
_COMPRESS_LEVEL = 6
# Uncompressed bytes per parallel deflate block for 16-bit PNG writing.
_DEFLATE_BLOCK = 4 << 20


# --------------------------------------------------------------------------------------------------------------
# Public types


def _display_name(path: Path | None) -> str:
    if path is None:
        return "image"
    return path.name or str(path)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _FileError(Exception):
    """``str()`` is one line naming the file, fit to show the user as is."""

    def __init__(self, path: str | os.PathLike[str] | None, reason: str) -> None:
        # args keeps both parts so the exception survives pickling to and from worker processes.
        super().__init__(path, reason)
        self.path = Path(path) if path is not None else None
        self.reason = _one_line(reason)

    def __str__(self) -> str:
        return f"{_display_name(self.path)}: {self.reason}"


class ImageReadError(_FileError):
    """A picture could not be read."""


class ImageWriteError(_FileError):
    """A picture could not be saved."""


@dataclass(frozen=True)
class ImageMetadata:
    """What a file carried besides its pixels, kept so that saving can give it back.

    ``exif`` uses Pillow's convention (starts with ``b"Exif\\0\\0"``). Its Orientation is already 1 because
    the rotation was applied to the pixels, and its thumbnail is unlinked because it would show the picture
    as it was before restoration. ``icc_profile`` is None after a CMYK picture was converted to sRGB, since
    the CMYK profile no longer describes the pixels.
    """

    format: str
    source_mode: str
    bit_depth: int
    grayscale: bool
    exif: bytes | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None


@dataclass
class LoadedImage:
    """Pixels ready for the network plus everything needed to save them back faithfully."""

    rgb: npt.NDArray[np.float32]
    alpha: npt.NDArray[np.float32] | None
    metadata: ImageMetadata
    path: Path | None = None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


class ImageHeader(NamedTuple):
    """Result of :func:`read_image_header`; width and height are as displayed (EXIF orientation applied)."""

    width: int
    height: int
    metadata: ImageMetadata


class _FormatError(Exception):
    """Internal: the reason (one user-facing phrase) a file cannot be decoded; wrapped with the file name later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _corrupt(detail: str | None = None) -> _FormatError:
    suffix = f" ({detail})" if detail else ""
    return _FormatError(f"the file is truncated or corrupt{suffix}")


def _unsupported(what: str) -> _FormatError:
    return _FormatError(f"{what} is not supported")


# --------------------------------------------------------------------------------------------------------------
# Formats and file access


def format_for_path(path: str | os.PathLike[str]) -> str:
    """Map a file name to the format to write, so that Save As follows the extension the user typed."""
    suffix = Path(path).suffix.lower()
    try:
        return _EXTENSION_FORMATS[suffix]
    except KeyError:
        shown = f"'{suffix}'" if suffix else "no extension"
        raise ImageWriteError(path, f"cannot save a file with {shown}; use .jpg, .png, .tif or .webp") from None


def _sniff_format(head: bytes) -> str:
    """Decide the format from the content, because extensions lie (a PNG saved as .jpg is common)."""
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    other = _name_other_format(head)
    if other:
        raise _FormatError(f"{other} images are not supported (only JPEG, PNG, TIFF and WebP)")
    raise _FormatError("the file is not a JPEG, PNG, TIFF or WebP image")


def _name_other_format(head: bytes) -> str | None:
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    if head[:4] == b"8BPS":
        return "Photoshop (PSD)"
    if head[:4] == b"\xff\x4f\xff\x51" or head[4:8] == b"jP  ":
        return "JPEG 2000"
    return None


def _stat_input(path: Path) -> int:
    """Turn every way a path can fail to be a readable file into one clear sentence."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "the file does not exist") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open the file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(path, "this is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(path, "this is not a regular file")
    if info.st_size == 0:
        raise ImageReadError(path, "the file is empty")
    return info.st_size


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read the file ({exc.strerror or exc})") from None


_T = TypeVar("_T")
_R = TypeVar("_R")


def _parallel_map(func: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """zlib releases the GIL, so strips and blocks compress on all cores with plain threads."""
    workers = min(8, os.cpu_count() or 1, len(items))
    if workers < 2:
        return [func(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(func, items))


# --------------------------------------------------------------------------------------------------------------
# TIFF structures (shared by TIFF files and EXIF blocks, which are TIFF inside)

_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_TIFF_TYPE_SIZES.update({16: 8, 17: 8, 18: 8})  # BigTIFF
_TIFF_TYPE_CODES = {1: "B", 2: "B", 3: "H", 4: "I", 5: "I", 6: "b", 7: "B", 8: "h", 9: "i", 10: "i", 11: "f"}
_TIFF_TYPE_CODES.update({12: "d", 13: "I", 16: "Q", 17: "q", 18: "Q"})
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _UNDEFINED = 1, 2, 3, 4, 5, 7

_TAG_ORIENTATION = 274
_TAG_EXIF_IFD, _TAG_GPS_IFD, _TAG_INTEROP_IFD = 34665, 34853, 40965
_TAG_XMP, _TAG_ICC = 700, 34675
_POINTER_TAGS = frozenset({_TAG_EXIF_IFD, _TAG_GPS_IFD, _TAG_INTEROP_IFD})

# IFD0 tags of a TIFF file that are EXIF-style descriptions worth carrying to other formats.
_TIFF_DESCRIPTIVE_TAGS = frozenset(
    {270, 271, 272, 274, 305, 306, 315, 316, 33432, 18246, 18249, 0x9C9B, 0x9C9C, 0x9C9D, 0x9C9E, 0x9C9F}
)
# Tags that describe how pixels are stored; copying them from an EXIF block into a TIFF would corrupt it.
_TIFF_STRUCTURE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 274, 277, 278, 279, 280, 281, 282, 283, 284}
    | {286, 287, 290, 291, 292, 293, 296, 297, 301, 317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 332}
    | {338, 339, 340, 341, 347, 351, 512, 513, 514, 515, 517, 518, 519, 520, 521, 529, 530, 531, 532}
    | {_TAG_XMP, _TAG_ICC, 34377, 37724, 50341}
)


class _RawEntry(NamedTuple):
    type: int
    n: int
    field: bytes  # the inline value-or-offset field, in the file's byte order


@dataclass
class _TiffEntry:
    type: int
    count: int
    data: bytes  # value bytes, little-endian

    def numbers(self) -> list[float]:
        code = _TIFF_TYPE_CODES.get(self.type)
        if code is None or self.type in (_ASCII, _UNDEFINED):
            return []
        if self.type in (5, 10):
            parts = struct.unpack(f"<{2 * self.count}{code}", self.data)
            return [num / den if den else 0.0 for num, den in zip(parts[::2], parts[1::2], strict=True)]
        return list(struct.unpack(f"<{self.count}{code}", self.data))

    def ints(self) -> list[int]:
        return [int(v) for v in self.numbers()]


@dataclass
class _TiffDir:
    entries: dict[int, _TiffEntry]
    subdirs: dict[int, _TiffDir]


def _to_little_endian(data: bytes, type_: int, byte_order: str) -> bytes:
    unit = 4 if type_ in (5, 10) else _TIFF_TYPE_SIZES[type_]
    if byte_order == "<" or unit == 1 or type_ in (_ASCII, _UNDEFINED):
        return data
    return np.frombuffer(data, dtype=f">u{unit}").astype(f"<u{unit}").tobytes()


class _TiffReader:
    """Random access to TIFF directories; values are read only when asked for, so probing stays cheap."""

    def __init__(self, fp: IO[bytes], size: int) -> None:
        self._fp = fp
        self._size = size
        head = self._read(0, 8)
        if head[:2] == b"II":
            self.byte_order = "<"
        elif head[:2] == b"MM":
            self.byte_order = ">"
        else:
            raise _corrupt("not a TIFF header")
        magic = struct.unpack(self.byte_order + "H", head[2:4])[0]
        if magic == 42:
            self.big = False
            self.first_offset = struct.unpack(self.byte_order + "I", head[4:8])[0]
        elif magic == 43:
            self.big = True
            extra = self._read(8, 8)
            if struct.unpack(self.byte_order + "HH", head[4:8]) != (8, 0):
                raise _corrupt("damaged BigTIFF header")
            self.first_offset = struct.unpack(self.byte_order + "Q", extra)[0]
        else:
            raise _corrupt("not a TIFF header")

    def _read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise _corrupt("TIFF data points past the end of the file")
        self._fp.seek(offset)
        data = self._fp.read(length)
        if len(data) != length:
            raise _corrupt("TIFF data points past the end of the file")
        return data

    def read_raw(self, offset: int, length: int) -> bytes:
        return self._read(offset, length)

    def read_dir(self, offset: int) -> dict[int, _RawEntry]:
        bo = self.byte_order
        if self.big:
            count = struct.unpack(bo + "Q", self._read(offset, 8))[0]
            entry_size, field_size, head_size = 20, 8, 8
        else:
            count = struct.unpack(bo + "H", self._read(offset, 2))[0]
            entry_size, field_size, head_size = 12, 4, 2
        if count > 4096:
            raise _corrupt("damaged TIFF directory")
        block = self._read(offset + head_size, count * entry_size)
        entries: dict[int, _RawEntry] = {}
        for i in range(count):
            pos = i * entry_size
            tag, type_ = struct.unpack_from(bo + "HH", block, pos)
            count_value = struct.unpack_from(bo + ("Q" if self.big else "I"), block, pos + 4)[0]
            field = block[pos + entry_size - field_size : pos + entry_size]
            if type_ in _TIFF_TYPE_SIZES and tag not in entries:
                entries[tag] = _RawEntry(type_, count_value, field)
        return entries

    def load(self, raw: _RawEntry) -> _TiffEntry:
        length = _TIFF_TYPE_SIZES[raw.type] * raw.n
        if length > self._size:
            raise _corrupt("damaged TIFF tag")
        if length <= len(raw.field):
            data = raw.field[:length]
        else:
            offset = struct.unpack(self.byte_order + ("Q" if self.big else "I"), raw.field)[0]
            data = self._read(offset, length)
        return _TiffEntry(raw.type, raw.n, _to_little_endian(data, raw.type, self.byte_order))

    def ints(self, entries: dict[int, _RawEntry], tag: int, default: list[int]) -> list[int]:
        raw = entries.get(tag)
        if raw is None:
            return default
        values = self.load(raw).ints()
        return values or default

    def read_tree(self, offset: int, keep: Callable[[int], bool], depth: int = 0) -> _TiffDir:
        """Read a directory with its EXIF/GPS/Interop sub-directories, skipping anything unreadable."""
        result = _TiffDir({}, {})
        for tag, raw in self.read_dir(offset).items():
            if tag in _POINTER_TAGS:
                if depth < 2 and raw.n == 1 and raw.type in (_LONG, 13, 16, 18):
                    try:
                        pointer = self.load(raw).ints()[0]
                        result.subdirs[tag] = self.read_tree(pointer, lambda _t: True, depth + 1)
                    except (_FormatError, struct.error, IndexError):
                        pass
                continue
            if not keep(tag) or raw.type in (16, 17, 18):
                continue
            if _TIFF_TYPE_SIZES[raw.type] * raw.n > (1 << 20):
                continue
            try:
                result.entries[tag] = self.load(raw)
            except _FormatError:
                continue
        return result


def _serialise_dir(directory: _TiffDir, start: int) -> bytes:
    """Lay out a little-endian classic TIFF directory (values and sub-directories after it) at ``start``."""
    tags = sorted(set(directory.entries) | set(directory.subdirs))
    base = start + 2 + 12 * len(tags) + 4
    heap = bytearray()
    fields: dict[int, tuple[int, int, bytes]] = {}
    for tag in tags:
        entry = directory.entries.get(tag)
        if entry is None:
            continue
        if len(entry.data) <= 4:
            fields[tag] = (entry.type, entry.count, entry.data.ljust(4, b"\x00"))
        else:
            fields[tag] = (entry.type, entry.count, struct.pack("<I", base + len(heap)))
            heap += entry.data
            if len(heap) % 2:
                heap.append(0)
    for tag in sorted(directory.subdirs):
        offset = base + len(heap)
        heap += _serialise_dir(directory.subdirs[tag], offset)
        fields[tag] = (_LONG, 1, struct.pack("<I", offset))
    table = bytearray(struct.pack("<H", len(tags)))
    for tag in tags:
        type_, count, field = fields[tag]
        table += struct.pack("<HHI", tag, type_, count) + field
    table += b"\x00\x00\x00\x00"
    return bytes(table + heap)


def _entry(type_: int, values: Iterable[int]) -> _TiffEntry:
    items = list(values)
    code = _TIFF_TYPE_CODES[type_]
    return _TiffEntry(type_, len(items), struct.pack(f"<{len(items)}{code}", *items))


def _bytes_entry(type_: int, data: bytes) -> _TiffEntry:
    return _TiffEntry(type_, len(data), data)


def _rational_entry(value: float) -> _TiffEntry:
    frac = Fraction(value).limit_denominator(10000)
    num, den = frac.numerator, frac.denominator
    while num > 0xFFFFFFFF:
        num, den = num // 2, max(1, den // 2)
    return _TiffEntry(_RATIONAL, 1, struct.pack("<II", num, den))


# --------------------------------------------------------------------------------------------------------------
# EXIF and XMP


def _normalise_exif(data: bytes | str | None) -> bytes | None:
    """Bring EXIF from any container into Pillow's prefixed form; drop it when it is not TIFF-structured."""
    if not data or isinstance(data, str):
        return None
    body = data[6:] if data.startswith(_EXIF_PREFIX) else data
    if body[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    return _EXIF_PREFIX + body


def _exif_ifd0(body: bytes | bytearray) -> tuple[str, int, int]:
    byte_order = "<" if body[:2] == b"II" else ">"
    offset = struct.unpack_from(byte_order + "I", body, 4)[0]
    count = struct.unpack_from(byte_order + "H", body, offset)[0]
    return byte_order, offset, count


def _exif_orientation(exif: bytes | None) -> int:
    if not exif:
        return 1
    body = exif[6:]
    try:
        byte_order, offset, count = _exif_ifd0(body)
        for i in range(count):
            tag, type_, n = struct.unpack_from(byte_order + "HHI", body, offset + 2 + 12 * i)
            if tag == _TAG_ORIENTATION and type_ == _SHORT and n >= 1:
                value = struct.unpack_from(byte_order + "H", body, offset + 10 + 12 * i)[0]
                return value if 1 <= value <= 8 else 1
    except struct.error:
        return 1
    return 1


def _patch_exif(exif: bytes, size: tuple[int, int] | None) -> bytes:
    """Make EXIF describe the pixels we hand out: upright, without the old thumbnail, with the right size.

    Patching in place keeps every other byte (maker notes, offsets) exactly as the camera wrote it, which a
    re-serialisation would not.
    """
    body = bytearray(exif[6:])
    try:
        byte_order, offset, count = _exif_ifd0(body)
        exif_ifd = None
        for i in range(count):
            pos = offset + 2 + 12 * i
            tag, type_, n = struct.unpack_from(byte_order + "HHI", body, pos)
            if tag == _TAG_ORIENTATION and type_ == _SHORT and n == 1:
                struct.pack_into(byte_order + "H", body, pos + 8, 1)
            elif tag == _TAG_EXIF_IFD and type_ in (_LONG, 13) and n == 1:
                exif_ifd = struct.unpack_from(byte_order + "I", body, pos + 8)[0]
        struct.pack_into(byte_order + "I", body, offset + 2 + 12 * count, 0)
        if exif_ifd is not None and size is not None:
            sub_count = struct.unpack_from(byte_order + "H", body, exif_ifd)[0]
            for i in range(min(sub_count, 4096)):
                pos = exif_ifd + 2 + 12 * i
                tag, type_, n = struct.unpack_from(byte_order + "HHI", body, pos)
                value = size[0] if tag == 40962 else size[1] if tag == 40963 else None
                if value is None or n != 1:
                    continue
                if type_ == _SHORT and value <= 0xFFFF:
                    struct.pack_into(byte_order + "H", body, pos + 8, value)
                elif type_ == _LONG:
                    struct.pack_into(byte_order + "I", body, pos + 8, value)
    except struct.error:
        return exif
    return _EXIF_PREFIX + bytes(body)


def _exif_dir(exif: bytes) -> _TiffDir | None:
    body = exif[6:]
    try:
        reader = _TiffReader(io.BytesIO(body), len(body))
        return reader.read_tree(reader.first_offset, lambda tag: tag not in _TIFF_STRUCTURE_TAGS)
    except (_FormatError, struct.error):
        return None


def _exif_from_dir(directory: _TiffDir) -> bytes:
    return _EXIF_PREFIX + b"II*\x00" + struct.pack("<I", 8) + _serialise_dir(directory, 8)


_XMP_ORIENTATION_ATTR = re.compile(rb"(tiff:Orientation\s*=\s*[\"'])[1-8]([\"'])")
_XMP_ORIENTATION_ELEM = re.compile(rb"(<tiff:Orientation>\s*)[1-8](\s*</tiff:Orientation>)")


def _reset_xmp_orientation(xmp: bytes | None) -> bytes | None:
    """Some viewers trust XMP's orientation over EXIF's, so it must be reset along with it."""
    if not xmp:
        return None
    xmp = _XMP_ORIENTATION_ATTR.sub(rb"\g<1>1\g<2>", xmp)
    return _XMP_ORIENTATION_ELEM.sub(rb"\g<1>1\g<2>", xmp)


def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes) and value:
        return value
    if isinstance(value, str) and value:
        return value.encode("utf-8")
    return None


def _clean_dpi(value: object) -> tuple[float, float] | None:
    try:
        x, y = (float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    if not (0 < x < 1e6 and 0 < y < 1e6):
        return None
    return (x, y)


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into displayed pixels for EXIF orientation 1-8 (returns views, no copies)."""
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.swapaxes(0, 1)
    if orientation == 6:
        return array[::-1].swapaxes(0, 1)
    if orientation == 7:
        return array[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return array[:, ::-1].swapaxes(0, 1)
    return array


def _displayed_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation >= 5 else (width, height)


# --------------------------------------------------------------------------------------------------------------
# PNG container


@dataclass
class _PngFile:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool
    idat: list[bytes]
    trns: bytes | None = None
    icc: bytes | None = None
    exif: bytes | None = None
    raw_profile_exif: bytes | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None


_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _inflate_limited(data: bytes, limit: int = _MAX_METADATA_BYTES) -> bytes | None:
    try:
        inflater = zlib.decompressobj()
        out = inflater.decompress(data, limit)
    except zlib.error:
        return None
    return None if inflater.unconsumed_tail else out


def _raw_profile(text: bytes) -> bytes | None:
    """Decode ImageMagick's hex 'Raw profile type ...' text chunks, the older way PNG carried EXIF/XMP."""
    try:
        lines = text.strip().split(b"\n")
        length = int(lines[1])
        return bytes.fromhex(b"".join(lines[2:]).decode("ascii"))[:length]
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def _png_text(png: _PngFile, kind: bytes, body: bytes) -> None:
    keyword, _, rest = body.partition(b"\x00")
    if kind == b"iTXt":
        if len(rest) < 2:
            return
        compressed, text_start = rest[0], rest[2:]
        _, _, text_start = text_start.partition(b"\x00")
        _, _, text = text_start.partition(b"\x00")
        if compressed:
            text = _inflate_limited(text) or b""
    elif kind == b"zTXt":
        text = _inflate_limited(rest[1:]) or b""
    else:
        text = rest
    if keyword == b"XML:com.adobe.xmp" and text:
        png.xmp = text
    elif keyword in (b"Raw profile type exif", b"Raw profile type APP1") and png.raw_profile_exif is None:
        png.raw_profile_exif = _raw_profile(text)
    elif keyword == b"Raw profile type xmp" and png.xmp is None:
        png.xmp = _raw_profile(text)


def _parse_png(fp: IO[bytes], *, keep_idat: bool) -> _PngFile:
    """Walk the chunks: metadata for every PNG, and the compressed pixels when we decode them ourselves.

    Without ``keep_idat`` the pixel data is skipped with seeks, which keeps header probes cheap; damage in
    it is left for the decoder to report.
    """
    fp.seek(len(_PNG_SIGNATURE))
    png: _PngFile | None = None
    while True:
        head = fp.read(8)
        if len(head) < 8:
            if png is None or keep_idat:
                raise _corrupt("the PNG data ends early")
            break
        length, kind = struct.unpack(">I4s", head)
        if length > 0x7FFFFFFF:
            raise _corrupt("damaged PNG chunk")
        if png is None and (kind != b"IHDR" or length != 13):
            raise _corrupt("the PNG header is missing")
        if kind == b"IDAT" and not keep_idat:
            fp.seek(length + 4, os.SEEK_CUR)
            continue
        body = fp.read(length)
        crc = fp.read(4)
        if len(body) < length or len(crc) < 4:
            if png is None or keep_idat:
                raise _corrupt("the PNG data ends early")
            break
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            if not kind[0] & 0x20:  # critical chunk: pixels or structure are damaged
                raise _corrupt(f"the PNG {kind.decode('latin-1')} chunk is damaged")
            continue
        if kind == b"IHDR":
            width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", body)
            valid = (
                0 < width < 2**31
                and 0 < height < 2**31
                and depth in _PNG_DEPTHS.get(colour, ())
                and compression == 0
                and filtering == 0
                and interlace in (0, 1)
            )
            if not valid:
                raise _corrupt("invalid PNG header")
            png = _PngFile(width, height, depth, colour, interlace == 1, [])
        elif png is None:
            continue
        elif kind == b"IDAT":
            png.idat.append(body)
        elif kind == b"IEND":
            break
        elif kind == b"tRNS":
            png.trns = body
        elif kind == b"iCCP":
            _, _, rest = body.partition(b"\x00")
            png.icc = _inflate_limited(rest[1:]) if rest[:1] == b"\x00" else None
        elif kind == b"eXIf":
            png.exif = body
        elif kind in (b"iTXt", b"tEXt", b"zTXt"):
            _png_text(png, kind, body)
        elif kind == b"pHYs" and len(body) == 9:
            ppm_x, ppm_y, unit = struct.unpack(">IIB", body)
            if unit == 1:
                png.dpi = _clean_dpi((ppm_x * 0.0254, ppm_y * 0.0254))
    if png is None:
        raise _corrupt("the PNG header is missing")
    return png


def _png_source_mode(png: _PngFile) -> str:
    if png.bit_depth == 16:
        return {0: "I;16", 2: "RGB;16", 4: "LA;16", 6: "RGBA;16"}[png.colour_type]
    if png.colour_type == 0:
        return "1" if png.bit_depth == 1 else "L"
    return {2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}[png.colour_type]


def _png_metadata(png: _PngFile) -> ImageMetadata:
    return ImageMetadata(
        format="PNG",
        source_mode=_png_source_mode(png),
        bit_depth=16 if png.bit_depth == 16 else 8,
        grayscale=png.colour_type in (0, 4),
        exif=_normalise_exif(png.exif) or _normalise_exif(png.raw_profile_exif),
        icc_profile=png.icc,
        xmp=png.xmp,
        dpi=png.dpi,
    )


# --------------------------------------------------------------------------------------------------------------
# PNG filters (16-bit decoding)


def _skewed(array: np.ndarray, rows: int, width: int) -> np.ndarray:
    """View a (diagonal, row, lane) buffer as (row, pixel, lane), pixel (r, x) living at [x + r + 2, r + 1]."""
    s0, s1, s2 = array.strides
    return as_strided(array[2:, 1:], shape=(rows, width, array.shape[2]), strides=(s0 + s1, s0, s2))


def _unfilter_wavefront(filtered: np.ndarray, types: np.ndarray, prev: np.ndarray, out: np.ndarray, bpp: int) -> None:
    """Undo Average/Paeth (and any other filter mixed in) for a band of rows, one anti-diagonal per step.

    Average and Paeth make every pixel depend on its left, upper and upper-left neighbours, so no row can be
    done in one vector operation. All pixels on one anti-diagonal (row + x constant) are independent of each
    other, though. Storing the band skewed (pixel (r, x) at [x + r + 2, r + 1]) makes each anti-diagonal a
    contiguous slice, and its three neighbours slices of the two previous diagonals, so a band of k rows
    takes width + k vector steps instead of width * k scalar ones. Row and column 0 of the buffer hold the
    previous row and the zero left edge.
    """
    rows, rowbytes = filtered.shape
    width = rowbytes // bpp
    depth = width + rows + 1
    recon = np.zeros((depth, rows + 1, bpp), np.int16)
    source = np.zeros((depth, rows + 1, bpp), np.uint8)
    _skewed(source, rows, width)[...] = filtered.reshape(rows, width, bpp)
    recon[1 : width + 1, 0] = prev.reshape(width, bpp)
    kinds = {int(t) for t in np.unique(types)}
    only = next(iter(kinds)) if len(kinds) == 1 else None
    masks = {kind: (types == kind).astype(np.int16)[:, None] for kind in kinds}
    for diag in range(2, width + rows + 1):
        lo = max(1, diag - width)
        hi = min(rows, diag - 1) + 1
        left = recon[diag - 1, lo:hi]
        up = recon[diag - 1, lo - 1 : hi - 1]
        up_left = recon[diag - 2, lo - 1 : hi - 1]
        if only == 3:
            pred = (left + up) >> 1
        else:
            paeth = None
            if 4 in kinds:
                # Paeth with arithmetic selects: np.where is several times slower on short int16 vectors.
                d_up = up - up_left
                d_left = left - up_left
                dist_left = np.abs(d_up)
                dist_up = np.abs(d_left)
                dist_corner = np.abs(d_up + d_left)
                choice = up_left + d_up * (dist_up <= dist_corner)
                paeth = choice + (left - choice) * (dist_left <= np.minimum(dist_up, dist_corner))
            if only == 4 and paeth is not None:
                pred = paeth
            else:
                pred = np.zeros_like(left)
                for kind in kinds:
                    mask = masks[kind][lo - 1 : hi - 1]
                    if kind == 1:
                        pred += mask * left
                    elif kind == 2:
                        pred += mask * up
                    elif kind == 3:
                        pred += mask * ((left + up) >> 1)
                    elif kind == 4 and paeth is not None:
                        pred += mask * paeth
        np.bitwise_and(source[diag, lo:hi] + pred, 255, out=recon[diag, lo:hi])
    out.reshape(rows, width, bpp)[...] = _skewed(recon, rows, width)


def _png_unfilter(data: np.ndarray, height: int, rowbytes: int, bpp: int) -> np.ndarray:
    """Reverse PNG's per-row filters; runs of None/Sub/Up rows are done a whole block at a time."""
    stride = rowbytes + 1
    rows = data[: height * stride].reshape(height, stride)
    types = rows[:, 0].astype(np.int64)
    if height and int(types.max()) > 4:
        raise _corrupt("unknown PNG filter type")
    filtered = rows[:, 1:]
    out = np.empty((height, rowbytes), np.uint8)
    width = rowbytes // bpp
    band = int(_WAVEFRONT_BUDGET_BYTES // (3 * bpp * (width + 512)))
    band = max(16, min(height, band))
    prev = np.zeros(rowbytes, np.uint8)
    y = 0
    while y < height:
        kind = int(types[y])
        if kind >= 3:
            end = min(height, y + band)
            _unfilter_wavefront(filtered[y:end], types[y:end], prev, out[y:end], bpp)
        else:
            different = np.flatnonzero(types[y:] != kind)
            end = y + int(different[0]) if different.size else height
            block = filtered[y:end]
            if kind == 0:
                out[y:end] = block
            elif kind == 1:
                count = end - y
                summed = np.cumsum(block.reshape(count, width, bpp), axis=1, dtype=np.uint8)
                out[y:end] = summed.reshape(count, rowbytes)
            else:
                # Row by row: cumsum down axis 0 of a C-ordered block is ~20x slower (strided columns).
                above = prev
                for row in range(y, end):
                    np.add(filtered[row], above, out=out[row])
                    above = out[row]
        prev = out[end - 1]
        y = end
    return out


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _inflate_exact(chunks: list[bytes], expected: int) -> np.ndarray:
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(b"".join(chunks), expected)
    except zlib.error:
        raise _corrupt("the compressed PNG pixel data is damaged") from None
    if len(data) < expected:
        raise _corrupt("the PNG pixel data ends early")
    return np.frombuffer(data, np.uint8)


def _png16_pixels(png: _PngFile) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a 16-bit PNG to big-endian uint16 (colour planes, alpha) at full precision."""
    if not png.idat:
        raise _corrupt("the PNG has no pixel data")
    channels = _PNG_CHANNELS[png.colour_type]
    bpp = 2 * channels
    width, height = png.width, png.height
    if not png.interlaced:
        raw = _inflate_exact(png.idat, height * (width * bpp + 1))
        pixels = _png_unfilter(raw, height, width * bpp, bpp).view(">u2").reshape(height, width, channels)
    else:
        passes = []
        for x0, y0, dx, dy in _ADAM7:
            pass_w = (width - x0 + dx - 1) // dx
            pass_h = (height - y0 + dy - 1) // dy
            if pass_w > 0 and pass_h > 0:
                passes.append((x0, y0, dx, dy, pass_w, pass_h))
        raw = _inflate_exact(png.idat, sum(h * (w * bpp + 1) for *_, w, h in passes))
        pixels = np.empty((height, width, channels), ">u2")
        pos = 0
        for x0, y0, dx, dy, pass_w, pass_h in passes:
            size = pass_h * (pass_w * bpp + 1)
            sub = _png_unfilter(raw[pos : pos + size], pass_h, pass_w * bpp, bpp)
            pixels[y0::dy, x0::dx] = sub.view(">u2").reshape(pass_h, pass_w, channels)
            pos += size
    if channels in (2, 4):
        return pixels[:, :, : channels - 1], pixels[:, :, channels - 1]
    alpha = None
    if png.trns is not None and len(png.trns) >= 2 * channels:
        key = np.frombuffer(png.trns[: 2 * channels], ">u2")
        transparent = np.all(pixels == key, axis=2)
        alpha = np.where(transparent, 0, 65535).astype(np.uint16)
    return pixels, alpha


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _deflate(data: memoryview, level: int = _COMPRESS_LEVEL) -> bytes:
    """zlib-compress a PNG's pixel stream, on all cores when it is big enough to be worth it."""
    if len(data) <= 2 * _DEFLATE_BLOCK or (os.cpu_count() or 1) < 2:
        return zlib.compress(data, level)
    return _deflate_blocks(data, level, _DEFLATE_BLOCK)


def _deflate_blocks(data: memoryview, level: int, block: int) -> bytes:
    """One zlib stream compressed block by block in threads, pigz-style.

    Blocks are raw-deflated separately with the previous 32 KiB as preset dictionary and sync-flushed, which
    concatenates into a single valid stream that compresses almost as well as a serial one.
    """
    total = len(data)
    starts = list(range(0, total, block))

    def compress_block(start: int) -> bytes:
        if start:
            packer = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=bytes(data[max(0, start - 32768) : start]))
        else:
            packer = zlib.compressobj(level, zlib.DEFLATED, -15)
        last = start + block >= total
        return packer.compress(data[start : start + block]) + packer.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    body = b"".join(_parallel_map(compress_block, starts))
    return b"\x78\x9c" + body + struct.pack(">I", zlib.adler32(data))


def _encode_png16(
    pixels: np.ndarray,
    icc: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
    dpi: tuple[float, float] | None,
) -> bytes:
    """Write what Pillow cannot: 16-bit PNG, Up-filtered (cheap, and helps photos), with full metadata."""
    height, width, channels = pixels.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = np.ascontiguousarray(pixels, dtype=">u2").reshape(height, width * channels).view(np.uint8)
    rows = np.empty((height, raw.shape[1] + 1), np.uint8)
    rows[:, 0] = 2
    rows[0, 1:] = raw[0]
    np.subtract(raw[1:], raw[:-1], out=rows[1:, 1:])
    parts = [_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))]
    if icc:
        parts.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if dpi:
        ppm = (round(dpi[0] / 0.0254), round(dpi[1] / 0.0254))
        parts.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if xmp:
        parts.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
    if exif:
        parts.append(_png_chunk(b"eXIf", exif[len(_EXIF_PREFIX) :]))
    compressed = _deflate(rows.data.cast("B"))
    step = 1 << 20
    parts.extend(_png_chunk(b"IDAT", compressed[i : i + step]) for i in range(0, len(compressed), step))
    parts.append(_png_chunk(b"IEND", b""))
    return b"".join(parts)


# --------------------------------------------------------------------------------------------------------------
# TIFF pixels (16-bit decoding, all-depth encoding)


@dataclass
class _TiffLayout:
    width: int
    height: int
    samples: int
    bits: list[int]
    sample_format: int
    photometric: int
    compression: int
    planar: int
    predictor: int
    extra: list[int] | None
    orientation: int


def _tiff_layout(reader: _TiffReader, entries: dict[int, _RawEntry]) -> _TiffLayout:
    width = reader.ints(entries, 256, [0])[0]
    height = reader.ints(entries, 257, [0])[0]
    if width <= 0 or height <= 0:
        raise _corrupt("the TIFF image size is missing")
    samples = reader.ints(entries, 277, [1])[0]
    if not 1 <= samples <= 64:
        raise _corrupt("damaged TIFF samples per pixel")
    bits = reader.ints(entries, 258, [1] * samples)
    formats = reader.ints(entries, 339, [1])
    photometric_default = 2 if samples >= 3 else 1
    orientation = reader.ints(entries, _TAG_ORIENTATION, [1])[0]
    return _TiffLayout(
        width=width,
        height=height,
        samples=samples,
        bits=bits,
        sample_format=formats[0],
        photometric=reader.ints(entries, 262, [photometric_default])[0],
        compression=reader.ints(entries, 259, [1])[0],
        planar=reader.ints(entries, 284, [1])[0],
        predictor=reader.ints(entries, 317, [1])[0],
        extra=reader.ints(entries, 338, []) if 338 in entries else None,
        orientation=orientation if 1 <= orientation <= 8 else 1,
    )


def _tiff_metadata(reader: _TiffReader, entries: dict[int, _RawEntry], layout: _TiffLayout, mode: str) -> ImageMetadata:
    def blob(tag: int) -> bytes | None:
        raw = entries.get(tag)
        if raw is None or _TIFF_TYPE_SIZES[raw.type] * raw.n > _MAX_METADATA_BYTES:
            return None
        try:
            return reader.load(raw).data or None
        except _FormatError:
            return None

    exif = None
    try:
        tree = reader.read_tree(reader.first_offset, lambda tag: tag in _TIFF_DESCRIPTIVE_TAGS)
        tree.subdirs.pop(_TAG_INTEROP_IFD, None)
        if tree.entries.keys() - {_TAG_ORIENTATION} or tree.subdirs:
            exif = _exif_from_dir(tree)
    except _FormatError:
        exif = None
    dpi = None
    try:
        unit = reader.ints(entries, 296, [2])[0]
        if unit in (2, 3) and 282 in entries and 283 in entries:
            scale = 2.54 if unit == 3 else 1.0
            x_res = reader.load(entries[282]).numbers()[0]
            y_res = reader.load(entries[283]).numbers()[0]
            dpi = _clean_dpi((x_res * scale, y_res * scale))
    except (_FormatError, IndexError, struct.error):
        dpi = None
    palette = layout.photometric == 3
    return ImageMetadata(
        format="TIFF",
        source_mode=mode,
        bit_depth=16 if max(layout.bits) == 16 else 8,
        grayscale=layout.photometric in (0, 1) and not palette,
        exif=exif,
        icc_profile=blob(_TAG_ICC),
        xmp=blob(_TAG_XMP),
        dpi=dpi,
    )


def _tiff16_mode(layout: _TiffLayout) -> str:
    alpha = _tiff_alpha_kind(layout) is not None
    if layout.photometric in (0, 1):
        return "LA;16" if alpha else "I;16"
    return "RGBA;16" if alpha else "RGB;16"


def _tiff_alpha_kind(layout: _TiffLayout) -> int | None:
    """Which extra sample is alpha: missing ExtraSamples counts as plain alpha, the way Pillow reads 8-bit."""
    base = 1 if layout.photometric in (0, 1) else 3
    if layout.samples <= base:
        return None
    kind = layout.extra[0] if layout.extra else 2
    return None if kind == 0 else kind


_TIFF_VIA_PILLOW = frozenset({5, 32773, 34925, 50000})  # LZW, PackBits, LZMA, Zstandard


def _decompress_with_pillow(data: bytes, compression: int, rowbytes: int, rows: int) -> bytes:
    """Let Pillow's libtiff undo LZW and friends by presenting one strip as an 8-bit grey TIFF.

    These codecs work on bytes whatever the sample size, so a strip of 16-bit samples decodes correctly as
    ``rowbytes`` 8-bit pixels per row; the predictor is undone afterwards on the real 16-bit samples.
    """
    from PIL import TiffImagePlugin

    pad = len(data) % 2
    directory = _TiffDir(
        {
            256: _entry(_LONG, [rowbytes]),
            257: _entry(_LONG, [rows]),
            258: _entry(_SHORT, [8]),
            259: _entry(_SHORT, [compression]),
            262: _entry(_SHORT, [1]),
            273: _entry(_LONG, [8]),
            277: _entry(_SHORT, [1]),
            278: _entry(_LONG, [rows]),
            279: _entry(_LONG, [len(data)]),
        },
        {},
    )
    ifd_offset = 8 + len(data) + pad
    blob = b"II*\x00" + struct.pack("<I", ifd_offset) + data + b"\x00" * pad + _serialise_dir(directory, ifd_offset)
    try:
        with TiffImagePlugin.TiffImageFile(io.BytesIO(blob)) as strip:
            strip.load()
            return strip.tobytes()
    except Exception as exc:
        raise _corrupt(f"a TIFF strip could not be decompressed: {exc}") from None


def _tiff_decompress(data: bytes, compression: int, rowbytes: int, rows: int) -> bytes:
    expected = rowbytes * rows
    if compression == 1:
        return data
    if compression in (8, 32946):
        try:
            return zlib.decompressobj().decompress(data, expected)
        except zlib.error:
            raise _corrupt("a compressed TIFF strip is damaged") from None
    return _decompress_with_pillow(data, compression, rowbytes, rows)


def _tiff16_pixels(reader: _TiffReader, entries: dict[int, _RawEntry], layout: _TiffLayout) -> np.ndarray:
    """Decode a 16-bit TIFF (strips or tiles, chunky or planar, predictor 1/2) to uint16 H×W×samples."""
    if layout.sample_format != 1:
        raise _unsupported("a signed or floating-point 16-bit TIFF")
    if any(b != 16 for b in layout.bits):
        raise _unsupported(f"a TIFF with {'/'.join(map(str, layout.bits))} bits per sample")
    if layout.compression not in (1, 8, 32946) and layout.compression not in _TIFF_VIA_PILLOW:
        raise _unsupported(f"16-bit TIFF compression {layout.compression}")
    if layout.predictor not in (1, 2):
        raise _unsupported(f"16-bit TIFF predictor {layout.predictor}")
    if layout.photometric not in (0, 1, 2) or (layout.photometric == 2 and layout.samples < 3):
        names = {3: "palette", 5: "CMYK", 6: "YCbCr", 8: "CIELab"}
        raise _unsupported(f"16-bit TIFF colour model {names.get(layout.photometric, layout.photometric)}")
    width, height, samples = layout.width, layout.height, layout.samples
    planes = samples if layout.planar == 2 else 1
    per_chunk = 1 if layout.planar == 2 else samples
    dtype = np.dtype(reader.byte_order + "u2")
    tiled = 322 in entries
    if tiled:
        tile_w = reader.ints(entries, 322, [0])[0]
        tile_h = reader.ints(entries, 323, [0])[0]
        if tile_w <= 0 or tile_h <= 0:
            raise _corrupt("damaged TIFF tile size")
        offsets = reader.ints(entries, 324, [])
        counts = reader.ints(entries, 325, [])
        across, down = -(-width // tile_w), -(-height // tile_h)
        places = [
            (plane, ty * tile_h, tx * tile_w, tile_h, tile_w, tile_h, tile_w)
            for plane in range(planes)
            for ty in range(down)
            for tx in range(across)
        ]
    else:
        strip_rows = min(height, reader.ints(entries, 278, [height])[0] or height)
        offsets = reader.ints(entries, 273, [])
        counts = reader.ints(entries, 279, [])
        per_plane = -(-height // strip_rows)
        places = [
            (plane, s * strip_rows, 0, min(strip_rows, height - s * strip_rows), width, strip_rows, width)
            for plane in range(planes)
            for s in range(per_plane)
        ]
    if len(offsets) < len(places):
        raise _corrupt("TIFF strip offsets are missing")
    if len(counts) < len(places):
        if layout.compression != 1:
            raise _corrupt("TIFF strip sizes are missing")
        counts = [rows * cols * per_chunk * 2 for _, _, _, rows, cols, _, _ in places]

    def decode(item: tuple[int, bytes]) -> np.ndarray:
        index, compressed = item
        _, _, _, rows, _, _, cols = places[index]
        rowbytes = cols * per_chunk * 2
        data = _tiff_decompress(compressed, layout.compression, rowbytes, rows)
        if len(data) < rows * rowbytes:
            raise _corrupt("a TIFF strip is too short")
        chunk = np.frombuffer(data, dtype, count=rows * cols * per_chunk).reshape(rows, cols, per_chunk)
        if layout.predictor == 2:
            return np.cumsum(chunk, axis=1, dtype=np.uint16)
        return chunk

    pixels = np.empty((height, width, samples), np.uint16)
    batch = 64
    for first in range(0, len(places), batch):
        # The file object is shared, so reading stays serial; zlib then inflates the batch on all cores.
        group = [(i, reader.read_raw(offsets[i], counts[i])) for i in range(first, min(first + batch, len(places)))]
        parallel = layout.compression in (8, 32946)
        decoded = _parallel_map(decode, group) if parallel else [decode(item) for item in group]
        for (index, _), chunk in zip(group, decoded, strict=True):
            plane, y0, x0, rows, cols, _, _ = places[index]
            rows = min(rows, height - y0)
            cols = min(cols, width - x0)
            pixels[y0 : y0 + rows, x0 : x0 + cols, plane * per_chunk : (plane + 1) * per_chunk] = chunk[:rows, :cols]
    if layout.photometric == 0:
        np.subtract(65535, pixels[:, :, 0], out=pixels[:, :, 0])
    return pixels


def _encode_tiff(
    pixels: np.ndarray,
    icc: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
    dpi: tuple[float, float] | None,
) -> bytes:
    """Baseline TIFF, deflate with horizontal predictor, 8 or 16 bit; EXIF goes into IFD0 and its sub-IFDs."""
    height, width, channels = pixels.shape
    bits = pixels.dtype.itemsize * 8
    native = np.ascontiguousarray(pixels)
    diff = native.copy()
    np.subtract(native[:, 1:], native[:, :-1], out=diff[:, 1:])
    data = diff.astype("<u2" if bits == 16 else np.uint8, copy=False)
    rowbytes = width * channels * bits // 8
    strip_rows = max(1, min(height, (256 << 10) // max(1, rowbytes)))
    strips = [data[y : y + strip_rows] for y in range(0, height, strip_rows)]
    compressed = _parallel_map(lambda strip: zlib.compress(strip.data.cast("B"), _COMPRESS_LEVEL), strips)
    offsets, body, position = [], bytearray(), 8
    for chunk in compressed:
        offsets.append(position)
        body += chunk
        if len(chunk) % 2:
            body.append(0)
        position = 8 + len(body)
    entries: dict[int, _TiffEntry] = {}
    subdirs: dict[int, _TiffDir] = {}
    exif_tree = _exif_dir(exif) if exif else None
    if exif_tree is not None:
        entries.update(exif_tree.entries)
        subdirs.update({tag: d for tag, d in exif_tree.subdirs.items() if tag in (_TAG_EXIF_IFD, _TAG_GPS_IFD)})
    entries.update(
        {
            256: _entry(_LONG, [width]),
            257: _entry(_LONG, [height]),
            258: _entry(_SHORT, [bits] * channels),
            259: _entry(_SHORT, [8]),
            262: _entry(_SHORT, [1 if channels <= 2 else 2]),
            273: _entry(_LONG, offsets),
            _TAG_ORIENTATION: _entry(_SHORT, [1]),
            277: _entry(_SHORT, [channels]),
            278: _entry(_LONG, [strip_rows]),
            279: _entry(_LONG, [len(c) for c in compressed]),
            284: _entry(_SHORT, [1]),
            317: _entry(_SHORT, [2]),
            339: _entry(_SHORT, [1] * channels),
        }
    )
    if channels in (2, 4):
        entries[338] = _entry(_SHORT, [2])
    if dpi:
        entries[282] = _rational_entry(dpi[0])
        entries[283] = _rational_entry(dpi[1])
        entries[296] = _entry(_SHORT, [2])
    if xmp:
        entries[_TAG_XMP] = _bytes_entry(_BYTE, xmp)
    if icc:
        entries[_TAG_ICC] = _bytes_entry(_UNDEFINED, icc)
    directory = _serialise_dir(_TiffDir(entries, subdirs), position)
    if position + len(directory) >= 1 << 32:
        raise _FormatError("the image is too large for a TIFF file (over 4 GiB)")
    return b"II*\x00" + struct.pack("<I", position) + bytes(body) + directory


# --------------------------------------------------------------------------------------------------------------
# Pillow side (8-bit and everything that is not 16-bit PNG/TIFF)


def _open_with_pillow(fp: IO[bytes], fmt: str) -> ImageFile.ImageFile:
    """Open lazily (header only) with the format's plugin; see the module docstring for why not Image.open."""
    fp.seek(0)
    if fmt == "JPEG":
        from PIL import JpegImagePlugin

        return JpegImagePlugin.jpeg_factory(fp)
    if fmt == "PNG":
        from PIL import PngImagePlugin

        return PngImagePlugin.PngImageFile(fp)
    if fmt == "TIFF":
        from PIL import TiffImagePlugin

        return TiffImagePlugin.TiffImageFile(fp)
    try:
        from PIL import WebPImagePlugin
    except ImportError:
        raise _FormatError("WebP support is missing from this installation") from None
    return WebPImagePlugin.WebPImageFile(fp)


def _pillow_metadata(image: Image.Image, fmt: str) -> ImageMetadata:
    mode = image.mode
    cmyk = mode == "CMYK"
    return ImageMetadata(
        format=fmt,
        source_mode=mode,
        bit_depth=16 if mode.startswith("I;16") else 8,
        grayscale=mode in ("1", "L", "LA", "La") or mode.startswith("I;16"),
        exif=_normalise_exif(image.info.get("exif")),
        icc_profile=None if cmyk else _as_bytes(image.info.get("icc_profile")),
        xmp=_as_bytes(image.info.get("xmp")),
        dpi=_clean_dpi(image.info.get("dpi")),
    )


def _cmyk_to_rgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert through the file's own profile when there is one; naive conversion shifts colours badly."""
    if icc:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            target = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            converted = ImageCms.profileToProfile(image, source, target, outputMode="RGB")
            if converted is not None:
                return converted
        except Exception:  # a broken or unusable profile must not stop the picture loading
            pass
    return image.convert("RGB")


def _pillow_pixels(image: Image.Image, icc: bytes | None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Bring any Pillow mode to gray or RGB integer planes plus optional alpha, and their full-scale value."""
    mode = image.mode
    if mode in ("I", "F", "I;16S", "I;32", "I;32S", "F;32"):
        raise _unsupported("a 32-bit or signed image")
    if mode.startswith("I;16"):
        return np.asarray(image), None, 65535
    if mode in ("La", "RGBa"):
        # Premultiplied alpha (TIFF "associated alpha"); Pillow cannot convert La at all, so undo it here.
        array = np.asarray(image)
        colour = _unpremultiply(array[:, :, :-1], array[:, :, -1], 255)
        return (colour[:, :, 0] if mode == "La" else colour), array[:, :, -1], 255
    if mode == "1":
        image = image.convert("L")  # keeps a tRNS key, handled just below
        mode = "L"
    has_key = "transparency" in image.info
    if mode == "L" and has_key:
        image = image.convert("LA")
    elif (mode in ("P", "RGB") and has_key) or mode == "PA":
        image = image.convert("RGBA")
    elif mode == "CMYK":
        image = _cmyk_to_rgb(image, icc)
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if image.mode == "LA":
        return array[:, :, 0], array[:, :, 1], 255
    if image.mode == "RGBA":
        return array[:, :, :3], array[:, :, 3], 255
    return array, None, 255


# --------------------------------------------------------------------------------------------------------------
# Reading


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise _FormatError(
            f"the image is too large to open safely ({width}×{height} = {width * height:,} pixels; "
            f"the limit is {max_pixels:,})"
        )


def _to_float(
    colour: np.ndarray, alpha: np.ndarray | None, full_scale: int, orientation: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
    colour = _orient(colour, orientation)
    height, width = colour.shape[:2]
    rgb = np.empty((height, width, 3), np.float32)
    source = colour[:, :, None] if colour.ndim == 2 else colour
    if source.shape[2] == 1 or source.shape[2] == 3:
        np.divide(source, np.float32(full_scale), out=rgb, dtype=np.float32)
    else:
        raise _corrupt("unexpected number of colour channels")
    out_alpha = None
    if alpha is not None:
        out_alpha = np.empty((height, width), np.float32)
        np.divide(_orient(alpha, orientation), np.float32(full_scale), out=out_alpha, dtype=np.float32)
    return rgb, out_alpha


def _with_exif(metadata: ImageMetadata, size: tuple[int, int]) -> ImageMetadata:
    exif = _patch_exif(metadata.exif, size) if metadata.exif else None
    return ImageMetadata(
        format=metadata.format,
        source_mode=metadata.source_mode,
        bit_depth=metadata.bit_depth,
        grayscale=metadata.grayscale,
        exif=exif,
        icc_profile=metadata.icc_profile,
        xmp=_reset_xmp_orientation(metadata.xmp),
        dpi=metadata.dpi,
    )


def _decode(data: bytes, max_pixels: int) -> tuple[np.ndarray, np.ndarray | None, int, int, ImageMetadata]:
    """Return stored colour/alpha planes, full-scale value, orientation and metadata for any supported file."""
    fmt = _sniff_format(data[:32])
    stream = io.BytesIO(data)
    if fmt == "PNG":
        png = _parse_png(stream, keep_idat=False)
        _check_size(png.width, png.height, max_pixels)
        metadata = _png_metadata(png)
        orientation = _exif_orientation(metadata.exif)
        if png.bit_depth == 16:
            png = _parse_png(stream, keep_idat=True)
            colour, alpha = _png16_pixels(png)
            return colour, alpha, 65535, orientation, metadata
        image = _open_with_pillow(stream, fmt)
        _load_with_pillow(image)
        colour, alpha, scale = _pillow_pixels(image, None)
        return colour, alpha, scale, orientation, metadata
    if fmt == "TIFF":
        reader = _TiffReader(stream, len(data))
        entries = reader.read_dir(reader.first_offset)
        layout = _tiff_layout(reader, entries)
        _check_size(layout.width, layout.height, max_pixels)
        if max(layout.bits) > 8:
            if max(layout.bits) != 16:
                raise _unsupported(f"a {max(layout.bits)}-bit TIFF")
            metadata = _tiff_metadata(reader, entries, layout, _tiff16_mode(layout))
            samples = _tiff16_pixels(reader, entries, layout)
            base = 1 if layout.photometric in (0, 1) else 3
            colour = samples[:, :, 0] if base == 1 else samples[:, :, :3]
            alpha_kind = _tiff_alpha_kind(layout)
            alpha = samples[:, :, base] if alpha_kind is not None else None
            if alpha is not None and alpha_kind == 1:
                colour = _unpremultiply(colour, alpha, 65535)
            return colour, alpha, 65535, layout.orientation, metadata
        image = _open_with_pillow(stream, fmt)
        metadata = _tiff_metadata(reader, entries, layout, image.mode)
        if image.mode == "CMYK":
            metadata = _drop_icc(metadata)
        _load_with_pillow(image)
        # Pillow's TIFF loader applies the Orientation tag itself and then deletes it; never rotate twice.
        tags = getattr(image, "tag_v2", {})
        orientation = layout.orientation if _TAG_ORIENTATION in tags else 1
        colour, alpha, scale = _pillow_pixels(image, _tiff_icc(reader, entries))
        return colour, alpha, scale, orientation, metadata
    image = _open_with_pillow(stream, fmt)
    _check_size(image.size[0], image.size[1], max_pixels)
    icc = _as_bytes(image.info.get("icc_profile"))
    metadata = _pillow_metadata(image, fmt)
    _load_with_pillow(image)
    colour, alpha, scale = _pillow_pixels(image, icc)
    return colour, alpha, scale, _exif_orientation(metadata.exif), metadata


def _load_with_pillow(image: Image.Image) -> None:
    try:
        image.load()
    except Image.DecompressionBombError:
        width, height = image.size
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise _FormatError(
            f"the image is too large to open safely ({width}×{height} = {width * height:,} pixels; "
            f"the limit of Pillow's decoder is {limit:,})"
        ) from None


def _tiff_icc(reader: _TiffReader, entries: dict[int, _RawEntry]) -> bytes | None:
    raw = entries.get(_TAG_ICC)
    if raw is None:
        return None
    try:
        return reader.load(raw).data
    except _FormatError:
        return None


def _drop_icc(metadata: ImageMetadata) -> ImageMetadata:
    return ImageMetadata(
        metadata.format,
        metadata.source_mode,
        metadata.bit_depth,
        metadata.grayscale,
        metadata.exif,
        None,
        metadata.xmp,
        metadata.dpi,
    )


def _unpremultiply(colour: np.ndarray, alpha: np.ndarray, full_scale: int) -> np.ndarray:
    """Associated-alpha TIFFs store colour × alpha; the network and the other formats want straight colour."""
    a = alpha.astype(np.float64)
    if colour.ndim == 3:
        a = a[:, :, None]
    straight = colour.astype(np.float64) * full_scale / np.maximum(a, 1.0)
    straight[np.broadcast_to(a == 0, straight.shape)] = 0.0
    return np.clip(np.rint(straight), 0, full_scale).astype(colour.dtype.newbyteorder("="))


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "there is not enough memory to open the image"
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return f"the image is too large to open safely ({_one_line(str(exc))})"
    detail = _one_line(str(exc))
    if not detail or "<" in detail or len(detail) > 160:
        return _corrupt().reason
    return _corrupt(detail).reason


def read_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Load a picture as upright float RGB in [0, 1] with its alpha and the metadata needed to save it back.

    Every failure, whatever its cause, surfaces as :class:`ImageReadError` with a one-line message, because
    the caller's only sensible reaction is to show it.
    """
    source = Path(path)
    _stat_input(source)
    data = _read_bytes(source)
    try:
        colour, alpha, scale, orientation, metadata = _decode(data, max_pixels)
        rgb, out_alpha = _to_float(colour, alpha, scale, orientation)
        metadata = _with_exif(metadata, (rgb.shape[1], rgb.shape[0]))
    except ImageReadError:
        raise
    except _FormatError as exc:
        raise ImageReadError(source, exc.reason) from exc
    except Exception as exc:  # decoders raise a zoo of types; the contract is one
        raise ImageReadError(source, _describe_failure(exc)) from exc
    return LoadedImage(rgb=rgb, alpha=out_alpha, metadata=metadata, path=source)


def read_image_header(path: str | os.PathLike[str]) -> ImageHeader:
    """Size and metadata without decoding pixels, for size checks before loading and for file dialogs."""
    source = Path(path)
    size = _stat_input(source)
    try:
        with source.open("rb") as fp:
            fmt = _sniff_format(fp.read(32))
            if fmt == "PNG":
                png = _parse_png(fp, keep_idat=False)
                width, height, metadata = png.width, png.height, _png_metadata(png)
                orientation = _exif_orientation(metadata.exif)
            elif fmt == "TIFF":
                reader = _TiffReader(fp, size)
                entries = reader.read_dir(reader.first_offset)
                layout = _tiff_layout(reader, entries)
                mode = _tiff16_mode(layout) if max(layout.bits) > 8 else _open_with_pillow(fp, fmt).mode
                metadata = _tiff_metadata(reader, entries, layout, mode)
                if mode == "CMYK":
                    metadata = _drop_icc(metadata)
                width, height, orientation = layout.width, layout.height, layout.orientation
            else:
                image = _open_with_pillow(fp, fmt)
                width, height = image.size
                metadata = _pillow_metadata(image, fmt)
                orientation = _exif_orientation(metadata.exif)
    except ImageReadError:
        raise
    except _FormatError as exc:
        raise ImageReadError(source, exc.reason) from exc
    except PermissionError as exc:
        raise ImageReadError(source, "permission denied") from exc
    except Exception as exc:  # same single-type contract as read_image
        raise ImageReadError(source, _describe_failure(exc)) from exc
    shown = _displayed_size(width, height, orientation)
    return ImageHeader(shown[0], shown[1], _with_exif(metadata, shown))


# --------------------------------------------------------------------------------------------------------------
# Writing


def _check_float_array(name: str, array: object, ndims: tuple[int, ...]) -> np.ndarray:
    result = np.asarray(array)
    if result.dtype.kind != "f":
        raise ValueError(f"{name} must hold floating-point values in [0, 1], got {result.dtype}")
    if result.ndim not in ndims or (result.ndim == 3 and result.shape[2] != 3):
        raise ValueError(f"{name} has shape {result.shape}; expected H×W×3 or H×W")
    if result.shape[0] == 0 or result.shape[1] == 0:
        raise ValueError(f"{name} is empty")
    return result


def _quantise(
    colour: np.ndarray, alpha: np.ndarray | None, *, gray: bool, flatten: bool, full_scale: int
) -> np.ndarray:
    """Round (not truncate) to integers, a block of rows at a time so huge images do not double in memory."""
    height, width = colour.shape[:2]
    colour_channels = 1 if gray else 3
    keep_alpha = alpha is not None and not flatten
    out = np.empty((height, width, colour_channels + int(keep_alpha)), np.uint16 if full_scale > 255 else np.uint8)
    step = max(1, (1 << 20) // width)

    def clean(block: np.ndarray) -> npt.NDArray[np.float32]:
        values = np.nan_to_num(block.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(values, 0.0, 1.0, out=values)

    def to_int(values: npt.NDArray[np.float32]) -> np.ndarray:
        return np.floor(values * np.float32(full_scale) + np.float32(0.5))

    for y in range(0, height, step):
        block = clean(colour[y : y + step])
        if block.ndim == 2:
            block = block[:, :, None]
        a = clean(alpha[y : y + step])[:, :, None] if alpha is not None else None
        if flatten and a is not None:
            block = block * a + (1.0 - a)  # composite on white, the paper colour people expect
        if gray and block.shape[2] == 3:
            block = (block[:, :, 0:1] * 0.299 + block[:, :, 1:2] * 0.587 + block[:, :, 2:3] * 0.114).astype(np.float32)
        elif not gray and block.shape[2] == 1:
            block = np.repeat(block, 3, axis=2)
        out[y : y + step, :, :colour_channels] = to_int(block)
        if keep_alpha and a is not None:
            out[y : y + step, :, colour_channels:] = to_int(a)
    return out


def _icc_fits(icc: bytes | None, gray: bool) -> bytes | None:
    """A profile for another colour space (CMYK, or gray on RGB) makes viewers misrender or reject the file."""
    if not icc or len(icc) < 128:
        return None
    return icc if icc[16:20] == (b"GRAY" if gray else b"RGB ") else None


def _encode(
    fmt: str,
    pixels: np.ndarray,
    quality: int,
    icc: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
    dpi: tuple[float, float] | None,
) -> bytes:
    if fmt == "TIFF":
        return _encode_tiff(pixels, icc, exif, xmp, dpi)
    if fmt == "PNG" and pixels.dtype == np.uint16:
        return _encode_png16(pixels, icc, exif, xmp, dpi)
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        # Optimised Huffman tables save 2-28 % but make Pillow encode the whole file in one call
        # that holds the GIL (350 ms at 12 MP), so an editor window stalls while a large photo is
        # written on a background thread: large photos get the standard tables, which stream.
        optimize = pixels.shape[0] * pixels.shape[1] <= OPTIMIZED_JPEG_MAX_PIXELS
        options.update(quality=quality, optimize=optimize, subsampling=0 if quality >= 90 else 2)
        if xmp:
            options["xmp"] = xmp
        if dpi:
            options["dpi"] = dpi
    elif fmt == "WEBP":
        options.update(quality=quality, method=4)
        if xmp:
            options["xmp"] = xmp
    else:
        from PIL import PngImagePlugin

        options["compress_level"] = _COMPRESS_LEVEL
        if dpi:
            options["dpi"] = dpi
        if xmp:
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", errors="replace"))
            options["pnginfo"] = info
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt, **options)
    except OSError:
        if not options.get("optimize"):
            raise
        # Optimised Huffman tables make libjpeg hold the whole file in one buffer, which Pillow
        # sizes at 1-2 bytes per pixel: a very noisy photo at high quality needs more and fails
        # ("broken data stream"). Without the optimisation the encoder streams: a few % larger.
        options["optimize"] = False
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _resolve_format(path: Path, format: str | None) -> str:
    if format is None:
        return format_for_path(path)
    fmt = _FORMAT_ALIASES.get(format.upper())
    if fmt is None:
        raise ImageWriteError(path, f"unknown image format '{format}'; use JPEG, PNG, TIFF or WebP")
    return fmt


def _resolve_depth(path: Path, fmt: str, bit_depth: int | None, metadata: ImageMetadata | None) -> int:
    if bit_depth is None:
        wanted = metadata.bit_depth if metadata is not None else 8
        return 8 if fmt in _EIGHT_BIT_ONLY or wanted != 16 else 16
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and fmt in _EIGHT_BIT_ONLY:
        name = "WebP" if fmt == "WEBP" else fmt
        raise ImageWriteError(path, f"{name} files can only hold 8 bits per channel; save as PNG or TIFF for 16")
    return bit_depth


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write beside the target and rename over it, so a failure never leaves half a file or loses the old one."""
    if path.is_symlink():
        # Replace what the link points to, not the link itself (which would silently turn it into a copy).
        shown = path
        try:
            path = path.resolve(strict=True)
        except OSError as exc:
            raise ImageWriteError(shown, f"the link points to a missing file ({exc.strerror or exc})") from exc
    folder = path.parent
    if path.is_dir():
        raise ImageWriteError(path, "a folder with this name already exists")
    if not folder.is_dir():
        raise ImageWriteError(path, f"the folder '{folder}' does not exist")
    existing_mode = None
    try:
        existing_mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write the file ({exc.strerror or exc})") from exc
    if existing_mode is not None and not os.access(path, os.W_OK):
        raise ImageWriteError(path, "the file is read-only")
    temp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except PermissionError as exc:
        raise ImageWriteError(path, "permission denied: cannot write in this folder") from exc
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write the file ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        if existing_mode is not None:
            os.chmod(temp, existing_mode)
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise ImageWriteError(path, f"cannot write the file ({exc.strerror or exc})") from exc
        raise


def write_image(
    path: str | os.PathLike[str],
    rgb: npt.ArrayLike,
    alpha: npt.ArrayLike | None = None,
    *,
    metadata: ImageMetadata | None = None,
    format: str | None = None,
    bit_depth: int | None = None,
    quality: int = 95,
) -> Path:
    """Save float pixels (clipped to [0, 1]) carrying over the source's depth, gray-ness and metadata.

    ``bit_depth=None`` keeps the source's depth where the format can hold it. JPEG has no alpha, so a
    picture with alpha is composited onto white there. Invalid arrays are programming errors (ValueError);
    anything the user can cause (format, depth for the format, destination) is :class:`ImageWriteError`.
    """
    target = Path(path)
    fmt = _resolve_format(target, format)
    colour = _check_float_array("rgb", rgb, (2, 3))
    mask = None
    if alpha is not None:
        mask = _check_float_array("alpha", alpha, (2,))
        if mask.shape != colour.shape[:2]:
            raise ValueError(f"alpha has shape {mask.shape}; expected {colour.shape[:2]}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    depth = _resolve_depth(target, fmt, bit_depth, metadata)
    gray = colour.ndim == 2 or (metadata is not None and metadata.grayscale)
    if fmt == "WEBP":
        gray = False  # WebP stores colour only
    pixels = _quantise(colour, mask, gray=gray, flatten=fmt == "JPEG", full_scale=65535 if depth == 16 else 255)
    height, width = pixels.shape[:2]
    icc = exif = xmp = None
    dpi = None
    if metadata is not None:
        icc = _icc_fits(metadata.icc_profile, gray)
        exif_in = _normalise_exif(metadata.exif)
        exif = _patch_exif(exif_in, (width, height)) if exif_in else None
        xmp = _reset_xmp_orientation(metadata.xmp)
        dpi = _clean_dpi(metadata.dpi) if metadata.dpi else None
    try:
        payload = _encode(fmt, pixels, quality, icc, exif, xmp, None if fmt == "WEBP" else dpi)
    except _FormatError as exc:
        raise ImageWriteError(target, exc.reason) from exc
    except MemoryError as exc:
        raise ImageWriteError(target, "there is not enough memory to encode the image") from exc
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ImageWriteError(target, f"could not encode the image as {fmt}: {_one_line(str(exc))}") from exc
    _atomic_write(target, payload)
    return target
