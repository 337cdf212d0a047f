"""Save float pixels in the format, depth and colour profile asked for, carrying the source's metadata.

Pillow encodes JPEG, 8-bit PNG, WebP and AVIF and writes every metadata structure (PNG chunks, the TIFF
directory with its EXIF and GPS sub-directories); imagecodecs' libpng encodes 16-bit PNG pixels, tifffile
lays out and compresses TIFF strips, pillow-heif encodes HEIC. Nothing here writes a chunk or a tag itself.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, PngImagePlugin, TiffImagePlugin

from instructir_desktop.io import colour
from instructir_desktop.io.files import FileProblem, ImageWriteError, atomic_write, one_line
from instructir_desktop.io.formats import FORMATS, resolve_format
from instructir_desktop.io.metadata import (
    DESCRIPTIVE_TAGS,
    EXIF_IFD,
    GPS_IFD,
    ImageMetadata,
    clean_dpi,
    parse_exif,
    reset_xmp_orientation,
    upright_exif,
)

ColourProfileChoice = Literal["original", "srgb"]
OPTIMIZED_JPEG_MAX_PIXELS = 2_000_000  # see _pillow_encode
_COMPRESS_LEVEL = 6
_PNG_SIGNATURE_AND_IHDR = 33  # 8-byte signature + the 25-byte IHDR chunk, always first and always this size


@dataclass(frozen=True)
class ExportOptions:
    """What an export asks for; ``None`` fields follow the file name and the source photo."""

    format: str | None = None
    quality: int = 95
    bit_depth: int | None = None
    keep_metadata: bool = True  # EXIF, XMP and resolution; the colour profile follows ``colour_profile``
    colour_profile: ColourProfileChoice = "original"  # convert back to the source's profile, or write sRGB


def write_image(
    path: str | os.PathLike[str],
    rgb: npt.ArrayLike,
    alpha: npt.ArrayLike | None = None,
    *,
    metadata: ImageMetadata | None = None,
    format: str | None = None,
    bit_depth: int | None = None,
    quality: int = 95,
    keep_metadata: bool = True,
    colour_profile: ColourProfileChoice = "original",
) -> Path:
    """Save float pixels (working-space sRGB, clipped to [0, 1] once in the file's space).

    ``bit_depth=None`` keeps the source's depth where the format can hold it. JPEG has no alpha, so a picture
    with alpha is composited onto white there. Invalid arrays are programming errors (ValueError); anything
    the user can cause (format, depth for the format, destination) is :class:`ImageWriteError`.
    """
    target = Path(path)
    fmt = resolve_format(target, format)
    colour_planes = _check_float_array("rgb", rgb, (2, 3))
    mask = None
    if alpha is not None:
        mask = _check_float_array("alpha", alpha, (2,))
        if mask.shape != colour_planes.shape[:2]:
            raise ValueError(f"alpha has shape {mask.shape}; expected {colour_planes.shape[:2]}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    if colour_profile not in ("original", "srgb"):
        raise ValueError(f"colour_profile must be 'original' or 'srgb', got {colour_profile!r}")
    depth = _resolve_depth(target, fmt, bit_depth, metadata)
    gray = (colour_planes.ndim == 2 or (metadata is not None and metadata.grayscale)) and fmt in ("PNG", "TIFF", "JPEG")
    try:
        colour_planes, icc = _colour_for_file(colour_planes, metadata, gray, colour_profile)
    except ValueError as exc:
        raise ImageWriteError(target, one_line(exc)) from exc
    pixels = _quantise(colour_planes, mask, gray=gray, flatten=fmt == "JPEG", full_scale=65535 if depth == 16 else 255)
    exif = xmp = dpi = None
    if metadata is not None and keep_metadata:
        exif = upright_exif(metadata.exif, (pixels.shape[1], pixels.shape[0])) if metadata.exif else None
        xmp = reset_xmp_orientation(metadata.xmp)
        dpi = clean_dpi(metadata.dpi) if metadata.dpi else None
    try:
        payload = _encode(fmt, pixels, quality, icc, exif, xmp, dpi)
    except FileProblem as exc:
        raise ImageWriteError(target, exc.reason) from exc
    except MemoryError as exc:
        raise ImageWriteError(target, "there is not enough memory to encode the image") from exc
    except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ImageWriteError(target, f"could not encode the image as {fmt}: {one_line(exc)}") from exc
    atomic_write(target, payload)
    return target


def _check_float_array(name: str, array: object, ndims: tuple[int, ...]) -> np.ndarray:
    result = np.asarray(array)
    if result.dtype.kind != "f":
        raise ValueError(f"{name} must hold floating-point values in [0, 1], got {result.dtype}")
    if result.ndim not in ndims or (result.ndim == 3 and result.shape[2] != 3):
        raise ValueError(f"{name} has shape {result.shape}; expected H×W×3 or H×W")
    if result.shape[0] == 0 or result.shape[1] == 0:
        raise ValueError(f"{name} is empty")
    return result


def _resolve_depth(path: Path, fmt: str, bit_depth: int | None, metadata: ImageMetadata | None) -> int:
    depths = FORMATS[fmt].depths
    if bit_depth is None:
        wanted = metadata.bit_depth if metadata is not None else 8
        return 16 if wanted == 16 and 16 in depths else 8
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth not in depths:
        raise ImageWriteError(
            path, f"{FORMATS[fmt].label} files can only hold 8 bits per channel; save as PNG or TIFF for 16"
        )
    return bit_depth


def _colour_for_file(
    rgb: np.ndarray, metadata: ImageMetadata | None, gray: bool, choice: ColourProfileChoice
) -> tuple[np.ndarray, bytes | None]:
    """The pixels in the file's colour space and the profile that says which one it is."""
    icc = metadata.icc_profile if metadata is not None else None
    if colour.needs_conversion(icc) and not gray and rgb.ndim == 3:
        assert icc is not None
        if choice == "srgb":
            return rgb, colour.srgb_profile()
        return colour.from_working(rgb, icc), icc
    # A profile for another colour space (CMYK, or gray on RGB) makes viewers misrender or reject the file.
    fits = icc is not None and colour.colour_space(icc) == ("GRAY" if gray else "RGB")
    return rgb, icc if fits else None


def _quantise(
    colour_planes: np.ndarray, alpha: np.ndarray | None, *, gray: bool, flatten: bool, full_scale: int
) -> np.ndarray:
    """Round (not truncate) to integers, a block of rows at a time so huge images do not double in memory."""
    height, width = colour_planes.shape[:2]
    colour_channels = 1 if gray else 3
    keep_alpha = alpha is not None and not flatten
    out = np.empty((height, width, colour_channels + int(keep_alpha)), np.uint16 if full_scale > 255 else np.uint8)
    step = max(1, (1 << 20) // width)

    def clean(block: np.ndarray) -> npt.NDArray[np.float32]:
        values = np.nan_to_num(block.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(values, 0.0, 1.0, out=values)

    def to_int(values: npt.NDArray[np.float32]) -> np.ndarray:
        return np.floor(values * np.float32(full_scale) + np.float32(0.5))

    for y in range(0, height, step):
        block = clean(colour_planes[y : y + step])
        if block.ndim == 2:
            block = block[:, :, None]
        a = clean(alpha[y : y + step])[:, :, None] if alpha is not None else None
        if flatten and a is not None:
            block = block * a + (1.0 - a)  # composite on white, the paper colour people expect
        if gray and block.shape[2] == 3:
            block = (block[:, :, 0:1] * 0.299 + block[:, :, 1:2] * 0.587 + block[:, :, 2:3] * 0.114).astype(np.float32)
        elif not gray and block.shape[2] == 1:
            block = np.repeat(block, 3, axis=2)
        out[y : y + step, :, :colour_channels] = to_int(block)
        if keep_alpha and a is not None:
            out[y : y + step, :, colour_channels:] = to_int(a)
    return out


def _encode(
    fmt: str,
    pixels: np.ndarray,
    quality: int,
    icc: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
    dpi: tuple[float, float] | None,
) -> bytes:
    if fmt == "TIFF":
        return _tiff(pixels, icc, exif, xmp, dpi)
    if fmt == "PNG" and pixels.dtype == np.uint16:
        return _png16(pixels, icc, exif, xmp, dpi)
    if fmt == "HEIC":
        return _heic(pixels, quality, icc, exif, xmp)
    return _pillow_encode(fmt, _as_pillow(pixels), quality, icc, exif, xmp, dpi)


def _as_pillow(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def _pillow_encode(
    fmt: str,
    image: Image.Image,
    quality: int,
    icc: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
    dpi: tuple[float, float] | None,
) -> bytes:
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        # Optimised Huffman tables save 2-28 % but make Pillow encode the whole file in one call
        # that holds the GIL (350 ms at 12 MP), so an editor window stalls while a large photo is
        # written on a background thread: large photos get the standard tables, which stream.
        optimize = image.width * image.height <= OPTIMIZED_JPEG_MAX_PIXELS
        options.update(quality=quality, optimize=optimize, subsampling=0 if quality >= 90 else 2)
    elif fmt in ("WEBP", "AVIF"):
        options.update(quality=quality)
        if fmt == "WEBP":
            options["method"] = 4
        dpi = None  # neither stores a resolution
    else:
        options["compress_level"] = _COMPRESS_LEVEL
    if dpi:
        options["dpi"] = dpi
    if xmp and fmt == "PNG":  # Pillow's PNG writer takes XMP as the iTXt chunk Adobe defined
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", errors="replace"))
        options["pnginfo"] = info
    elif xmp:
        options["xmp"] = xmp
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt, **options)
    except OSError:
        if not options.get("optimize"):
            raise
        # Optimised Huffman tables make libjpeg hold the whole file in one buffer, which Pillow
        # sizes at 1-2 bytes per pixel: a very noisy photo at high quality needs more and fails
        # ("broken data stream"). Without the optimisation the encoder streams: a few % larger.
        options["optimize"] = False
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png16(
    pixels: np.ndarray, icc: bytes | None, exif: bytes | None, xmp: bytes | None, dpi: tuple[float, float] | None
) -> bytes:
    """libpng encodes the 16-bit pixels (Pillow would keep 8); Pillow writes the metadata chunks, taken from a
    one-pixel PNG it saves with the same metadata and placed right after the header."""
    import imagecodecs

    body = bytes(imagecodecs.png_encode(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, level=_COMPRESS_LEVEL))
    if not (icc or exif or xmp or dpi):
        return body
    carrier = _pillow_encode("PNG", Image.new("L" if pixels.shape[2] <= 2 else "RGB", (1, 1)), 95, icc, exif, xmp, dpi)
    start = position = _PNG_SIGNATURE_AND_IHDR
    while carrier[position + 4 : position + 8] != b"IDAT":  # walk Pillow's chunks up to its pixel data
        position += 12 + int.from_bytes(carrier[position : position + 4], "big")
    head = _PNG_SIGNATURE_AND_IHDR
    return body[:head] + carrier[start:position] + body[head:]


def _tiff(
    pixels: np.ndarray, icc: bytes | None, exif: bytes | None, xmp: bytes | None, dpi: tuple[float, float] | None
) -> bytes:
    """tifffile compresses the strips; Pillow writes the directory, which tifffile cannot give an EXIF
    sub-directory. The file is tifffile's header, Pillow's directory, then tifffile's strips."""
    import tifffile

    channels = pixels.shape[2]
    if pixels.nbytes > 3 << 30:
        raise FileProblem("the image is too large for a TIFF file (over 4 GiB)")
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        pixels[:, :, 0] if channels == 1 else pixels,
        photometric="minisblack" if channels <= 2 else "rgb",
        extrasamples=("unassalpha",) if channels in (2, 4) else None,
        compression="zlib",
        compressionargs={"level": _COMPRESS_LEVEL},
        predictor=True,
        rowsperstrip=max(1, (256 << 10) // (pixels.shape[1] * channels * pixels.itemsize)),
        metadata=None,
        software=False,
    )
    data = buffer.getvalue()
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages.first
        offsets, counts, first = page.dataoffsets, page.databytecounts, page.offset
    strips_start = min(offsets)
    strips_end = max(o + c for o, c in zip(offsets, counts, strict=True))
    directory = TiffImagePlugin.ImageFileDirectory_v2(prefix=data[:2])
    stream = io.BytesIO(data)
    stream.seek(first)
    directory.load(stream)
    dict(directory)  # Pillow decodes tags when read, and writes back only those it decoded
    directory[273] = tuple(o - strips_start for o in offsets)  # Pillow adds where the strips land
    if icc:
        directory[34675] = icc
    if xmp:
        directory[700] = xmp
    if dpi:
        directory[282], directory[283] = (TiffImagePlugin.IFDRational(round(v * 1000), 1000) for v in dpi)
        directory[296] = 2
    parsed = parse_exif(exif)
    if parsed is not None:
        for tag in DESCRIPTIVE_TAGS & set(parsed):
            directory[tag] = parsed[tag]
        for pointer in (EXIF_IFD, GPS_IFD):
            if sub := parsed.get_ifd(pointer):
                directory[pointer] = dict(sub)
    header = data[:4] + (8).to_bytes(4, "little" if data[:2] == b"II" else "big")
    return header + directory.tobytes(len(header)) + data[strips_start:strips_end]


def _heic(pixels: np.ndarray, quality: int, icc: bytes | None, exif: bytes | None, xmp: bytes | None) -> bytes:
    try:
        import pillow_heif
    except ImportError:
        raise FileProblem("saving HEIC needs the pillow-heif package, which is not installed") from None
    mode = "RGBA" if pixels.shape[2] == 4 else "RGB"
    options: dict[str, object] = {"quality": quality}
    for key, value in (("icc_profile", icc), ("exif", exif), ("xmp", xmp)):
        if value:
            options[key] = value
    buffer = io.BytesIO()
    pillow_heif.encode(
        mode, (pixels.shape[1], pixels.shape[0]), np.ascontiguousarray(pixels).tobytes(), buffer, **options
    )
    return buffer.getvalue()
