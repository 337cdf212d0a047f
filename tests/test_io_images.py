"""Tests for instructir_desktop.io reading and writing; every fixture is built in tmp_path with Pillow, numpy, zlib."""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from instructir_desktop.io import (
    DEFAULT_MAX_PIXELS,
    READ_EXTENSIONS,
    WRITE_EXTENSIONS,
    ImageMetadata,
    ImageReadError,
    ImageWriteError,
    format_for_path,
    read_image,
    read_image_header,
    write_image,
)
from instructir_desktop.io import files as files_module
from instructir_desktop.io import reading as reading_module

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


# ----------------------------------------------------------------------------------------------------------------
# 16-bit PNG


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4])
def test_png16_each_filter_type_decodes_exactly(tmp_path: Path, filter_type: int, channels: int) -> None:
    pixels = RNG.integers(0, 65536, (13, 11, channels), dtype=np.uint16)
    path = tmp_path / "f.png"
    path.write_bytes(make_png(pixels, filter_type))
    image = read_image(path)
    colour = pixels[:, :, :3] if channels >= 3 else np.repeat(pixels[:, :, :1], 3, axis=2)
    assert image.rgb.dtype == np.float32 and image.rgb.flags.c_contiguous
    assert np.array_equal(to16(image.rgb), colour)
    if channels in (2, 4):
        assert image.alpha is not None and np.array_equal(to16(image.alpha), pixels[:, :, -1])
    else:
        assert image.alpha is None
    assert image.metadata.bit_depth == 16
    assert image.metadata.grayscale == (channels <= 2)


def test_hand_encoder_agrees_with_pillow() -> None:
    # Guards the fixture builder itself: Pillow (libpng-compatible) must decode our filtered 8-bit rows.
    pixels = RNG.integers(0, 256, (23, 17, 3), dtype=np.uint8)
    data = make_png(pixels, [0, 1, 2, 3, 4, 4, 3, 1])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png16_interlaced(tmp_path: Path, channels: int) -> None:
    pixels = RNG.integers(0, 65536, (19, 14, channels), dtype=np.uint16)
    path = tmp_path / "adam7.png"
    path.write_bytes(make_png(pixels, [0, 1, 2, 3, 4], interlace=True))
    image = read_image(path)
    colour = pixels[:, :, :3] if channels >= 3 else np.repeat(pixels, 3, axis=2)
    assert np.array_equal(to16(image.rgb), colour)


def test_png16_transparency_key_becomes_alpha(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    pixels[2, 3] = (1000, 2000, 3000)
    trns = png_chunk(b"tRNS", struct.pack(">HHH", 1000, 2000, 3000))
    path = tmp_path / "key.png"
    path.write_bytes(make_png(pixels, 2, extra_chunks=[trns]))
    image = read_image(path)
    assert image.alpha is not None
    expected = np.ones((6, 5), np.float32)
    expected[2, 3] = 0
    assert np.array_equal(image.alpha, expected)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png16_write_read_round_trip_is_exact(tmp_path: Path, channels: int) -> None:
    values = RNG.integers(0, 65536, (31, 23, channels), dtype=np.uint16)
    colour = values[:, :, :3] if channels >= 3 else values[:, :, 0]
    alpha = values[:, :, -1] / 65535.0 if channels in (2, 4) else None
    path = write_image(tmp_path / "r.png", colour / 65535.0, alpha, bit_depth=16)
    assert path.read_bytes()[24] == 16  # IHDR bit depth
    image = read_image(path)
    assert np.array_equal(to16(image.rgb), expand_gray(colour))
    if alpha is not None:
        assert np.array_equal(to16(image.alpha), values[:, :, -1])


def test_png16_written_file_is_valid_for_pillow(tmp_path: Path) -> None:
    gray = RNG.integers(0, 65536, (9, 8), dtype=np.uint16)
    path = write_image(tmp_path / "g.png", gray / 65535.0, bit_depth=16)
    with Image.open(path) as pil:
        assert pil.mode == "I;16"
        assert np.array_equal(np.asarray(pil), gray)
    rgb = RNG.integers(0, 65536, (9, 8, 3), dtype=np.uint16)
    metadata = ImageMetadata("PNG", "RGB;16", 16, False, make_exif(), SRGB_ICC, XMP, (300.0, 300.0))
    path = write_image(tmp_path / "c.png", rgb / 65535.0, metadata=metadata)
    with Image.open(path) as pil:
        assert np.array_equal(np.asarray(pil), rgb >> 8)  # Pillow keeps the high byte
        assert pil.info["icc_profile"] == SRGB_ICC
        assert pil.info["xmp"] == XMP
        assert pil.getexif()[0x010F] == "TestCam"
        assert pil.info["dpi"] == pytest.approx((300, 300), abs=0.01)


def test_large_png16_paeth_is_decoded_correctly(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 65536, (300, 257, 3), dtype=np.uint16)
    raw = pixels.astype(">u2").reshape(300, -1).view(np.uint8)
    data = zlib.compress(filter_all_paeth(raw, 6).tobytes(), 1)
    header = struct.pack(">IIBBBBB", 257, 300, 16, 2, 0, 0, 0)
    path = tmp_path / "big.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
    )
    assert np.array_equal(to16(read_image(path).rgb), pixels)


