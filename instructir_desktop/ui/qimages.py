"""numpy ↔ Qt image conversions (the only place pixels cross into Qt), and the canvas's mip pyramid.

``MipImage`` is what the canvas shows: the document's flattened float image converted to 8 bits
once per change, in the raster engine's native format (premultiplied ARGB32, or RGB32 when opaque),
and a pyramid of half-size levels (2×2 box filter) built from it in numpy. The canvas paints only
its exposed region, from the smallest level that is still at least as large as it is on screen, so
a repaint costs about one viewport of pixels whatever the photo's size.
"""

from __future__ import annotations

import sys

import numpy as np
from PySide6.QtGui import QImage, QPixmap

from instructir_desktop.core.compositing import to_uint8
from instructir_desktop.core.document import Flattened

# The pyramid stops once a level fits in this many pixels on its longer side.
SMALLEST_LEVEL = 64
# Rows converted at a time: bounds the float temporaries to a few MB whatever the photo's size.
_BAND_ROWS = 256
# Byte positions of B, G, R, A inside a native 32-bit ARGB pixel.
_CHANNELS = (0, 1, 2, 3) if sys.byteorder == "little" else (3, 2, 1, 0)


def to_qimage(rgb: np.ndarray, alpha: np.ndarray | None = None) -> QImage:
    """An 8-bit copy of float RGB (and optional alpha) pixels for display.

    The QImage owns its copy: Qt keeps no pointer into the numpy buffer, which may be freed.
    """
    if alpha is None:
        pixels = np.ascontiguousarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8))
        height, width = pixels.shape[:2]
        return QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    return rgba_to_qimage(to_uint8(np.concatenate([rgb, alpha[..., None]], axis=2)))


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """A copy of a uint8 (H, W, 4) straight-alpha image, such as a history thumbnail."""
    pixels = np.ascontiguousarray(rgba, dtype=np.uint8)
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, 4 * width, QImage.Format.Format_RGBA8888).copy()


