"""Property-based: damaged and lying image files, whatever the format, end in ImageReadError with one line
naming the file, or in a picture whose pixels are finite and within [0, 1]; never another exception."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from photo_fixtures import bayer, write_dng
from PIL import Image

from instructir_desktop.io import ImageReadError, read_image, read_image_header, write_image


@cache
def sources() -> dict[str, bytes]:
    """One small valid file per reader, built here."""
    rng = np.random.default_rng(11)
    pixels = rng.random((24, 32, 3)).astype(np.float32)
    folder = Path(tempfile.mkdtemp())
    files = {
        "photo.jpg": write_image(folder / "a.jpg", pixels),
        "photo.png": write_image(folder / "a.png", pixels),
        "deep.png": write_image(folder / "b.png", pixels, bit_depth=16),
        "photo.tif": write_image(folder / "a.tif", pixels),
        "deep.tif": write_image(folder / "b.tif", pixels, bit_depth=16),
        "photo.webp": write_image(folder / "a.webp", pixels),
        "photo.avif": write_image(folder / "a.avif", pixels),
    }
    heic = folder / "a.heic"
    pillow_heif.from_pillow(Image.fromarray((pixels * 255).astype(np.uint8))).save(heic)
    files["photo.heic"] = heic
    files["float.tif"] = folder / "f.tif"
    tifffile.imwrite(files["float.tif"], pixels * 1.5, photometric="rgb")
    files["camera.dng"] = write_dng(folder / "a.dng", bayer(np.full((32, 40, 3), 0.3), (1, 1, 1)), neutral=(1, 1, 1))
    return {name: path.read_bytes() for name, path in files.items()}


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(sources())))
    data = bytearray(sources()[name])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "truncate":
            del data[max(1, position) :]
        elif kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[position : position + len(chunk)] = chunk
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
    return name, bytes(data)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")  # Pillow's notes on damaged EXIF
@settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_files_give_one_sentence_or_a_sane_picture(case: tuple[str, bytes]) -> None:
    name, data = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        for read in (read_image_header, read_image):
            try:
                result = read(path)
            except ImageReadError as error:
                assert "\n" not in str(error) and str(error).startswith(f"{name}: ")
                continue
            if read is read_image:
                rgb = result.rgb  # type: ignore[union-attr]
                assert rgb.ndim == 3 and rgb.shape[2] == 3
                # Working-space values may leave [0, 1] only for wide-gamut profiles, never NaN.
                assert np.isfinite(rgb).all()
