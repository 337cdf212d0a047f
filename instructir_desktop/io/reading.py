"""Read photographs as upright float RGB in [0, 1] plus alpha and the metadata needed to save them back.

One library per family: Pillow for JPEG, 8-bit PNG and TIFF, WebP and AVIF; imagecodecs (libpng) for 16-bit
PNG, which Pillow would cut to 8 bits; tifffile for 16-bit and floating-point TIFF; pillow-heif for HEIC;
rawpy (LibRaw) for camera RAW. Whatever the library, the file is checked before any pixel is decoded: the
pixel limit (a setting) against the declared size, and the declared size against the data actually present,
so a small file that lies about its size is refused instead of being decoded into gigabytes of black.
What is dropped on the way (further frames, a damaged EXIF block, an unusable profile, out-of-range values)
is said in ``LoadedImage.notices``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile

from instructir_desktop.io import colour
from instructir_desktop.io.files import (
    FileProblem,
    ImageReadError,
    corrupt,
    one_line,
    read_input,
    too_large,
    unsupported,
)
from instructir_desktop.io.formats import sniff
from instructir_desktop.io.metadata import (
    ImageMetadata,
    as_bytes,
    camera_info,
    clean_dpi,
    displayed_size,
    exif_from_tiff,
    exif_orientation,
    orient,
    read_exif,
    reset_xmp_orientation,
    upright_exif,
)

DEFAULT_MAX_PIXELS = 200_000_000
_settings = {"max_pixels": DEFAULT_MAX_PIXELS}
# zlib cannot shrink data more than 1032 times, so a PNG needs at least this share of its pixel bytes.
_DEFLATE_MAX_RATIO = 1032


def set_max_pixels(limit: int) -> None:
    """The largest picture (width × height) any reader decodes when not told otherwise: a user setting."""
    if limit < 1:
        raise ValueError(f"the pixel limit must be positive, got {limit}")
    _settings["max_pixels"] = int(limit)


def max_pixels() -> int:
    return _settings["max_pixels"]


@dataclass
class LoadedImage:
    """Pixels ready for the network plus everything needed to save them back faithfully."""

    rgb: npt.NDArray[np.float32]
    alpha: npt.NDArray[np.float32] | None
    metadata: ImageMetadata
    path: Path | None = None
    notices: tuple[str, ...] = ()  # what was dropped or changed on reading, one sentence each

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


@dataclass
class _Decoded:
    """What a library gave: stored planes (integers up to ``full_scale``, or floats), before orientation."""

    width: int
    height: int
    metadata: ImageMetadata
    orientation: int = 1
    colour: np.ndarray | None = None  # None: header only
    alpha: np.ndarray | None = None
    full_scale: float = 255.0
    notices: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------
# Public entry points


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> LoadedImage:
    """Load a picture as upright float RGB in [0, 1] (in sRGB; see ``ImageMetadata.icc_profile``).

    Every failure, whatever its cause, surfaces as :class:`ImageReadError` with a one-line message, because
    the caller's only sensible reaction is to show it.
    """
    source = Path(path)
    data = read_input(source)
    limit = _settings["max_pixels"] if max_pixels is None else max_pixels
    try:
        decoded = _decode(data, source.suffix, limit, header_only=False)
        image = _finish(decoded)
    except FileProblem as exc:
        raise ImageReadError(source, exc.reason) from exc
    except Exception as exc:  # decoders raise a zoo of types; the contract is one
        raise ImageReadError(source, _describe_failure(exc)) from exc
    image.path = source
    return image


def read_image_header(path: str | os.PathLike[str]) -> ImageHeader:
    """Size and metadata without decoding pixels, for size checks before loading and for file dialogs."""
    source = Path(path)
    data = read_input(source)
    try:
        decoded = _decode(data, source.suffix, None, header_only=True)
    except FileProblem as exc:
        raise ImageReadError(source, exc.reason) from exc
    except Exception as exc:
        raise ImageReadError(source, _describe_failure(exc)) from exc
    width, height = displayed_size(decoded.width, decoded.height, decoded.orientation)
    return ImageHeader(width, height, _upright_metadata(decoded.metadata, (width, height))[0])


# --------------------------------------------------------------------------------------------------------------
# Shared steps


def _decode(data: bytes, suffix: str, limit: int | None, *, header_only: bool) -> _Decoded:
    fmt = sniff(data[:64], suffix)
    if fmt == "RAW":
        from instructir_desktop.io.raw import decode_raw

        return _Decoded(**decode_raw(data, limit, header_only=header_only))
    if fmt == "HEIC":
        return _decode_heic(data, limit, header_only)
    if fmt == "TIFF":
        return _decode_tiff(data, limit, header_only)
    return _decode_with_pillow(data, fmt, limit, header_only)


def check_size(width: int, height: int, limit: int | None) -> None:
    if width <= 0 or height <= 0:
        raise corrupt("the header gives no picture size")
    if limit is not None and width * height > limit:
        raise too_large(width, height, limit)


def _finish(decoded: _Decoded) -> LoadedImage:
    assert decoded.colour is not None
    notices = list(decoded.notices)
    colour_planes = orient(decoded.colour, decoded.orientation)
    height, width = colour_planes.shape[:2]
    rgb = np.empty((height, width, 3), np.float32)
    source = colour_planes[:, :, None] if colour_planes.ndim == 2 else colour_planes
    if source.shape[2] not in (1, 3):
        raise corrupt("unexpected number of colour channels")
    alpha = None if decoded.alpha is None else np.empty((height, width), np.float32)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinities in float files: cleaned below
        np.divide(source, np.float32(decoded.full_scale), out=rgb, dtype=np.float32)
        if decoded.alpha is not None:
            np.divide(orient(decoded.alpha, decoded.orientation), np.float32(decoded.full_scale), out=alpha)
    if decoded.colour.dtype.kind == "f":
        notices += _bring_into_range(rgb, alpha)
    metadata, dropped = _upright_metadata(decoded.metadata, (width, height))
    notices += dropped
    icc = metadata.icc_profile
    if colour.needs_conversion(icc) and not metadata.grayscale:
        assert icc is not None
        try:
            rgb = colour.to_working(rgb, icc)
        except ValueError:
            metadata = replace(metadata, icc_profile=None)
            notices.append("Its colour profile could not be used, so the colours are shown as sRGB.")
    elif icc and colour.colour_space(icc) not in ("RGB", "GRAY"):
        metadata = replace(metadata, icc_profile=None)
    return LoadedImage(rgb=rgb, alpha=alpha, metadata=metadata, notices=tuple(notices))


def _upright_metadata(metadata: ImageMetadata, size: tuple[int, int]) -> tuple[ImageMetadata, list[str]]:
    exif = upright_exif(metadata.exif, size) if metadata.exif else None
    dropped = []
    if metadata.exif and exif is None:
        dropped.append("Its EXIF block is damaged and was not kept.")
    elif read_exif(metadata.exif)[1]:
        dropped.append("Part of its EXIF block is damaged and was not kept.")
    camera = metadata.camera or camera_info(exif)
    return replace(metadata, exif=exif, xmp=reset_xmp_orientation(metadata.xmp), camera=camera), dropped


def _bring_into_range(rgb: np.ndarray, alpha: np.ndarray | None) -> list[str]:
    """Floating-point files may hold any value; the editor works on [0, 1]. Clip, and say so if it mattered."""
    outside = 0
    for plane in (rgb, alpha):
        if plane is None:
            continue
        np.nan_to_num(plane, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        outside += int(np.count_nonzero((plane < 0) | (plane > 1)))
        np.clip(plane, 0.0, 1.0, out=plane)
    if not outside:
        return []
    share = outside / (rgb.size + (alpha.size if alpha is not None else 0))
    return [f"{share:.1%} of its floating-point values were outside 0–1 and were clipped."]


def _frames_notice(count: int, what: str = "frames") -> list[str]:
    return [f"It holds {count} {what}; only the first was opened."] if count > 1 else []


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "there is not enough memory to open the image"
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return f"the image is too large to open safely ({one_line(exc)})"
    detail = one_line(exc)
    if not detail or "<" in detail or len(detail) > 160:
        return corrupt().reason
    return corrupt(detail).reason


def unpremultiply(colour_planes: np.ndarray, alpha: np.ndarray, full_scale: float) -> np.ndarray:
    """Associated-alpha files store colour × alpha; the network and the other formats want straight colour."""
    a = alpha.astype(np.float64)
    if colour_planes.ndim == 3:
        a = a[:, :, None]
    straight = colour_planes.astype(np.float64) * full_scale / np.maximum(a, 1.0 if full_scale > 1 else 1e-12)
    straight[np.broadcast_to(a == 0, straight.shape)] = 0.0
    if colour_planes.dtype.kind == "f":
        return straight.astype(np.float32)
    return np.clip(np.rint(straight), 0, full_scale).astype(colour_planes.dtype.newbyteorder("="))


# --------------------------------------------------------------------------------------------------------------
# Pillow: JPEG, PNG, WebP, AVIF, 8-bit TIFF


def _open_with_pillow(stream: io.BytesIO, fmt: str) -> ImageFile.ImageFile:
    """Open lazily (header only) with the format's plugin. Not ``Image.open``: its process-wide bomb limit
    (about 179 MP) would veto pictures our own, explicit limit allows (200 MP phone cameras exist)."""
    stream.seek(0)
    if fmt == "JPEG":
        from PIL import JpegImagePlugin

        return JpegImagePlugin.jpeg_factory(stream)
    if fmt == "PNG":
        from PIL import PngImagePlugin

        return PngImagePlugin.PngImageFile(stream)
    if fmt == "TIFF":
        from PIL import TiffImagePlugin

        return TiffImagePlugin.TiffImageFile(stream)
    try:
        if fmt == "AVIF":
            from PIL import AvifImagePlugin

            return AvifImagePlugin.AvifImageFile(stream)
        from PIL import WebPImagePlugin

        return WebPImagePlugin.WebPImageFile(stream)
    except ImportError:
        raise FileProblem(f"this installation's Pillow was built without {fmt.title()} support") from None


def _load_with_pillow(image: Image.Image) -> None:
    try:
        image.load()
    except Image.DecompressionBombError:
        width, height = image.size
        raise too_large(width, height, 2 * (Image.MAX_IMAGE_PIXELS or 0), "the limit of Pillow's decoder") from None


def _decode_with_pillow(data: bytes, fmt: str, limit: int | None, header_only: bool) -> _Decoded:
    image = _open_with_pillow(io.BytesIO(data), fmt)
    width, height = image.size
    check_size(width, height, limit)
    args = image.tile[0][3] if image.tile else ""
    rawmode = str(args if isinstance(args, str) else args[0] if args else "")
    deep_png = fmt == "PNG" and ";16" in rawmode
    mode = rawmode.removesuffix("B") if deep_png else image.mode
    info = image.info
    exif = as_bytes(info.get("exif"))
    if fmt == "PNG" and not exif and "Raw profile type exif" in info:  # ImageMagick's way; Pillow decodes it
        exif = image.getexif().tobytes()
    cmyk = image.mode == "CMYK"
    metadata = ImageMetadata(
        format=fmt,
        source_mode=mode,
        bit_depth=16 if deep_png or mode.startswith("I;16") else 8,
        grayscale=mode in ("1", "L", "LA", "La", "LA;16") or mode.startswith("I;16"),
        exif=exif,
        icc_profile=None if cmyk else as_bytes(info.get("icc_profile")),
        xmp=as_bytes(info.get("xmp")),
        dpi=clean_dpi(info.get("dpi")),
    )
    decoded = _Decoded(width, height, metadata, exif_orientation(exif))
    decoded.notices += _frames_notice(getattr(image, "n_frames", 1))
    if header_only:
        return decoded
    if fmt == "PNG":
        _check_png_data(data, width, height)
    if deep_png:
        decoded.colour, decoded.alpha = _png16_pixels(data, image)
        decoded.full_scale = 65535
    else:
        _load_with_pillow(image)
        decoded.colour, decoded.alpha, decoded.full_scale = pillow_planes(image, as_bytes(info.get("icc_profile")))
    return decoded


def _check_png_data(data: bytes, width: int, height: int) -> None:
    """Refuse a PNG whose compressed data could not hold the picture its header declares, even at 1 bit per
    pixel (the fewest a PNG can have), before anything is allocated for it."""
    needed = height * (1 + (width + 7) // 8)
    if len(data) * _DEFLATE_MAX_RATIO < needed:
        raise corrupt(f"it holds {len(data):,} bytes, too few for the {width}×{height} picture its header declares")


def _png16_pixels(data: bytes, image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    import imagecodecs

    pixels = np.asarray(imagecodecs.png_decode(data))
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    colour_planes = pixels[:, :, :3] if channels >= 3 else pixels[:, :, 0]
    alpha = pixels[:, :, -1] if channels in (2, 4) else None
    key = image.info.get("transparency")
    if alpha is None and key is not None:  # a tRNS colour key: that one colour is transparent
        matches = np.all(pixels == np.asarray(key, np.uint16).reshape(-1)[:channels], axis=2)
        alpha = np.where(matches, 0, 65535).astype(np.uint16)
    return colour_planes, alpha


def pillow_planes(image: Image.Image, icc: bytes | None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Bring any Pillow mode to gray or RGB integer planes plus optional alpha, and their full-scale value."""
    mode = image.mode
    if mode in ("I", "F", "I;16S", "I;32", "I;32S", "F;32"):
        raise unsupported("a 32-bit or signed image")
    if mode.startswith("I;16"):
        return np.asarray(image), None, 65535
    if mode in ("La", "RGBa"):
        # Premultiplied alpha (TIFF "associated alpha"); Pillow cannot convert La at all, so undo it here.
        array = np.asarray(image)
        straight = unpremultiply(array[:, :, :-1], array[:, :, -1], 255)
        return (straight[:, :, 0] if mode == "La" else straight), array[:, :, -1], 255
    if mode == "1":
        image = image.convert("L")  # keeps a tRNS key, handled just below
        mode = "L"
    has_key = "transparency" in image.info
    if mode == "L" and has_key:
        image = image.convert("LA")
    elif (mode in ("P", "RGB") and has_key) or mode == "PA":
        image = image.convert("RGBA")
    elif mode == "CMYK":
        image = colour.cmyk_to_rgb(image, icc)
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if image.mode == "LA":
        return array[:, :, 0], array[:, :, 1], 255
    if image.mode == "RGBA":
        return array[:, :, :3], array[:, :, 3], 255
    return array, None, 255


