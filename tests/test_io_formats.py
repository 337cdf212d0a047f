"""The photographer's files: camera RAW, HEIC and AVIF, wide-gamut 16-bit, floating-point TIFF, and the
hostile-file guards every reader shares (pixel limit, lying headers, dropped frames said out loud)."""

from __future__ import annotations

import io
import sys
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pillow_heif
import pytest
import tifffile
from photo_fixtures import DISPLAY_P3, bayer, write_dng
from PIL import Image, ImageCms

from instructir_desktop.io import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    ImageWriteError,
    max_pixels,
    read_image,
    read_image_header,
    set_max_pixels,
    write_image,
)

RNG = np.random.default_rng(20241202)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def srgb_encode(linear: float) -> float:
    return 1.055 * linear ** (1 / 2.4) - 0.055 if linear > 0.0031308 else 12.92 * linear


def two_patch_scene() -> np.ndarray:
    scene = np.zeros((64, 96, 3))
    scene[:, :48] = 0.4
    scene[:, 48:] = 0.1
    return scene


def exif_of(data: bytes | None) -> Image.Exif:
    exif = Image.Exif()
    exif.load(data)
    return exif


@pytest.fixture
def limit_reset():
    yield
    set_max_pixels(DEFAULT_MAX_PIXELS)


# ---------------------------------------------------------------------------------------------------- RAW


def test_dng_is_developed_with_the_camera_white_balance_and_colour_matrix(tmp_path: Path) -> None:
    # A neutral grey scene seen through a camera whose raw channels read it as (0.5, 1, 0.8): only the
    # as-shot white balance makes it grey again, and the sRGB curve gives the expected code values.
    path = write_dng(tmp_path / "grey.dng", bayer(two_patch_scene(), (0.5, 1.0, 0.8)), neutral=(0.5, 1.0, 0.8))
    image = read_image(path)
    assert image.rgb.shape == (64, 96, 3)
    assert np.allclose(image.rgb[20:44, 8:40], srgb_encode(0.4), atol=0.004)
    assert np.allclose(image.rgb[20:44, 56:88], srgb_encode(0.1), atol=0.004)
    metadata = image.metadata
    assert metadata.format == "RAW" and metadata.bit_depth == 16 and not metadata.grayscale
    assert image.alpha is None and image.notices == ()


def test_dng_carries_the_camera_settings_into_metadata(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "x.dng", bayer(two_patch_scene(), (0.5, 1.0, 0.8)), iso=6400, exposure=1 / 250)
    camera = read_image(path).metadata.camera
    assert camera is not None
    assert (camera.make, camera.model, camera.lens) == ("Testmaker", "Testcam 1", "Test 50mm F1.8")
    assert camera.iso == 6400 and camera.exposure_time == pytest.approx(1 / 250) and camera.f_number == 2.8
    assert camera.taken == "2024:05:06 07:08:09"
    assert camera.describe() == "Testmaker Testcam 1, ISO 6400, 1/250 s, f/2.8"
    assert read_image_header(path).metadata.camera == camera


def test_dng_orientation_is_applied(tmp_path: Path) -> None:
    scene = np.full((64, 96, 3), 0.05)
    scene[:16, :16] = 0.6  # a bright corner, stored top-left
    path = write_dng(tmp_path / "turned.dng", bayer(scene, (1.0, 1.0, 1.0)), neutral=(1.0, 1.0, 1.0), orientation=6)
    image = read_image(path)
    assert image.rgb.shape == (96, 64, 3) and read_image_header(path)[:2] == (64, 96)
    # Orientation 6: the stored top-left corner shows at the top right.
    assert image.rgb[4:12, -12:-4].min() > 0.6 and image.rgb[4:12, 4:12].max() < 0.4


