"""Image files in and out: the only layer that knows about formats, bit depths and metadata."""

from instructir_desktop.io.images import (
    DEFAULT_MAX_PIXELS,
    READ_EXTENSIONS,
    WRITE_EXTENSIONS,
    ImageHeader,
    ImageMetadata,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    format_for_path,
    read_image,
    read_image_header,
    write_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "READ_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "ImageHeader",
    "ImageMetadata",
    "ImageReadError",
    "ImageWriteError",
    "LoadedImage",
    "format_for_path",
    "read_image",
    "read_image_header",
    "write_image",
]