# ----------------------------------------------------------------------------------------------------------------
# 16-bit TIFF


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_tiff16_write_read_round_trip_is_exact(tmp_path: Path, channels: int) -> None:
    values = RNG.integers(0, 65536, (301, 37, channels), dtype=np.uint16)  # several strips
    colour = values[:, :, :3] if channels >= 3 else values[:, :, 0]
    alpha = values[:, :, -1] / 65535.0 if channels in (2, 4) else None
    path = write_image(tmp_path / "r.tif", colour / 65535.0, alpha, bit_depth=16)
    image = read_image(path)
    assert np.array_equal(to16(image.rgb), expand_gray(colour))
    if alpha is not None:
        assert np.array_equal(to16(image.alpha), values[:, :, -1])
    assert image.metadata.bit_depth == 16 and image.metadata.format == "TIFF"
    if channels in (1, 3, 4):  # Pillow cannot open 16-bit gray+alpha TIFF at all
        with Image.open(path) as pil:
            expected = colour if channels == 1 else values >> 8
            assert np.array_equal(np.asarray(pil), expected)


def test_tiff16_uncompressed_big_endian_strips(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 65536, (7, 5, 3), dtype=np.uint16)
    raw = pixels.astype(">u2").tobytes()
    rowbytes = 5 * 3 * 2
    chunks = [raw[i : i + 3 * rowbytes] for i in range(0, len(raw), 3 * rowbytes)]  # last strip has one row
    path = tmp_path / "mm.tif"
    path.write_bytes(build_tiff(">", tiff16_tags(5, 7, 3, t278=(4, [3])), chunks))
    assert np.array_equal(to16(read_image(path).rgb), pixels)


def test_tiff16_deflate_with_predictor(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 65536, (6, 9, 4), dtype=np.uint16)
    diff = pixels.copy()
    diff[:, 1:] -= pixels[:, :-1]
    chunks = [zlib.compress(diff[y : y + 4].astype("<u2").tobytes()) for y in (0, 4)]
    tags = tiff16_tags(9, 6, 4, t259=(3, [8]), t278=(4, [4]), t317=(3, [2]))
    path = tmp_path / "deflate.tif"
    path.write_bytes(build_tiff("<", tags, chunks))
    image = read_image(path)
    assert np.array_equal(to16(image.rgb), pixels[:, :, :3])
    assert np.array_equal(to16(image.alpha), pixels[:, :, 3])


@pytest.mark.parametrize(("compression", "code"), [("tiff_lzw", 5), ("packbits", 32773)])
@pytest.mark.parametrize("predictor", [1, 2])
def test_tiff16_lzw_and_packbits(tmp_path: Path, predictor: int, compression: str, code: int) -> None:
    pixels = RNG.integers(0, 65536, (8, 6, 3), dtype=np.uint16)
    stored = pixels.copy()
    if predictor == 2:
        stored[:, 1:] -= pixels[:, :-1]
    rowbytes = 6 * 3 * 2
    chunks = [compress_with_pillow(stored[y : y + 4].astype(">u2").tobytes(), rowbytes, 4, compression) for y in (0, 4)]
    tags = tiff16_tags(6, 8, 3, t259=(3, [code]), t278=(4, [4]), t317=(3, [predictor]))
    path = tmp_path / "lzw.tif"
    path.write_bytes(build_tiff(">", tags, chunks))
    assert np.array_equal(to16(read_image(path).rgb), pixels)


