"""Bad and hostile image files, size limits and safe writing: one clear error, nothing lost."""

from __future__ import annotations

import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from io_builders import (
    RNG,
    leftovers,
    png_chunk,
    to8,
    to16,
)
from PIL import Image

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