# --------------------------------------------------------------------------------------------------------------
# TIFF: tifffile for structure, metadata and deep samples; Pillow for 8-bit layouts (palette, CMYK, YCbCr...)


def _decode_tiff(data: bytes, limit: int | None, header_only: bool) -> _Decoded:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        width, height = int(page.imagewidth), int(page.imagelength)
        check_size(width, height, limit)
        tags = page.tags
        kind = np.dtype(page.dtype).kind if page.dtype is not None else "u"
        deep = page.bitspersample > 8 or kind == "f"
        alpha_kind = _tiff_alpha_kind(page)
        gray = int(page.photometric) in (0, 1)
        if deep:
            mode = ("LA" if alpha_kind else "I") if gray else ("RGBA" if alpha_kind else "RGB")
            mode += ";32F" if kind == "f" else ";16"
        else:
            mode = _open_with_pillow(io.BytesIO(data), "TIFF").mode
        metadata = ImageMetadata(
            format="TIFF",
            source_mode=mode,
            bit_depth=16 if deep else 8,
            grayscale=gray and int(page.photometric) != 3,
            exif=exif_from_tiff(data),
            icc_profile=_tag_bytes(tags, 34675),
            xmp=_tag_bytes(tags, 700),
            dpi=_tiff_dpi(tags),
        )
        if mode == "CMYK":
            metadata = replace(metadata, icc_profile=None)
        orientation = int(tags[274].value) if 274 in tags and 1 <= int(tags[274].value) <= 8 else 1
        decoded = _Decoded(width, height, metadata, orientation)
        pages = sum(1 for p in tif.pages if not int(getattr(p, "subfiletype", 0)) & 1)
        decoded.notices += _frames_notice(pages, "pages")
        if header_only:
            return decoded
        _check_tiff_data(page, len(data))
        if not deep:
            return _tiff_with_pillow(data, decoded)
        _tiff_deep_pixels(page, decoded, alpha_kind)
    return decoded