@pytest.mark.parametrize("compression", ["raw", "tiff_lzw", "tiff_adobe_deflate"])
def test_tiff16_gray_written_by_pillow(tmp_path: Path, compression: str) -> None:
    gray = RNG.integers(0, 65536, (40, 33), dtype=np.uint16)
    path = tmp_path / "pil16.tif"
    Image.fromarray(gray).save(path, compression=compression)
    image = read_image(path)
    assert np.array_equal(to16(image.rgb[:, :, 0]), gray)
    assert image.metadata.grayscale and image.metadata.bit_depth == 16


def test_tiff16_tiled_planar(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 65536, (20, 21, 3), dtype=np.uint16)
    tiles = []
    for plane in range(3):
        for ty in range(0, 20, 16):
            for tx in range(0, 21, 16):
                tile = np.zeros((16, 16), np.uint16)
                part = pixels[ty : ty + 16, tx : tx + 16, plane]
                tile[: part.shape[0], : part.shape[1]] = part
                tiles.append(zlib.compress(tile.astype("<u2").tobytes()))
    tags = tiff16_tags(21, 20, 3, t259=(3, [8]), t284=(3, [2]), t322=(3, [16]), t323=(3, [16]))
    path = tmp_path / "tiled.tif"
    path.write_bytes(build_tiff("<", tags, tiles, tiled=True))
    assert np.array_equal(to16(read_image(path).rgb), pixels)


def test_tiff16_white_is_zero_and_associated_alpha(tmp_path: Path) -> None:
    gray = RNG.integers(0, 65536, (4, 4), dtype=np.uint16)
    path = tmp_path / "wiz.tif"
    path.write_bytes(build_tiff("<", tiff16_tags(4, 4, 1, t262=(3, [0])), [gray.astype("<u2").tobytes()]))
    assert np.array_equal(to16(read_image(path).rgb[:, :, 0]), 65535 - gray.astype(np.int64))

    colour = np.full((2, 2, 3), 40000, np.uint16)
    alpha = np.array([[65535, 32768], [0, 16384]], np.uint16)
    premultiplied = np.rint(colour * (alpha[:, :, None] / 65535.0)).astype(np.uint16)
    data = np.concatenate([premultiplied, alpha[:, :, None]], axis=2).astype("<u2").tobytes()
    path = tmp_path / "assoc.tif"
    path.write_bytes(build_tiff("<", tiff16_tags(2, 2, 4, t338=(3, [1])), [data]))
    image = read_image(path)
    assert np.allclose(image.rgb[[0, 0, 1], [0, 1, 1]], 40000 / 65535.0, atol=2 / 65535 * 4)
    assert np.array_equal(image.rgb[1, 0], [0, 0, 0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"t262": (3, [5])}, "CMYK"),
        ({"t259": (3, [65000])}, "compression 65000"),
    ],
)
def test_tiff16_unsupported_variants_give_clear_errors(tmp_path: Path, extra: dict, message: str) -> None:
    samples = 4 if "t262" in extra else 3
    data = np.zeros((2, 2, samples), "<u2").tobytes()
    tags = tiff16_tags(2, 2, samples, **extra)
    tags.pop(338, None)
    path = tmp_path / "odd.tif"
    path.write_bytes(build_tiff("<", tags, [data]))
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert message in str(info.value) and "not supported" in str(info.value)


# ----------------------------------------------------------------------------------------------------------------
# 8-bit formats and colour models


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("layout", ["L", "LA", "RGB", "RGBA"])
def test_lossless_8bit_round_trips_are_exact(tmp_path: Path, ext: str, layout: str) -> None:
    values = RNG.integers(0, 256, (17, 29, len(layout)), dtype=np.uint8)
    colour = values[:, :, :3] if layout.startswith("RGB") else values[:, :, 0]
    alpha = values[:, :, -1] / 255.0 if layout.endswith("A") else None
    path = write_image(tmp_path / f"x{ext}", colour / 255.0, alpha)
    with Image.open(path) as pil:
        assert pil.mode == layout
        assert np.array_equal(np.asarray(pil), values if len(layout) > 1 else values[:, :, 0])
    image = read_image(path)
    assert np.array_equal(to8(image.rgb), expand_gray(colour))
    if alpha is not None:
        assert np.array_equal(to8(image.alpha), values[:, :, -1])
    assert image.metadata.bit_depth == 8 and image.metadata.grayscale == layout.startswith("L")