def to_argb32(rgb: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Float straight RGB (+ alpha) in [0, 1] → (H, W, 4) uint8 in QImage's native 32-bit layout,
    premultiplied by alpha (alpha 255 when None). Converted in bands of rows to bound the memory."""
    height, width = rgb.shape[:2]
    blue, green, red, opacity = _CHANNELS
    out = np.empty((height, width, 4), dtype=np.uint8)
    for top in range(0, height, _BAND_ROWS):
        rows = slice(top, min(height, top + _BAND_ROWS))
        band = np.clip(np.asarray(rgb[rows], dtype=np.float32), 0.0, 1.0)
        if alpha is not None:
            coverage = np.clip(np.asarray(alpha[rows], dtype=np.float32), 0.0, 1.0)
            band *= coverage[..., None]
            out[rows, :, opacity] = coverage * 255.0 + 0.5
        else:
            out[rows, :, opacity] = 255
        band *= 255.0
        band += 0.5
        # Assigning floats to uint8 truncates: with the +0.5 above, that rounds.
        out[rows, :, red] = band[..., 0]
        out[rows, :, green] = band[..., 1]
        out[rows, :, blue] = band[..., 2]
    return out


def half_size(level: np.ndarray) -> np.ndarray:
    """The next mip level: each pixel the rounded mean of a 2×2 block (an odd last row or column
    is averaged with itself), so the size is ⌈H/2⌉ × ⌈W/2⌉."""
    height, width = level.shape[:2]
    even_h, even_w = height // 2, width // 2
    out = np.empty(((height + 1) // 2, (width + 1) // 2, *level.shape[2:]), dtype=np.uint8)
    if even_h and even_w:
        total = level[0 : 2 * even_h : 2, 0 : 2 * even_w : 2].astype(np.uint16)
        total += level[1 : 2 * even_h : 2, 0 : 2 * even_w : 2]
        total += level[0 : 2 * even_h : 2, 1 : 2 * even_w : 2]
        total += level[1 : 2 * even_h : 2, 1 : 2 * even_w : 2]
        total += 2
        total >>= 2
        out[:even_h, :even_w] = total
    if width % 2:
        column = level[:, -1].astype(np.uint16)
        out[:even_h, -1] = (column[0 : 2 * even_h : 2] + column[1 : 2 * even_h : 2] + 1) >> 1
    if height % 2:
        row = level[-1].astype(np.uint16)
        out[-1, :even_w] = (row[0 : 2 * even_w : 2] + row[1 : 2 * even_w : 2] + 1) >> 1
    if height % 2 and width % 2:
        out[-1, -1] = level[-1, -1]
    return out


class MipImage:
    """An 8-bit display image and its mip pyramid: ``levels[0]`` is full size, each next one half.

    Each level is a QImage over a numpy buffer this object keeps alive (no copy): keep the
    MipImage, not a level, for as long as a level is painted.
    """

    def __init__(self, pixels: np.ndarray, opaque: bool = True) -> None:
        """``pixels``: (H, W, 4) uint8 in the native ARGB32 layout (premultiplied unless ``opaque``)."""
        if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
            raise ValueError(f"a display image is H×W×4 uint8, got {pixels.shape} {pixels.dtype}")
        arrays = [np.ascontiguousarray(pixels)]
        while max(arrays[-1].shape[:2]) > SMALLEST_LEVEL:
            arrays.append(half_size(arrays[-1]))
        self._arrays = arrays
        self.opaque = opaque
        pixel_format = QImage.Format.Format_RGB32 if opaque else QImage.Format.Format_ARGB32_Premultiplied
        self.levels: tuple[QImage, ...] = tuple(
            QImage(array.data, array.shape[1], array.shape[0], array.strides[0], pixel_format) for array in arrays
        )

    @classmethod
    def from_float(cls, rgb: np.ndarray, alpha: np.ndarray | None = None) -> MipImage:
        return cls(to_argb32(rgb, alpha), opaque=alpha is None)

    @classmethod
    def from_qimage(cls, image: QImage) -> MipImage:
        """A copy of any QImage (a QPixmap's, a test's) as a display image."""
        opaque = not image.hasAlphaChannel()
        target = QImage.Format.Format_RGB32 if opaque else QImage.Format.Format_ARGB32_Premultiplied
        converted = image.convertToFormat(target)
        width, height = converted.width(), converted.height()
        if width == 0 or height == 0:
            raise ValueError("an empty image cannot be shown")
        rows = np.frombuffer(converted.constBits(), dtype=np.uint8).reshape(height, converted.bytesPerLine())
        return cls(np.array(rows[:, : 4 * width].reshape(height, width, 4)), opaque=opaque)

    @property
    def width(self) -> int:
        return int(self._arrays[0].shape[1])

    @property
    def height(self) -> int:
        return int(self._arrays[0].shape[0])

    def level_scale(self, index: int) -> tuple[float, float]:
        """Level pixels per image pixel, horizontally and vertically (about 2^-index)."""
        height, width = self._arrays[index].shape[:2]
        return width / self.width, height / self.height

    def level_for(self, zoom: float) -> int:
        """The smallest level still at least as large as the image shown at ``zoom`` (screen pixels
        per image pixel): level 0 from 50 % up, so full resolution at 100 % and above."""
        index = 0
        while index + 1 < len(self.levels) and min(self.level_scale(index + 1)) >= zoom:
            index += 1
        return index

    def to_qimage(self) -> QImage:
        """A full-size copy (for tests and callers that need their own image, never per repaint)."""
        return self.levels[0].copy()

    def to_pixmap(self) -> QPixmap:
        return QPixmap.fromImage(self.levels[0])


def flattened_pixmap(image: Flattened) -> MipImage:
    """The canvas's display image of a flattened document: converted once, painted from its levels."""
    return MipImage.from_float(image.rgb, image.alpha)