def _tag_bytes(tags: object, code: int) -> bytes | None:
    tag = tags.get(code)  # type: ignore[attr-defined]
    value = None if tag is None else tag.value
    if isinstance(value, np.ndarray):
        value = value.tobytes()
    return as_bytes(value)


def _tiff_dpi(tags: object) -> tuple[float, float] | None:
    get = tags.get  # type: ignore[attr-defined]
    unit = int(get(296).value) if get(296) is not None else 2
    if unit not in (2, 3) or get(282) is None or get(283) is None:
        return None
    scale = 2.54 if unit == 3 else 1.0
    try:
        x, y = (_ratio(get(code).value) * scale for code in (282, 283))
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    return clean_dpi((x, y))


def _ratio(value: object) -> float:
    if isinstance(value, tuple):
        return value[0] / value[1]
    return float(value)  # type: ignore[arg-type]


def _tiff_alpha_kind(page: object) -> int | None:
    """Which extra sample is alpha: missing ExtraSamples counts as plain alpha, the way Pillow reads 8-bit."""
    base = 1 if int(page.photometric) in (0, 1) else 3  # type: ignore[attr-defined]
    if int(page.samplesperpixel) <= base:  # type: ignore[attr-defined]
        return None
    extra = tuple(page.extrasamples)  # type: ignore[attr-defined]
    kind = int(extra[0]) if extra else 2
    return None if kind == 0 else kind