@pytest.mark.parametrize(("ext", "tolerance"), [(".jpg", 6.0), (".webp", 10.0)])
def test_lossy_8bit_round_trips_are_close(tmp_path: Path, ext: str, tolerance: float) -> None:
    y, x = np.mgrid[0:48, 0:64]
    smooth = np.stack([x / 63.0, y / 47.0, (x + y) / 110.0], axis=2)
    path = write_image(tmp_path / f"s{ext}", smooth)
    image = read_image(path)
    assert image.rgb.shape == (48, 64, 3)
    assert np.abs(to8(image.rgb) - np.rint(smooth * 255)).mean() < tolerance


def test_webp_alpha_is_kept(tmp_path: Path) -> None:
    alpha = np.zeros((16, 16))
    alpha[:, 8:] = 1.0
    path = write_image(tmp_path / "a.webp", np.full((16, 16, 3), 0.5), alpha)
    image = read_image(path)
    assert image.alpha is not None
    assert image.alpha[:, :6].max() < 0.1 and image.alpha[:, 10:].min() > 0.9


def test_jpeg_with_alpha_is_flattened_on_white(tmp_path: Path) -> None:
    path = write_image(tmp_path / "flat.jpg", np.zeros((16, 16, 3)), np.zeros((16, 16)))
    image = read_image(path)
    assert image.alpha is None and image.rgb.min() > 0.95


def test_grayscale_metadata_writes_gray(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, (10, 12), dtype=np.uint8)
    src = tmp_path / "g.png"
    Image.fromarray(gray).save(src)
    image = read_image(src)
    assert image.metadata.grayscale and image.metadata.source_mode == "L"
    for ext in (".png", ".jpg", ".tif"):
        out = write_image(tmp_path / f"out{ext}", image.rgb, metadata=image.metadata)
        with Image.open(out) as pil:
            assert pil.mode == "L"
    assert np.array_equal(to8(read_image(tmp_path / "out.png").rgb[:, :, 0]), gray)


def test_palette_with_transparency_gives_alpha(tmp_path: Path) -> None:
    indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    palette = Image.new("P", (3, 2))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette.putdata(indices.reshape(-1).tolist())
    path = tmp_path / "p.png"
    palette.save(path, transparency=bytes([0, 128, 255]))
    image = read_image(path)
    assert image.metadata.source_mode == "P" and not image.metadata.grayscale
    assert image.alpha is not None
    assert np.array_equal(to8(image.alpha), np.array([[0, 128, 255], [255, 128, 0]]))
    assert np.array_equal(to8(image.rgb[0, 1]), [0, 255, 0])


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_one_bit_images(tmp_path: Path, ext: str) -> None:
    bits = RNG.integers(0, 2, (9, 11)).astype(bool)
    path = tmp_path / f"bits{ext}"
    Image.fromarray(bits).save(path)
    image = read_image(path)
    assert image.metadata.grayscale and image.metadata.source_mode == "1"
    assert np.array_equal(image.rgb[:, :, 1], bits.astype(np.float32))


def test_cmyk_jpeg_without_profile_converts_plainly(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=100)
    image = read_image(path)
    assert image.metadata.source_mode == "CMYK" and image.metadata.icc_profile is None
    assert np.allclose(image.rgb[8, 8], [0, 1, 1], atol=0.03)


def test_cmyk_jpeg_goes_through_its_profile_and_the_profile_is_not_written(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (16, 16), (255, 0, 0, 0))  # pure cyan; the test profile maps any ink to black
    path = tmp_path / "cmyk_icc.jpg"
    cmyk.save(path, quality=100, icc_profile=cmyk_test_profile())
    image = read_image(path)
    assert image.metadata.icc_profile is None
    assert image.rgb[8, 8].max() < 0.1, "conversion must go through the embedded CMYK profile"
    for ext in (".png", ".jpg", ".tif", ".webp"):
        out = write_image(tmp_path / f"rgb{ext}", image.rgb, metadata=image.metadata)
        assert read_image(out).metadata.icc_profile is None
        with Image.open(out) as pil:
            assert not pil.info.get("icc_profile")