def test_raw_exports_to_16_bit_tiff_png_and_8_bit_formats_with_its_exif(tmp_path: Path) -> None:
    image = read_image(write_dng(tmp_path / "in.dng", bayer(two_patch_scene(), (0.5, 1.0, 0.8))))
    for name in ("out.tif", "out.png", "out.jpg", "out.heic", "out.avif"):
        out = write_image(tmp_path / name, image.rgb, metadata=image.metadata)
        again = read_image(out)
        assert again.rgb.shape == (64, 96, 3)
        assert again.metadata.bit_depth == (16 if name.endswith((".tif", ".png")) else 8), name
        exif = exif_of(again.metadata.exif)
        assert exif[0x010F] == "Testmaker" and exif[0x0110] == "Testcam 1", name
        assert exif.get_ifd(0x8769)[0x8827] == 3200 and exif.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09", name
    with pytest.raises(ImageWriteError, match="never written"):
        write_image(tmp_path / "back.dng", image.rgb, metadata=image.metadata)


def test_bad_raw_files_give_one_sentence(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.nef"
    garbage.write_bytes(b"not a raw file at all " * 50)
    with pytest.raises(ImageReadError, match=r"LibRaw [\d.]+ cannot read this RAW file"):
        read_image(garbage)
    whole = write_dng(tmp_path / "whole.dng", bayer(two_patch_scene(), (0.5, 1.0, 0.8))).read_bytes()
    cut = tmp_path / "cut.dng"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageReadError) as info:
        read_image(cut)
    assert str(info.value) == "cut.dng: the file is truncated or corrupt (the RAW data ends early or is damaged)"
    with pytest.raises(ImageReadError, match="limit is 6,143"):
        read_image(tmp_path / "whole.dng", max_pixels=6143)


# ------------------------------------------------------------------------------------------- HEIC and AVIF


def photo_with_metadata() -> tuple[np.ndarray, bytes]:
    y, x = np.mgrid[0:48, 0:64]
    pixels = np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(0x8769)[0x8827] = 800
    return pixels, exif.tobytes()


def test_heic_opens_and_exports_with_exif_and_icc(tmp_path: Path) -> None:
    pixels, exif = photo_with_metadata()
    source = tmp_path / "phone.heic"
    pillow_heif.from_pillow(Image.fromarray(pixels)).save(source, quality=95, exif=exif, icc_profile=SRGB_ICC)
    image = read_image(source)
    assert image.metadata.format == "HEIC" and image.rgb.shape == (48, 64, 3)
    assert np.abs(image.rgb * 255 - pixels).mean() < 3
    assert image.metadata.icc_profile == SRGB_ICC and image.metadata.camera.iso == 800
    for name in ("again.heic", "again.avif", "again.jpg"):
        out = write_image(tmp_path / name, image.rgb, metadata=image.metadata, quality=90)
        again = read_image(out)
        assert again.metadata.icc_profile == SRGB_ICC, name
        assert exif_of(again.metadata.exif)[0x010F] == "PhoneMaker", name
        assert np.abs(again.rgb - image.rgb).mean() < 0.02, name


def test_ten_bit_heic_opens_as_16_bit_with_white_at_one(tmp_path: Path) -> None:
    pixels = np.zeros((16, 16, 3), np.uint16)
    pixels[:] = (65535, 32768, 0)
    source = tmp_path / "deep.heic"
    pillow_heif.from_bytes("RGB;16", (16, 16), pixels.tobytes()).save(source, quality=-1)  # lossless, 10 bits
    image = read_image(source)
    assert image.metadata.bit_depth == 16 and image.metadata.source_mode == "RGB;16"
    assert image.rgb[8, 8] == pytest.approx([1.0, 0.5, 0.0], abs=0.0012)  # white is 1023, not 1023 / 1024


def test_avif_opens_with_exif_and_a_wide_gamut_profile(tmp_path: Path) -> None:
    pixels, exif = photo_with_metadata()
    source = tmp_path / "photo.avif"
    Image.fromarray(pixels).save(source, quality=95, exif=exif, icc_profile=DISPLAY_P3)
    image = read_image(source)
    assert image.metadata.format == "AVIF" and image.metadata.icc_profile == DISPLAY_P3
    out = write_image(tmp_path / "out.avif", image.rgb, metadata=image.metadata)
    with Image.open(out) as independent:
        assert independent.info["icc_profile"] == DISPLAY_P3
        assert independent.getexif()[0x010F] == "PhoneMaker"
        assert np.abs(np.asarray(independent.convert("RGB")).astype(int) - pixels).mean() < 3


