"""Colour profiles: the network works in sRGB, photos come in Display P3, Adobe RGB, ProPhoto or CMYK.

LittleCMS does the work. Pillow's ImageCms reads profiles and converts 8-bit CMYK; its transforms stop at
8-bit RGB, so the 16-bit and floating-point RGB conversions go through imagecodecs' LittleCMS binding in
float32 with no clipping: a colour outside sRGB keeps values below 0 or above 1 in the working space, and
converting back on export gives the original colour (Display P3 round-trips within 1/65535).
"""

from __future__ import annotations

import functools
import io

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageCms

WORKING_SPACE = "sRGB"
# Probe colours that tell an sRGB profile from any other: primaries, secondaries, greys, a skin tone.
_PROBES = np.array(
    [[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1], [0.5, 0.5, 0.5], [0.8, 0.6, 0.5]],
    np.float32,
)[None]
# Differences smaller than a quarter of an 8-bit step are sRGB profiles written by different tools.
_SAME_AS_SRGB = 0.25 / 255


@functools.cache
def srgb_profile() -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return bytes(profile)


def _open(icc: bytes) -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(icc))


def colour_space(icc: bytes | None) -> str | None:
    """'RGB', 'GRAY', 'CMYK'... as the profile declares it; None for no profile or an unreadable one."""
    if not icc:
        return None
    try:
        return str(_open(icc).profile.xcolor_space).strip()
    except (OSError, ValueError, TypeError):
        return None


def profile_name(icc: bytes) -> str:
    try:
        name = ImageCms.getProfileDescription(_open(icc)).strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        name = ""
    return name or "embedded"


def _transform(pixels: np.ndarray, source: bytes, target: bytes) -> npt.NDArray[np.float32]:
    import imagecodecs

    flat = np.ascontiguousarray(pixels, dtype=np.float32)
    out = imagecodecs.cms_transform(flat, source, target, colorspace="rgb", outcolorspace="rgb")
    return np.asarray(out, dtype=np.float32)


@functools.lru_cache(maxsize=16)
def is_srgb(icc: bytes) -> bool:
    """Whether the profile describes sRGB, judged by what it does to probe colours (names vary by vendor)."""
    try:
        seen = _transform(_PROBES, icc, srgb_profile())
    except Exception:  # an unusable profile is not sRGB; to_working then reports it
        return False
    return bool(np.abs(seen - _PROBES).max() < _SAME_AS_SRGB)


def needs_conversion(icc: bytes | None) -> bool:
    return icc is not None and colour_space(icc) == "RGB" and not is_srgb(icc)


def to_working(rgb: npt.NDArray[np.float32], icc: bytes) -> npt.NDArray[np.float32]:
    """Pixels described by ``icc`` as sRGB, unclipped. Raises ValueError if the profile cannot be used."""
    return _convert(rgb, icc, srgb_profile())


def from_working(rgb: np.ndarray, icc: bytes) -> npt.NDArray[np.float32]:
    """sRGB working pixels back in the space of ``icc``."""
    return _convert(rgb, srgb_profile(), icc)


def _convert(rgb: np.ndarray, source: bytes, target: bytes) -> npt.NDArray[np.float32]:
    out = np.empty(rgb.shape, np.float32)
    rows = max(1, (1 << 20) // max(1, rgb.shape[1]))  # a block at a time: no second full-size float copy
    try:
        for y in range(0, rgb.shape[0], rows):
            out[y : y + rows] = _transform(rgb[y : y + rows], source, target)
    except Exception as exc:  # LittleCMS refuses broken or unsuitable profiles with its own error types
        raise ValueError(f"the colour profile cannot be used ({exc})") from exc
    return out


def cmyk_to_rgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert through the file's own profile when there is one; naive conversion shifts colours badly."""
    if icc:
        try:
            converted = ImageCms.profileToProfile(image, _open(icc), _open(srgb_profile()), outputMode="RGB")
            if converted is not None:
                return converted
        except Exception:  # a broken or unusable profile must not stop the picture loading
            pass
    return image.convert("RGB")
