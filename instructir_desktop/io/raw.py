"""Camera RAW through rawpy (LibRaw): demosaiced at 16 bits with the camera's white balance, its colour
matrix and orientation, into sRGB. A RAW is only ever read; the EXIF it carries goes to every export."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from instructir_desktop.io.files import FileProblem, corrupt, too_large
from instructir_desktop.io.metadata import (
    CameraInfo,
    ImageMetadata,
    camera_info,
    displayed_size,
    exif_from_tiff,
    exif_time,
    exif_with_camera,
    serialise,
)

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def decode_raw(data: bytes, limit: int | None, *, header_only: bool) -> dict[str, Any]:
    """The fields of the reader's ``_Decoded`` for a RAW file (its pixels already upright)."""
    import rawpy

    raw = rawpy.RawPy()
    try:
        try:
            raw.open_buffer(io.BytesIO(data))
        except rawpy.LibRawFileUnsupportedError:
            version = ".".join(map(str, rawpy.libraw_version))
            raise FileProblem(
                f"LibRaw {version} cannot read this RAW file (the camera may be newer than this version, "
                "or the file is not a camera RAW)"
            ) from None
        except rawpy.LibRawError as exc:
            raise _libraw_problem(exc) from exc
        sizes = raw.sizes
        width, height = displayed_size(sizes.width, sizes.height, 5 if sizes.flip in (5, 6) else 1)
        if width <= 0 or height <= 0:
            raise corrupt("the RAW file gives no picture size")
        if limit is not None and width * height > limit:
            raise too_large(width, height, limit)
        try:
            # rawpy reads the shot's settings (``other``) after unpacking the raw data, so even a header
            # probe of a RAW reads the file through; a damaged one is caught here.
            metadata = ImageMetadata(
                format="RAW", source_mode="RGB;16", bit_depth=16, grayscale=False, **_raw_exif(raw, data)
            )
            fields: dict[str, Any] = {"width": width, "height": height, "metadata": metadata}
            if header_only:
                return fields
            pixels = raw.postprocess(
                output_bps=16,
                use_camera_wb=True,
                output_color=rawpy.ColorSpace.sRGB,
                gamma=(2.4, 12.92),  # the sRGB curve
                no_auto_bright=True,  # dcraw's auto-brightening clips 1 % of the highlights; keep them
            )
        except rawpy.LibRawError as exc:
            raise _libraw_problem(exc) from exc
        fields.update(colour=np.asarray(pixels), full_scale=65535)
        return fields
    finally:
        raw.close()


def _libraw_problem(exc: Exception) -> FileProblem:
    import rawpy

    if isinstance(exc, rawpy.LibRawUnsufficientMemoryError | rawpy.LibRawTooBigError):
        return FileProblem("there is not enough memory to develop this RAW file")
    if isinstance(exc, rawpy.LibRawIOError | rawpy.LibRawDataError):
        return corrupt("the RAW data ends early or is damaged")
    return corrupt(f"LibRaw: {type(exc).__name__.removeprefix('LibRaw')}")


def _raw_exif(raw: Any, data: bytes) -> dict[str, Any]:
    """EXIF from the file's own TIFF structure (DNG, NEF, CR2, ARW...) or its embedded JPEG preview (CR3, RAF,
    RW2...), completed with what LibRaw decoded (ISO, shutter, aperture, focal length, date, lens)."""
    exif = exif_from_tiff(data) if data[:4] in _TIFF_MAGIC else None
    if exif is None:
        exif = _preview_exif(raw)
    other, lens = raw.other, raw.lens
    decoded = CameraInfo(
        lens=lens.model.strip() or None,
        iso=other.iso_speed or None,
        exposure_time=other.shutter_speed or None,
        f_number=other.aperture or None,
        focal_length=other.focal_length or None,
        taken=exif_time(other.timestamp),
    )
    exif = exif_with_camera(exif, decoded)
    found = camera_info(exif) or CameraInfo()
    # The file's own values win; LibRaw's fill the gaps (it knows the ISO of bodies that hide it in maker notes).
    merged = CameraInfo(**{k: getattr(found, k) or getattr(decoded, k) for k in CameraInfo.__dataclass_fields__})
    return {"exif": exif, "camera": merged}


def _preview_exif(raw: Any) -> bytes | None:
    import rawpy
    from PIL import Image

    try:
        thumb = raw.extract_thumb()
        if thumb.format != rawpy.ThumbFormat.JPEG:
            return None
        with Image.open(io.BytesIO(bytes(thumb.data)), formats=["JPEG"]) as preview:
            return serialise(preview.getexif())
    except Exception:  # no preview, or one Pillow cannot read: the RAW opens without its EXIF
        return None