def test_heic_without_its_codec_says_which_package(tmp_path: Path, monkeypatch) -> None:
    pixels, _ = photo_with_metadata()
    source = tmp_path / "phone.heic"
    pillow_heif.from_pillow(Image.fromarray(pixels)).save(source)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if it were not installed
    with pytest.raises(ImageReadError) as info:
        read_image(source)
    assert str(info.value) == (
        "phone.heic: opening HEIC photos needs the pillow-heif package, which is not installed "
        "(pip install pillow-heif)"
    )
    with pytest.raises(ImageWriteError, match="pillow-heif"):
        write_image(tmp_path / "out.heic", pixels / 255.0)


# ------------------------------------------------------------------------------------------- colour


def p3_test_pixels() -> np.ndarray:
    values = RNG.integers(0, 65536, (40, 36, 3), dtype=np.uint16)
    values[0, :4] = [(65535, 0, 0), (0, 65535, 0), (0, 0, 65535), (65535, 65535, 0)]  # outside sRGB
    values[1, :2] = [(32768, 32768, 32768), (1, 2, 3)]
    return values


@pytest.mark.parametrize("kind", ["png", "tif"])
def test_display_p3_16_bit_round_trips_within_one_step(tmp_path: Path, kind: str) -> None:
    values = p3_test_pixels()
    source = tmp_path / f"p3.{kind}"
    if kind == "png":
        # libpng writes the pixels, Pillow the profile chunk of a 1-pixel twin: spliced after IHDR.
        body = bytes(imagecodecs.png_encode(values))
        carrier = io.BytesIO()
        Image.new("RGB", (1, 1)).save(carrier, "PNG", icc_profile=DISPLAY_P3)
        chunk = carrier.getvalue()[33 : carrier.getvalue().index(b"IDAT") - 4]
        source.write_bytes(body[:33] + chunk + body[33:])
    else:
        tifffile.imwrite(source, values, photometric="rgb", iccprofile=DISPLAY_P3)
    image = read_image(source)
    assert image.metadata.icc_profile == DISPLAY_P3 and image.metadata.bit_depth == 16
    # In the sRGB working space P3's red lies outside [0, 1]: kept, not clipped (sRGB curve of 1.2249).
    assert image.rgb[0, 0, 0] == pytest.approx(srgb_encode(1.2249), abs=0.002)
    assert image.rgb[1, 0] == pytest.approx([0.5, 0.5, 0.5], abs=0.0002)
    out = write_image(tmp_path / f"out.{kind}", image.rgb, metadata=image.metadata)
    written = np.asarray(imagecodecs.png_decode(out.read_bytes())) if kind == "png" else tifffile.imread(out)
    assert written.dtype == np.uint16
    assert np.abs(written.astype(np.int64) - values).max() <= 1
    with Image.open(out) as independent:
        assert independent.info["icc_profile"] == DISPLAY_P3


