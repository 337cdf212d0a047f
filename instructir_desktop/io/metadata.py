"""What a photo carries besides its pixels (EXIF, ICC, XMP, resolution, the camera's settings), through Pillow.

EXIF blocks follow Pillow's convention (they start with ``b"Exif\\0\\0"``). Pillow parses and serialises them;
this module only decides what is kept: the orientation is reset once the pixels are upright, the pixel size
follows the picture, and the thumbnail (IFD1), which would show the photo as it was before restoration, is
not written back.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

import numpy as np
from PIL import Image, TiffImagePlugin

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
ORIENTATION = 0x0112
# IFD0 tags that describe the photo (not how a file stores it), worth carrying between formats.
DESCRIPTIVE_TAGS = frozenset(
    {0x010E, 0x010F, 0x0110, 0x0112, 0x0131, 0x0132, 0x013B, 0x013C, 0x8298, 0x4746, 0x4749}
    | {0x9C9B, 0x9C9C, 0x9C9D, 0x9C9E, 0x9C9F}
)
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_EXPOSURE, _F_NUMBER, _ISO, _TAKEN, _FOCAL = 0x829A, 0x829D, 0x8827, 0x9003, 0x920A
_PIXEL_X, _PIXEL_Y, _LENS_MAKE, _LENS_MODEL, _MAKER_NOTE = 0xA002, 0xA003, 0xA433, 0xA434, 0x927C


@dataclass(frozen=True)
class CameraInfo:
    """How the photo was taken, as far as the file says: for the answers and defaults that depend on it."""

    make: str | None = None
    model: str | None = None
    lens: str | None = None
    iso: float | None = None
    exposure_time: float | None = None  # seconds
    f_number: float | None = None
    focal_length: float | None = None  # millimetres
    taken: str | None = None  # EXIF form, "YYYY:MM:DD HH:MM:SS"

    def describe(self) -> str:
        parts = [" ".join(p for p in (self.make, self.model) if p)]
        if self.iso:
            parts.append(f"ISO {self.iso:g}")
        if self.exposure_time:
            t = self.exposure_time
            parts.append(f"1/{round(1 / t)} s" if t < 1 else f"{t:g} s")
        if self.f_number:
            parts.append(f"f/{self.f_number:g}")
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class ImageMetadata:
    """What a file carried besides its pixels, kept so that saving can give it back.

    ``exif`` has Orientation 1 because the rotation was applied to the pixels. ``icc_profile`` is the source's
    RGB or gray profile: the pixels of a photo read with an RGB profile other than sRGB were converted to sRGB,
    and writing converts them back to it (or embeds sRGB, if asked). It is None after a CMYK picture was
    converted to sRGB, since the CMYK profile no longer describes the pixels. ``bit_depth`` is 16 for
    16-bit, RAW and floating-point sources.
    """

    format: str
    source_mode: str
    bit_depth: int
    grayscale: bool
    exif: bytes | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    camera: CameraInfo | None = None


def parse_exif(data: bytes | None) -> Image.Exif | None:
    """Pillow's view of an EXIF block (or of a whole TIFF file, which is one with pixels); None if damaged."""
    return read_exif(data)[0]


def read_exif(data: bytes | None) -> tuple[Image.Exif | None, bool]:
    """``parse_exif``, and whether part of the block was damaged: Pillow reads what it can and only
    warns about the rest (those warnings are caught here, so the answer is the same in every run)."""
    if not data:
        return None, False
    exif = Image.Exif()
    with warnings.catch_warnings(record=True) as complaints:
        warnings.simplefilter("always")
        try:
            exif.load(data)
            for pointer in (EXIF_IFD, GPS_IFD):
                exif.get_ifd(pointer)  # read the sub-directories now, so damage there shows here
        except Exception:  # Pillow raises many types on hostile blocks; a photo without its EXIF still opens
            return None, True
    return exif, bool(complaints)


def serialise(exif: Image.Exif) -> bytes | None:
    try:
        data = exif.tobytes()
    except Exception:  # a value Pillow cannot write back; the pixels matter more
        return None
    return data if len(data) > 14 else None


def exif_orientation(exif: bytes | None) -> int:
    parsed = parse_exif(exif)
    value = parsed.get(ORIENTATION) if parsed is not None else None
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_exif(exif: bytes | None, size: tuple[int, int]) -> bytes | None:
    """The block for upright pixels of ``size`` (width, height): orientation 1, pixel size updated, no thumbnail."""
    parsed = parse_exif(exif)
    if parsed is None:
        return None
    if ORIENTATION in parsed:
        parsed[ORIENTATION] = 1
    sub = parsed.get_ifd(EXIF_IFD)
    for tag, value in ((_PIXEL_X, size[0]), (_PIXEL_Y, size[1])):
        if tag in sub:
            sub[tag] = value
    return serialise(parsed)  # Pillow writes IFD0 and its sub-directories, never IFD1


