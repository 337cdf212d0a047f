"""Builders and constants shared by the tests split out of test_io_images.py."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

RNG = np.random.default_rng(20240611)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/test"/></rdf:RDF></x:xmpmeta>'
    b'<?xpacket end="w"?>'
)


# ----------------------------------------------------------------------------------------------------------------
# Fixture builders


def make_exif(orientation: int | None = 1, make: str = "TestCam") -> bytes:
    exif = Image.Exif()
    exif[0x010F] = make
    if orientation is not None:
        exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9003] = "2021:02:03 04:05:06"
    return exif.tobytes()


def parse_exif(data: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(data)
    return exif


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filter_rows(raw: np.ndarray, types: list[int], bpp: int) -> np.ndarray:
    """Apply PNG filters the way an encoder does (predictions from the unfiltered bytes)."""
    height, rowbytes = raw.shape
    values = raw.astype(np.int32)
    out = np.empty((height, rowbytes + 1), np.uint8)
    zeros = np.zeros(rowbytes, np.int32)
    for y in range(height):
        row = values[y]
        prev = values[y - 1] if y else zeros
        a = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        c = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        kind = types[y]
        pred = [np.zeros_like(row), a, prev, (a + prev) // 2, paeth(a, prev, c)][kind]
        out[y, 0] = kind
        out[y, 1:] = (row - pred) % 256
    return out


def filter_all_paeth(raw: np.ndarray, bpp: int) -> np.ndarray:
    """Whole-image Paeth filtering in one vectorised pass (for the large timing fixture)."""
    values = raw.astype(np.int16)
    a = np.zeros_like(values)
    a[:, bpp:] = values[:, :-bpp]
    b = np.zeros_like(values)
    b[1:] = values[:-1]
    c = np.zeros_like(values)
    c[1:, bpp:] = values[:-1, :-bpp]
    out = np.empty((raw.shape[0], raw.shape[1] + 1), np.uint8)
    out[:, 0] = 4
    out[:, 1:] = ((values - paeth(a, b, c)) % 256).astype(np.uint8)
    return out


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def make_png(
    pixels: np.ndarray,
    types: list[int] | int,
    *,
    interlace: bool = False,
    extra_chunks: list[bytes] | None = None,
) -> bytes:
    """Hand-encode a PNG (8- or 16-bit, gray/GA/RGB/RGBA) with the given per-row filter types."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bpp = channels * depth // 8
    big = pixels.astype(">u2") if depth == 16 else pixels.astype(np.uint8)

    def encode(sub: np.ndarray, first_type: int) -> bytes:
        raw = np.ascontiguousarray(sub).reshape(sub.shape[0], -1).view(np.uint8)
        if isinstance(types, int):
            row_types = [types] * sub.shape[0]
        else:
            row_types = [types[(first_type + i) % len(types)] for i in range(sub.shape[0])]
        return filter_rows(raw, row_types, bpp).tobytes()

    if interlace:
        data = b"".join(
            encode(big[y0::dy, x0::dx], i) for i, (x0, y0, dx, dy) in enumerate(ADAM7) if big[y0::dy, x0::dx].size
        )
    else:
        data = encode(big, 0)
    compressed = zlib.compress(data, 6)
    half = len(compressed) // 2
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, int(interlace))
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            png_chunk(b"IHDR", header),
            *(extra_chunks or []),
            png_chunk(b"IDAT", compressed[:half]),
            png_chunk(b"IDAT", compressed[half:]),
            png_chunk(b"IEND", b""),
        ]
    )


