"""Tests for instructir_desktop.io reading and writing; every fixture is built in tmp_path with Pillow, numpy, zlib."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from io_builders import (
    RNG,
    SRGB_ICC,
    XMP,
    build_tiff,
    cmyk_test_profile,
    compress_with_pillow,
    expand_gray,
    filter_all_paeth,
    make_exif,
    make_png,
    parse_exif,
    png_chunk,
    tiff16_tags,
    to8,
    to16,
)
from PIL import Image

from instructir_desktop.io import (
    ImageMetadata,
    ImageReadError,
    read_image,
    read_image_header,
    write_image,
)

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