def test_icc_of_the_wrong_colour_space_is_not_written(tmp_path: Path) -> None:
    metadata = ImageMetadata("JPEG", "CMYK", 8, False, icc_profile=cmyk_test_profile())
    out = write_image(tmp_path / "x.png", np.zeros((4, 4, 3)), metadata=metadata)
    assert read_image(out).metadata.icc_profile is None


# ----------------------------------------------------------------------------------------------------------------
# EXIF orientation


def stored_from_displayed(displayed: np.ndarray, orientation: int) -> np.ndarray:
    """Build the stored pixels from what should be displayed, straight from the EXIF definitions of row 0/col 0."""
    h, w = displayed.shape[:2]
    if orientation <= 4:
        i, j = np.mgrid[0:h, 0:w]
        source = {1: (i, j), 2: (i, w - 1 - j), 3: (h - 1 - i, w - 1 - j), 4: (h - 1 - i, j)}[orientation]
    else:
        i, j = np.mgrid[0:w, 0:h]  # stored image is transposed in shape
        source = {5: (j, i), 6: (j, w - 1 - i), 7: (h - 1 - j, w - 1 - i), 8: (h - 1 - j, i)}[orientation]
    return displayed[source[0], source[1]]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_and_reset(tmp_path: Path, orientation: int) -> None:
    displayed = np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3) * 5
    path = tmp_path / "o.png"
    Image.fromarray(stored_from_displayed(displayed, orientation)).save(path, exif=make_exif(orientation))
    image = read_image(path)
    assert np.array_equal(to8(image.rgb), displayed)
    assert parse_exif(image.metadata.exif).get(0x0112) == 1
    assert read_image_header(path)[:2] == (5, 3)
    for ext in (".jpg", ".png", ".webp", ".tif"):
        out = write_image(tmp_path / f"w{ext}", image.rgb, metadata=image.metadata)
        with Image.open(out) as pil:
            assert pil.getexif().get(0x0112) == 1
            assert pil.getexif().get(0x010F) == "TestCam"
        assert read_image(out).rgb.shape == (3, 5, 3)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_for_jpeg_tiff_and_png16(tmp_path: Path, orientation: int) -> None:
    displayed = np.zeros((32, 48, 3), np.uint8)
    displayed[:16, :24] = (255, 0, 0)
    displayed[16:, 24:] = (0, 0, 255)
    stored = stored_from_displayed(displayed, orientation)
    jpeg = tmp_path / "o.jpg"
    Image.fromarray(stored).save(jpeg, quality=100, exif=make_exif(orientation))
    tiff = tmp_path / "o.tif"
    Image.fromarray(stored).save(tiff, tiffinfo={274: orientation})
    png16 = tmp_path / "o16.png"
    exif_chunk = png_chunk(b"eXIf", make_exif(orientation)[6:])
    png16.write_bytes(make_png(stored.astype(np.uint16) * 257, 4, extra_chunks=[exif_chunk]))
    for path in (jpeg, tiff, png16):
        image = read_image(path)
        assert image.rgb.shape == (32, 48, 3)
        for y, x in ((8, 12), (8, 36), (24, 12), (24, 36)):  # quadrant centres, away from JPEG edge ringing
            assert np.abs(to8(image.rgb[y, x]) - displayed[y, x]).max() < 40, path.name
        assert read_image_header(path)[:2] == (48, 32)
    assert read_image(tiff).metadata.exif is None or parse_exif(read_image(tiff).metadata.exif).get(0x0112) == 1


def test_exif_thumbnail_is_unlinked_and_pixel_size_updated(tmp_path: Path) -> None:
    exif = parse_exif(make_exif(6))
    exif.get_ifd(0x8769)[0xA002] = 40  # PixelXDimension as stored
    exif.get_ifd(0x8769)[0xA003] = 20
    path = tmp_path / "t.jpg"
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(path, exif=exif.tobytes())
    image = read_image(path)
    written = parse_exif(image.metadata.exif)
    assert written.get_ifd(0x8769)[0xA002] == 20 and written.get_ifd(0x8769)[0xA003] == 40
    assert not written.get_ifd(0x0001)  # IFD1 (thumbnail) unlinked