def _check_tiff_data(page: object, size: int) -> None:
    """The strips or tiles the directory points at must lie inside the file (else tifffile would invent zeros)."""
    offsets, counts = page.dataoffsets, page.databytecounts  # type: ignore[attr-defined]
    if not offsets or any(o + c > size or c == 0 for o, c in zip(offsets, counts, strict=False)):
        raise corrupt("its image data runs past the end of the file")


def _tiff_with_pillow(data: bytes, decoded: _Decoded) -> _Decoded:
    image = _open_with_pillow(io.BytesIO(data), "TIFF")
    _load_with_pillow(image)
    # Pillow's TIFF loader applies the Orientation tag itself and then deletes it; never rotate twice.
    if 274 not in getattr(image, "tag_v2", {}):
        decoded.orientation = 1
    icc = None if decoded.metadata.source_mode != "CMYK" else as_bytes(image.info.get("icc_profile"))
    decoded.colour, decoded.alpha, decoded.full_scale = pillow_planes(image, icc)
    return decoded


def _tiff_deep_pixels(page: object, decoded: _Decoded, alpha_kind: int | None) -> None:
    photometric = int(page.photometric)  # type: ignore[attr-defined]
    if photometric not in (0, 1, 2):
        names = {3: "a 16-bit palette TIFF", 5: "a 16-bit CMYK TIFF", 6: "a 16-bit YCbCr TIFF"}
        raise unsupported(names.get(photometric, f"TIFF photometric interpretation {photometric}"))
    compression = int(page.compression)  # type: ignore[attr-defined]
    try:
        array = np.asarray(page.asarray())  # type: ignore[attr-defined]
    except Exception as exc:  # tifffile names the codec it lacks; anything else is damage
        text = one_line(exc)
        if "not supported" in text or f": {compression}" in text or isinstance(exc, NotImplementedError):
            raise unsupported(f"TIFF compression {compression}") from exc
        raise
    if int(page.planarconfig) == 2 and array.ndim == 3:  # type: ignore[attr-defined]
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[:, :, None]
    kind = array.dtype.kind
    if kind == "f":
        array = array.astype(np.float32, copy=False)
        full_scale = 1.0
    elif kind == "u" and array.dtype.itemsize <= 4:
        full_scale = float(np.iinfo(array.dtype).max)
    else:
        raise unsupported(f"a TIFF of {array.dtype.itemsize * 8}-bit {'signed ' if kind == 'i' else ''}samples")
    base = 1 if photometric in (0, 1) else 3
    colour_planes = array[:, :, 0] if base == 1 else array[:, :, :3]
    alpha = array[:, :, base] if alpha_kind is not None and array.shape[2] > base else None
    if photometric == 0:  # white is zero
        colour_planes = (full_scale - colour_planes).astype(array.dtype)
    if alpha is not None and alpha_kind == 1:
        colour_planes = unpremultiply(colour_planes, alpha, full_scale)
    if kind == "u" and full_scale > 65535:  # 32-bit integers: to the 16-bit grid the editor keeps
        colour_planes = colour_planes.astype(np.float64) / full_scale
        alpha = None if alpha is None else alpha.astype(np.float64) / full_scale
        full_scale = 1.0
    decoded.colour, decoded.alpha, decoded.full_scale = colour_planes, alpha, full_scale


