"""Photographers' files built here, never downloaded: a DNG from a small pure-Python TIFF writer (with an
EXIF sub-directory, as cameras write it), and a Display P3 ICC profile (matrix and parametric sRGB curve)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# Tag types: 1 BYTE, 2 ASCII, 3 SHORT, 4 LONG, 5 RATIONAL, 10 SRATIONAL
_FORMATS = {1: "B", 2: "s", 3: "H", 4: "I", 5: "II", 10: "ii"}
Tag = tuple[int, list[float] | list[int] | bytes | str]


def _entry_bytes(type_: int, value: object) -> tuple[int, bytes]:
    if type_ == 2:
        raw = str(value).encode("ascii") + b"\0"
        return len(raw), raw
    if type_ == 7:
        return len(value), bytes(value)  # type: ignore[arg-type]
    values = list(value)  # type: ignore[call-overload]
    if type_ in (5, 10):
        pairs: list[int] = []
        for v in values:
            pairs += [round(v * 10000), 10000]
        return len(values), struct.pack(f"<{len(pairs)}{'I' if type_ == 5 else 'i'}", *pairs)
    return len(values), struct.pack(f"<{len(values)}{_FORMATS[type_]}", *values)


def _directory(tags: dict[int, tuple[int, object]], start: int) -> bytes:
    """One IFD at file offset ``start``, its out-of-line values right after it."""
    heap_start = start + 2 + 12 * len(tags) + 4
    table, heap = struct.pack("<H", len(tags)), b""
    for code, (type_, value) in sorted(tags.items()):
        count, raw = _entry_bytes(type_, value)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\0")
        else:
            field = struct.pack("<I", heap_start + len(heap))
            heap += raw + b"\0" * (len(raw) % 2)
        table += struct.pack("<HHI", code, type_, count) + field
    return table + b"\0\0\0\0" + heap


def write_dng(
    path: Path,
    cfa: np.ndarray,
    *,
    neutral: tuple[float, float, float] = (0.5, 1.0, 0.8),
    black: int = 256,
    white: int = 16383,
    orientation: int = 1,
    iso: int = 3200,
    exposure: float = 1 / 125,
    f_number: float = 2.8,
    make: str = "Testmaker",
    model: str = "Testcam 1",
    taken: str = "2024:05:06 07:08:09",
    lens: str = "Test 50mm F1.8",
) -> Path:
    """A little-endian DNG 1.4 with one uncompressed RGGB Bayer image (``cfa``: uint16 raw values)."""
    height, width = cfa.shape
    pixels = np.ascontiguousarray(cfa, dtype="<u2").tobytes()
    exif_tags: dict[int, tuple[int, object]] = {
        0x829A: (5, [exposure]),
        0x829D: (5, [f_number]),
        0x8827: (3, [iso]),
        0x9003: (2, taken),
        0xA434: (2, lens),
    }
    srgb_d65_xyz_to_rgb = [3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570]
    ifd0: dict[int, tuple[int, object]] = {
        254: (4, [0]),
        256: (4, [width]),
        257: (4, [height]),
        258: (3, [16]),
        259: (3, [1]),
        262: (3, [32803]),  # CFA
        271: (2, make),
        272: (2, model),
        273: (4, [0]),  # strip offset, filled in below
        274: (3, [orientation]),
        277: (3, [1]),
        278: (4, [height]),
        279: (4, [len(pixels)]),
        284: (3, [1]),
        33421: (3, [2, 2]),  # CFARepeatPatternDim
        33422: (1, [0, 1, 1, 2]),  # CFAPattern: R G / G B
        34665: (4, [0]),  # EXIF directory, filled in below
        50706: (1, [1, 4, 0, 0]),  # DNGVersion
        50707: (1, [1, 1, 0, 0]),
        50708: (2, f"{make} {model}"),  # UniqueCameraModel
        50714: (3, [black]),
        50717: (3, [white]),
        50721: (10, srgb_d65_xyz_to_rgb),  # ColorMatrix1: XYZ -> camera, here camera = linear sRGB
        50728: (5, list(neutral)),  # AsShotNeutral
        50778: (3, [21]),  # CalibrationIlluminant1: D65
    }
    # Layout: header, IFD0 (+values), EXIF IFD (+values), pixel data. Sizes do not depend on the offsets.
    ifd0_size = len(_directory(ifd0, 8))
    exif_start = 8 + ifd0_size + (ifd0_size % 2)
    exif_size = len(_directory(exif_tags, exif_start))
    data_start = exif_start + exif_size + (exif_size % 2)
    ifd0[273] = (4, [data_start])
    ifd0[34665] = (4, [exif_start])
    first = _directory(ifd0, 8)
    second = _directory(exif_tags, exif_start)
    blob = b"II*\0" + struct.pack("<I", 8) + first + b"\0" * (ifd0_size % 2) + second + b"\0" * (exif_size % 2)
    assert len(blob) == data_start
    path.write_bytes(blob + pixels)
    return path


def bayer(scene: np.ndarray, neutral: tuple[float, float, float], black: int = 256, white: int = 16383) -> np.ndarray:
    """Raw RGGB values a camera with white balance ``neutral`` records for linear camera-RGB ``scene``."""
    height, width, _ = scene.shape
    gains = np.asarray(neutral, np.float64)
    seen = scene * gains  # a neutral scene reads as ``neutral`` in raw channels
    cfa = np.empty((height, width))
    cfa[0::2, 0::2] = seen[0::2, 0::2, 0]
    cfa[0::2, 1::2] = seen[0::2, 1::2, 1]
    cfa[1::2, 0::2] = seen[1::2, 0::2, 1]
    cfa[1::2, 1::2] = seen[1::2, 1::2, 2]
    return np.rint(black + np.clip(cfa, 0, 1) * (white - black)).astype(np.uint16)


# ----------------------------------------------------------------------------------------------- ICC


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)


def _srgb_curve() -> bytes:
    # parametricCurveType function 3: Y = (aX + b)^g for X >= d, else cX (the sRGB curve)
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    return b"para" + b"\0" * 4 + struct.pack(">HH", 3, 0) + b"".join(_s15(v) for v in params)


def _desc(text: str) -> bytes:
    raw = text.encode("ascii") + b"\0"
    return b"desc" + b"\0" * 4 + struct.pack(">I", len(raw)) + raw + b"\0" * 8 + b"\0" * 67


def matrix_profile(name: str, red: tuple, green: tuple, blue: tuple) -> bytes:
    """An ICC v2 display profile: D50-adapted primaries and the sRGB tone curve."""
    curve = _srgb_curve()
    tags = [
        (b"desc", _desc(name)),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(*red)),
        (b"gXYZ", _xyz(*green)),
        (b"bXYZ", _xyz(*blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        data += b"\0" * (-(start + len(data)) % 4)
        table += signature + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (
        struct.pack(">I", start + len(data))
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\0" * 48
    )
    return header + struct.pack(">I", len(tags)) + table + data


# Display P3's colorants adapted to D50, as Apple's profile states them.
DISPLAY_P3 = matrix_profile(
    "Display P3 (test)", (0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841)
)