def test_xmp_orientation_is_reset(tmp_path: Path) -> None:
    xmp = XMP.replace(b'dc:format="image/test"', b'dc:format="image/test" tiff:Orientation="6"')
    path = tmp_path / "x.jpg"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path, xmp=xmp)
    assert b'tiff:Orientation="1"' in read_image(path).metadata.xmp


# ----------------------------------------------------------------------------------------------------------------
# Metadata preservation


def source_with_metadata(tmp_path: Path, fmt: str) -> Path:
    pixels = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    path = tmp_path / f"src.{fmt.lower()}"
    exif = make_exif(1)
    if fmt == "JPEG":
        image.save(path, exif=exif, icc_profile=SRGB_ICC, xmp=XMP, dpi=(300, 300))
    elif fmt == "PNG":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        image.save(path, exif=exif, icc_profile=SRGB_ICC, pnginfo=info, dpi=(300, 300))
    elif fmt == "WEBP":
        image.save(path, exif=exif, icc_profile=SRGB_ICC, xmp=XMP)
    else:
        metadata = ImageMetadata("TIFF", "RGB", 8, False, exif, SRGB_ICC, XMP, (300.0, 300.0))
        write_image(path, pixels / 255.0, metadata=metadata)
    return path


@pytest.mark.parametrize("source_format", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("target_ext", [".jpg", ".png", ".webp", ".tif"])
def test_exif_icc_xmp_dpi_survive_read_then_write(tmp_path: Path, source_format: str, target_ext: str) -> None:
    source = read_image(source_with_metadata(tmp_path, source_format))
    metadata = source.metadata
    assert metadata.format == source_format
    assert metadata.icc_profile == SRGB_ICC
    assert metadata.xmp == XMP
    assert parse_exif(metadata.exif)[0x010F] == "TestCam"
    if source_format != "WEBP":
        assert metadata.dpi == pytest.approx((300, 300), abs=0.01)
    header = read_image_header(source.path)
    assert header[:2] == (10, 12) and header.metadata == metadata

    out = write_image(tmp_path / f"out{target_ext}", source.rgb, metadata=metadata)
    again = read_image(out).metadata
    assert again.icc_profile == SRGB_ICC
    assert again.xmp == XMP
    exif = parse_exif(again.exif)
    assert exif[0x010F] == "TestCam"
    assert exif.get_ifd(0x8769)[0x9003] == "2021:02:03 04:05:06"
    if target_ext != ".webp" and source_format != "WEBP":
        assert again.dpi == pytest.approx((300, 300), abs=0.01)
    with Image.open(out) as pil:  # an independent reader sees the same
        assert pil.info.get("icc_profile") == SRGB_ICC
        assert pil.info.get("xmp") == XMP
        assert pil.getexif()[0x010F] == "TestCam"
        assert pil.getexif().get_ifd(0x8769)[0x9003] == "2021:02:03 04:05:06"


# ----------------------------------------------------------------------------------------------------------------
# Safety: sizes, bad files, failed writes


def test_bomb_guard_checks_the_header_before_decoding(tmp_path: Path) -> None:
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + png_chunk(b"IEND", b"")
    )
    with pytest.raises(ImageReadError) as info:
        read_image(bomb)
    message = str(info.value)
    assert "20000×20000" in message and "400,000,000" in message and f"{DEFAULT_MAX_PIXELS:,}" in message
    assert read_image_header(bomb)[:2] == (20000, 20000)  # probing is still allowed