def test_exporting_a_wide_gamut_photo_as_srgb_converts_and_embeds_srgb(tmp_path: Path) -> None:
    values = p3_test_pixels()
    source = tmp_path / "p3.tif"
    tifffile.imwrite(source, values, photometric="rgb", iccprofile=DISPLAY_P3)
    image = read_image(source)
    out = write_image(tmp_path / "srgb.tif", image.rgb, metadata=image.metadata, colour_profile="srgb")
    with Image.open(out) as independent:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(independent.info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(profile)
    written = tifffile.imread(out)
    assert tuple(written[0, 0]) == (65535, 0, 0)  # P3 red clipped to sRGB red
    assert np.abs(written[1, 0].astype(int) - 32768).max() <= 2  # grey stays grey


# ------------------------------------------------------------------------------------------ float TIFF


def test_float_tiff_opens_clipped_with_a_notice_and_exports_16_bit(tmp_path: Path) -> None:
    values = RNG.random((30, 20, 3)).astype(np.float32)
    values[0, :10] = 1.5  # 10 of 1,800 values... times 3 channels: 30 of 1,800 = 1.7 %
    values[1, :10, 0] = -0.25
    source = tmp_path / "hdr.tif"
    tifffile.imwrite(source, values, photometric="rgb")
    image = read_image(source)
    assert image.metadata.source_mode == "RGB;32F" and image.metadata.bit_depth == 16
    assert image.notices == ("2.2% of its floating-point values were outside 0–1 and were clipped.",)
    assert image.rgb[0, 0].tolist() == [1.0, 1.0, 1.0] and image.rgb[1, 0, 0] == 0.0
    assert np.array_equal(image.rgb[5:], values[5:])
    out = write_image(tmp_path / "out.tif", image.rgb, metadata=image.metadata)
    written = tifffile.imread(out)
    assert written.dtype == np.uint16
    assert np.array_equal(written[5:], np.floor(values[5:] * 65535 + 0.5).astype(np.uint16))


# ----------------------------------------------------------------------------------- hostile files (#20)


def test_truncated_png_declaring_200_megapixels_is_refused_before_decoding(tmp_path: Path) -> None:
    # 14142 × 14142 is just under the default limit; the file is 74 bytes. It used to open as black.
    header = (14142).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    ihdr = len(header).to_bytes(4, "big") + b"IHDR" + header + zlib.crc32(b"IHDR" + header).to_bytes(4, "big")
    idat_body = zlib.compress(b"\0" * 10)
    idat = len(idat_body).to_bytes(4, "big") + b"IDAT" + idat_body + zlib.crc32(b"IDAT" + idat_body).to_bytes(4, "big")
    path = tmp_path / "liar.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + idat + b"\0\0\0\0IEND\xaeB`\x82")
    assert len(path.read_bytes()) < 80
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(info.value) == (
        f"liar.png: the file is truncated or corrupt (it holds {len(path.read_bytes())} bytes, too few for the "
        "14142×14142 picture its header declares)"
    )


def test_tiff_whose_strips_lie_past_the_end_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "ok.tif"
    tifffile.imwrite(source, RNG.integers(0, 65536, (50, 40, 3), dtype=np.uint16), photometric="rgb")
    data = source.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) - 500])
    with pytest.raises(ImageReadError, match="its image data runs past the end of the file"):
        read_image(cut)


def test_multi_page_tiff_and_animated_webp_say_only_the_first_frame_opened(tmp_path: Path) -> None:
    pages = tmp_path / "pages.tif"
    with tifffile.TiffWriter(pages) as writer:
        for level in (10, 20, 30):
            writer.write(np.full((8, 8, 3), level * 1000, np.uint16), photometric="rgb")
    image = read_image(pages)
    assert image.notices == ("It holds 3 pages; only the first was opened.",)
    assert np.allclose(image.rgb, 10000 / 65535)
    animated = tmp_path / "anim.webp"
    frames = [Image.new("RGB", (8, 8), (v, v, v)) for v in (50, 150)]
    frames[0].save(animated, save_all=True, append_images=frames[1:], lossless=True)
    assert read_image(animated).notices == ("It holds 2 frames; only the first was opened.",)
    assert read_image_header(animated).width == 8


def test_the_pixel_limit_is_a_setting_every_reader_obeys(tmp_path: Path, limit_reset) -> None:
    files = [
        write_image(tmp_path / "a.png", np.zeros((32, 40, 3)), bit_depth=16),
        write_image(tmp_path / "a.tif", np.zeros((32, 40, 3))),
        write_image(tmp_path / "a.heic", np.zeros((32, 40, 3))),
        write_image(tmp_path / "a.avif", np.zeros((32, 40, 3))),
        write_dng(tmp_path / "a.dng", bayer(np.zeros((32, 40, 3)), (1, 1, 1)), neutral=(1, 1, 1)),
    ]
    set_max_pixels(1279)
    assert max_pixels() == 1279
    for path in files:
        with pytest.raises(ImageReadError, match="40×32 = 1,280 pixels; the limit is 1,279; it can be raised"):
            read_image(path)
    set_max_pixels(1280)
    for path in files:
        assert read_image(path).rgb.shape == (32, 40, 3)
    with pytest.raises(ValueError):
        set_max_pixels(0)