def exif_from_tiff(data: bytes) -> bytes | None:
    """The EXIF worth carrying from a TIFF-structured file (TIFF, DNG, NEF, CR2, ARW...): IFD0's descriptive
    tags, the EXIF directory without the maker note (its offsets only make sense in the original file, and it
    can outgrow a JPEG's EXIF segment), and GPS."""
    parsed = parse_exif(data)
    if parsed is None:
        return None
    kept = Image.Exif()
    for tag in DESCRIPTIVE_TAGS & set(parsed):
        kept[tag] = parsed[tag]
    sub = {tag: value for tag, value in parsed.get_ifd(EXIF_IFD).items() if tag != _MAKER_NOTE}
    if sub:
        kept.get_ifd(EXIF_IFD).update(sub)
    if gps := parsed.get_ifd(GPS_IFD):
        kept.get_ifd(GPS_IFD).update(gps)
    return serialise(kept)


def camera_info(exif: bytes | None) -> CameraInfo | None:
    parsed = parse_exif(exif)
    if parsed is None:
        return None
    sub = parsed.get_ifd(EXIF_IFD)
    info = CameraInfo(
        make=_text(parsed.get(_MAKE)),
        model=_text(parsed.get(_MODEL)),
        lens=_text(sub.get(_LENS_MODEL)),
        iso=_number(sub.get(_ISO)),
        exposure_time=_number(sub.get(_EXPOSURE)),
        f_number=_number(sub.get(_F_NUMBER)),
        focal_length=_number(sub.get(_FOCAL)),
        taken=_text(sub.get(_TAKEN) or parsed.get(_DATETIME)),
    )
    return None if info == CameraInfo() else info


def exif_with_camera(exif: bytes | None, camera: CameraInfo) -> bytes | None:
    """``exif`` (or a new block) with what it lacks of ``camera`` filled in, orientation 1."""
    parsed = parse_exif(exif) or Image.Exif()
    parsed[ORIENTATION] = 1
    for tag, text in ((_MAKE, camera.make), (_MODEL, camera.model)):
        if text and not _text(parsed.get(tag)):
            parsed[tag] = text
    sub = parsed.get_ifd(EXIF_IFD)
    wanted: dict[int, object] = {
        _ISO: int(camera.iso) if camera.iso else None,
        _EXPOSURE: _rational(camera.exposure_time),
        _F_NUMBER: _rational(camera.f_number),
        _FOCAL: _rational(camera.focal_length),
        _TAKEN: camera.taken,
        _LENS_MODEL: camera.lens,
    }
    for tag, value in wanted.items():
        if value and tag not in sub:
            sub[tag] = value
    return serialise(parsed)


def exif_time(moment: datetime | None) -> str | None:
    if moment is None or moment.year < 1980:  # LibRaw gives the epoch when the file has no date
        return None
    return moment.strftime("%Y:%m:%d %H:%M:%S")


def _rational(value: float | None) -> TiffImagePlugin.IFDRational | None:
    if not value or not np.isfinite(value) or value <= 0:
        return None
    return TiffImagePlugin.IFDRational(Fraction(value).limit_denominator(100_000))


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        value = value.strip("\x00 ").strip()
        return value or None
    return None


def _number(value: object) -> float | None:
    if isinstance(value, tuple | list):
        value = value[0] if value else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if np.isfinite(number) and number > 0 else None


_XMP_ORIENTATION_ATTR = re.compile(rb"(tiff:Orientation\s*=\s*[\"'])[1-8]([\"'])")
_XMP_ORIENTATION_ELEM = re.compile(rb"(<tiff:Orientation>\s*)[1-8](\s*</tiff:Orientation>)")


def reset_xmp_orientation(xmp: bytes | None) -> bytes | None:
    if not xmp:
        return None
    xmp = _XMP_ORIENTATION_ATTR.sub(rb"\g<1>1\g<2>", xmp)
    return _XMP_ORIENTATION_ELEM.sub(rb"\g<1>1\g<2>", xmp)


def as_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes) and value:
        return value
    if isinstance(value, str) and value:
        return value.encode("utf-8")
    return None


def clean_dpi(value: object) -> tuple[float, float] | None:
    try:
        x, y = (float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not (0 < x < 1e6 and 0 < y < 1e6):
        return None
    return (x, y)


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into displayed pixels for EXIF orientation 1-8 (returns views, no copies)."""
    if orientation >= 5:
        array = array.swapaxes(0, 1)
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    return array


def displayed_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation >= 5 else (width, height)