def build_tiff(byte_order: str, tags: dict[int, tuple[int, list[int] | bytes]], chunks: list[bytes], tiled=False):
    """Hand-build a one-directory TIFF; chunk data first, then the directory and its values."""
    data = b""
    offsets = []
    for chunk in chunks:
        offsets.append(8 + len(data))
        data += chunk + b"\x00" * (len(chunk) % 2)
    ifd_offset = 8 + len(data)
    tags = dict(tags)
    tags[324 if tiled else 273] = (4, offsets)
    tags[325 if tiled else 279] = (4, [len(c) for c in chunks])
    codes = {1: "B", 2: "B", 3: "H", 4: "I", 5: "I", 7: "B"}
    heap_start = ifd_offset + 2 + 12 * len(tags) + 4
    heap = b""
    table = struct.pack(byte_order + "H", len(tags))
    for tag, (type_, value) in sorted(tags.items()):
        if isinstance(value, bytes):
            raw, count = value, len(value)
        else:
            raw = struct.pack(f"{byte_order}{len(value)}{codes[type_]}", *value)
            count = len(value) // 2 if type_ == 5 else len(value)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\x00")
        else:
            field = struct.pack(byte_order + "I", heap_start + len(heap))
            heap += raw + b"\x00" * (len(raw) % 2)
        table += struct.pack(byte_order + "HHI", tag, type_, count) + field
    table += b"\x00\x00\x00\x00"
    magic = b"II*\x00" if byte_order == "<" else b"MM\x00*"
    return magic + struct.pack(byte_order + "I", ifd_offset) + data + table + heap


def tiff16_tags(width: int, height: int, samples: int, **extra: tuple[int, list[int]]) -> dict:
    tags: dict[int, tuple[int, list[int] | bytes]] = {
        256: (4, [width]),
        257: (4, [height]),
        258: (3, [16] * samples),
        259: (3, [1]),
        262: (3, [2 if samples >= 3 else 1]),
        277: (3, [samples]),
    }
    if samples in (2, 4):
        tags[338] = (3, [2])
    for key, value in extra.items():
        tags[int(key.lstrip("t"))] = value
    return tags


def compress_with_pillow(raw: bytes, rowbytes: int, rows: int, compression: str) -> bytes:
    """Compress bytes through Pillow's TIFF writer (an independent encoder) and return the strip."""
    buffer = io.BytesIO()
    Image.frombytes("L", (rowbytes, rows), raw).save(buffer, "TIFF", compression=compression)
    with Image.open(io.BytesIO(buffer.getvalue())) as parsed:
        offsets, counts = parsed.tag_v2[273], parsed.tag_v2[279]
    assert len(offsets) == 1
    return buffer.getvalue()[offsets[0] : offsets[0] + counts[0]]


def cmyk_test_profile() -> bytes:
    """A minimal ICC v2 CMYK printer profile (lut8 A2B0): any full ink gives black, no ink gives white."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    clut = bytearray()
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    clut += bytes([0 if (c or m or y or k) else 255, 128, 128])
    identity = bytes(range(256))
    matrix = b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut = b"mft1" + b"\x00" * 4 + bytes([4, 3, 2, 0]) + matrix + identity * 4 + bytes(clut) + identity * 3
    white = b"XYZ " + b"\x00" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249)
    text = b"test cmyk\x00"
    desc = b"desc" + b"\x00" * 4 + struct.pack(">I", len(text)) + text + b"\x00" * 78
    tags = [(b"A2B0", lut), (b"wtpt", white), (b"desc", desc)]
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        data += b"\x00" * (-(start + len(data)) % 4)
        table += signature + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (
        struct.pack(">I", start + len(data))
        + b"\x00" * 4
        + struct.pack(">I", 0x02100000)
        + b"prtrCMYKLab "
        + b"\x00" * 12
        + b"acsp"
        + b"\x00" * 28
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\x00" * 48
    )
    return header + struct.pack(">I", len(tags)) + table + data


def to8(values: np.ndarray) -> np.ndarray:
    return np.rint(values * 255).astype(np.int32)


def to16(values: np.ndarray) -> np.ndarray:
    return np.rint(values * 65535).astype(np.int64)


def expand_gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[:, :, None], 3, axis=2) if values.ndim == 2 else values


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))