# --------------------------------------------------------------------------------------------------------------
# HEIC through pillow-heif


def _decode_heic(data: bytes, limit: int | None, header_only: bool) -> _Decoded:
    try:
        import pillow_heif
    except ImportError:
        raise FileProblem(
            "opening HEIC photos needs the pillow-heif package, which is not installed (pip install pillow-heif)"
        ) from None
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
    except (ValueError, RuntimeError) as exc:
        if "plugin" in str(exc).lower() or "decoder" in str(exc).lower():
            raise FileProblem(f"this HEIC file needs a codec the installed libheif lacks ({one_line(exc)})") from exc
        raise corrupt(one_line(exc)) from exc
    width, height = heif.size
    check_size(width, height, limit)
    mode = str(heif.mode)
    info = heif.info
    exif = as_bytes(info.get("exif"))
    metadata = ImageMetadata(
        format="HEIC",
        source_mode=mode,
        bit_depth=16 if mode.endswith(";16") else 8,
        grayscale=mode.startswith("L"),
        exif=exif,
        icc_profile=as_bytes(info.get("icc_profile")),
        xmp=as_bytes(info.get("xmp")),
    )
    # libheif has already turned the pixels upright (irot/imir), so the EXIF orientation is not applied again.
    decoded = _Decoded(width, height, metadata, 1)
    decoded.notices += _frames_notice(len(heif), "images")
    if header_only:
        return decoded
    pixels = np.asarray(heif)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    decoded.colour = pixels[:, :, :3] if channels >= 3 else pixels[:, :, 0]
    decoded.alpha = pixels[:, :, -1] if channels in (2, 4) else None
    if pixels.dtype == np.uint16:  # 10 or 12-bit samples, shifted up to the top of 16 bits by pillow-heif
        bits = int(info.get("bit_depth") or 16)
        decoded.full_scale = ((1 << bits) - 1) << (16 - bits) if 8 < bits < 16 else 65535
    else:
        decoded.full_scale = 255
    return decoded