@pytest.mark.parametrize("kind", ["jpg", "png8", "png16", "tif8", "tif16", "webp"])
def test_max_pixels_applies_to_every_decoder(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"small.{kind[:3] if kind != 'webp' else 'webp'}"
    depth = 16 if kind.endswith("16") else 8
    write_image(path, np.zeros((10, 10, 3)), bit_depth=depth if kind[:3] in ("png", "tif") else None)
    assert read_image(path, max_pixels=100).rgb.shape == (10, 10, 3)
    with pytest.raises(ImageReadError, match="limit is 99"):
        read_image(path, max_pixels=99)


def test_pillow_bomb_error_is_reported_as_read_error(tmp_path: Path, monkeypatch) -> None:
    path = write_image(tmp_path / "x.jpg", np.zeros((8, 8, 3)))

    def explode(*_args: object, **_kwargs: object) -> None:
        raise Image.DecompressionBombError("Image size (64 pixels) exceeds limit")

    monkeypatch.setattr(reading_module, "_open_with_pillow", explode)
    with pytest.raises(ImageReadError, match="too large"):
        read_image(path)


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    cases: dict[str, tuple[Path, str]] = {}
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    cases["empty"] = (empty, "empty")
    cases["missing"] = (tmp_path / "missing.png", "does not exist")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    cases["folder"] = (folder, "folder")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\nsecond line\n")
    cases["text"] = (text, "not a JPEG, PNG, TIFF or WebP")
    gif = tmp_path / "anim.png"
    Image.new("P", (4, 4)).save(gif, format="GIF")
    cases["gif"] = (gif, "GIF images are not supported")

    jpeg = tmp_path / "t.jpg"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])
    cases["truncated jpeg"] = (truncated, "truncated or corrupt")
    broken_header = tmp_path / "header.jpg"
    data = bytearray(jpeg.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = b"\x00\x00\x00\x00"  # zero width and height
    broken_header.write_bytes(bytes(data))
    cases["corrupt jpeg"] = (broken_header, "truncated or corrupt")

    for depth in (8, 16):
        png = write_image(tmp_path / f"p{depth}.png", RNG.random((40, 40, 3)), bit_depth=depth)
        whole = png.read_bytes()
        cut = tmp_path / f"truncated{depth}.png"
        cut.write_bytes(whole[: len(whole) * 2 // 3])
        cases[f"truncated png{depth}"] = (cut, "truncated or corrupt")
        flipped = bytearray(whole)
        flipped[len(whole) // 2] ^= 0xFF
        bad = tmp_path / f"corrupt{depth}.png"
        bad.write_bytes(bytes(flipped))
        cases[f"corrupt png{depth}"] = (bad, "truncated or corrupt")
        tif = write_image(tmp_path / f"t{depth}.tif", RNG.random((40, 40, 3)), bit_depth=depth)
        cut = tmp_path / f"truncated{depth}.tif"
        cut.write_bytes(tif.read_bytes()[:100])
        cases[f"truncated tif{depth}"] = (cut, "truncated or corrupt")
    webp = write_image(tmp_path / "w.webp", RNG.random((40, 40, 3)))
    cut = tmp_path / "truncated.webp"
    cut.write_bytes(webp.read_bytes()[:60])
    cases["truncated webp"] = (cut, "truncated or corrupt")
    return cases


def test_every_bad_input_gives_a_one_line_read_error(tmp_path: Path) -> None:
    for name, (path, expected) in bad_inputs(tmp_path).items():
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        message = str(info.value)
        assert "\n" not in message, name
        assert message.startswith(f"{path.name}: "), (name, message)
        assert expected in message, (name, message)
        assert info.value.path == path


def test_header_probe_errors_are_read_errors_too(tmp_path: Path) -> None:
    for name, (path, _) in bad_inputs(tmp_path).items():
        try:
            read_image_header(path)
        except ImageReadError as exc:
            assert "\n" not in str(exc), name
        # A truncated file may still have a readable header; that is fine for a probe.


def test_read_errors_pickle(tmp_path: Path) -> None:
    import pickle

    error = ImageReadError(tmp_path / "a.jpg", "the file is empty")
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == "a.jpg: the file is empty"


def test_failed_replace_leaves_existing_file_untouched(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "keep.png"
    target.write_bytes(b"original contents")

    def refuse(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module.os, "replace", refuse)
    with pytest.raises(ImageWriteError) as info:
        write_image(target, np.zeros((4, 4, 3)))
    assert "No space left on device" in str(info.value) and "\n" not in str(info.value)
    assert target.read_bytes() == b"original contents"
    assert leftovers(tmp_path) == []


def test_failed_encoding_leaves_existing_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "keep.jpg"
    target.write_bytes(b"original contents")
    metadata = ImageMetadata("JPEG", "RGB", 8, False, xmp=b"x" * 70000)  # too big for a JPEG marker
    with pytest.raises(ImageWriteError) as info:
        write_image(target, np.zeros((4, 4, 3)), metadata=metadata)
    assert str(info.value).startswith("keep.jpg: ")
    assert target.read_bytes() == b"original contents"
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_content_and_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "photo.png"
    write_image(target, np.zeros((4, 4, 3)))
    os.chmod(target, 0o640)
    write_image(target, np.ones((4, 4, 3)))
    assert read_image(target).rgb.min() == 1.0
    if sys.platform != "win32":
        assert target.stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_writing_through_a_symlink_replaces_the_target(tmp_path: Path) -> None:
    real = write_image(tmp_path / "real.png", np.zeros((2, 2, 3)))
    link = tmp_path / "link.png"
    link.symlink_to(real)
    write_image(link, np.ones((2, 2, 3)))
    assert link.is_symlink() and read_image(real).rgb.min() == 1.0


def test_unwritable_destinations(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match="does not exist"):
        write_image(tmp_path / "no" / "such" / "x.png", np.zeros((2, 2, 3)))
    assert not (tmp_path / "no").exists()
    with pytest.raises(ImageWriteError, match="folder"):
        write_image(tmp_path, np.zeros((2, 2, 3)), format="PNG")
    if sys.platform != "win32" and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        os.chmod(locked, 0o500)
        try:
            with pytest.raises(ImageWriteError, match="permission denied"):
                write_image(locked / "x.png", np.zeros((2, 2, 3)))
        finally:
            os.chmod(locked, 0o700)


def test_formats_and_depth_rules(tmp_path: Path) -> None:
    assert format_for_path("a/b/Photo.JPEG") == "JPEG"
    assert format_for_path("x.tif") == "TIFF" and format_for_path("x.webp") == "WEBP"
    assert {".jpg", ".png", ".tif", ".tiff", ".webp", ".heic", ".avif"} <= WRITE_EXTENSIONS < READ_EXTENSIONS
    assert {".dng", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"} <= READ_EXTENSIONS - WRITE_EXTENSIONS
    with pytest.raises(ImageWriteError, match="never written"):
        format_for_path("x.dng")
    with pytest.raises(ImageWriteError, match=r"\.bmp"):
        format_for_path("x.bmp")
    with pytest.raises(ImageWriteError, match="8 bits"):
        write_image(tmp_path / "x.jpg", np.zeros((2, 2, 3)), bit_depth=16)
    sixteen = ImageMetadata("PNG", "RGB;16", 16, False)
    assert write_image(tmp_path / "d.png", np.zeros((2, 2, 3)), metadata=sixteen).read_bytes()[24] == 16
    assert read_image(write_image(tmp_path / "d.jpg", np.zeros((2, 2, 3)), metadata=sixteen)).metadata.bit_depth == 8
    out = write_image(tmp_path / "named.png", np.zeros((2, 2, 3)), format="tiff")
    assert read_image(out).metadata.format == "TIFF"  # content decides, not the extension
    with pytest.raises(ValueError):
        write_image(tmp_path / "bad.png", np.zeros((2, 2, 3), np.uint8))


def test_values_are_rounded_and_clipped(tmp_path: Path) -> None:
    values = np.array([[[0.6 / 255, 0.4 / 255, 254.5 / 255], [-1.0, 2.0, np.nan]]], np.float32)
    image = read_image(write_image(tmp_path / "r.png", values))
    assert to8(image.rgb).tolist() == [[[1, 0, 255], [0, 255, 0]]]
    values16 = np.array([[[0.6 / 65535, 65534.6 / 65535, 0.5]]], np.float32)
    image = read_image(write_image(tmp_path / "r16.png", values16, bit_depth=16))
    assert to16(image.rgb).tolist() == [[[1, 65535, 32768]]]


@pytest.mark.parametrize("quality", [90, 95, 100])
def test_a_very_noisy_photo_exports_as_jpeg_at_high_quality(tmp_path: Path, quality: int) -> None:
    """Grain compresses badly: such a photo needs more than the buffer Pillow sizes for optimised
    JPEG tables (1-2 bytes per pixel) and used to fail with "broken data stream"."""
    rng = np.random.default_rng(quality)
    noisy = rng.random((480, 640, 3), dtype=np.float32)
    target = write_image(tmp_path / "grain.jpg", noisy, quality=quality)
    assert target.stat().st_size > 480 * 640  # more than the 1 byte per pixel that broke it
    restored = read_image(target).rgb
    mse = float(np.mean((restored - noisy) ** 2))
    assert 10 * np.log10(1 / mse) > 25  # a faithful high-quality JPEG, not a broken file
