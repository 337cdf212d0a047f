"""numpy ↔ Qt image conversions (the only place pixels cross into Qt)."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap

from instructir_desktop.core.compositing import to_uint8
from instructir_desktop.core.document import Flattened


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


def flattened_pixmap(image: Flattened) -> QPixmap:
    return QPixmap.fromImage(to_qimage(image.rgb, image.alpha))
