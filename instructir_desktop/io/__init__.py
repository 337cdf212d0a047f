"""Image files in and out: the only layer that knows about formats, bit depths, profiles and metadata.

reading (every library behind one reader and one pixel limit), raw (camera RAW), writing (every encoder
behind one writer), metadata (EXIF, XMP, the camera's settings), colour (profiles and the sRGB working
space), formats (what opens, what saves), files (errors and safe writes).
"""

from instructir_desktop.io.files import ImageReadError, ImageWriteError
from instructir_desktop.io.formats import (
    FORMATS,
    READ_EXTENSIONS,
    WRITE_EXTENSIONS,
    WRITE_FORMATS,
    FileFormat,
    format_for_path,
    read_filter,
)
from instructir_desktop.io.metadata import CameraInfo, ImageMetadata
from instructir_desktop.io.reading import (
    DEFAULT_MAX_PIXELS,
    ImageHeader,
    LoadedImage,
    max_pixels,
    read_image,
    read_image_header,
    set_max_pixels,
)
from instructir_desktop.io.writing import ExportOptions, write_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "READ_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "WRITE_FORMATS",
    "CameraInfo",
    "ExportOptions",
    "FileFormat",
    "ImageHeader",
    "ImageMetadata",
    "ImageReadError",
    "ImageWriteError",
    "LoadedImage",
    "format_for_path",
    "max_pixels",
    "read_filter",
    "read_image",
    "read_image_header",
    "set_max_pixels",
    "write_image",
]
