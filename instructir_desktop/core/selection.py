"""Selections: a soft mask over the document saying where the next edit applies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from instructir_desktop.core.compositing import feather, rectangle_mask, stroke_mask
from instructir_desktop.core.geometry import Bounds


class Selection:
    """A float32 (H, W) mask in [0, 1]: 1 fully selected, 0 untouched, values between blend.

    Combining selections returns new ones; the mask of a selection is never changed in place,
    so a selection can be handed to a worker as it is.
    """

    __slots__ = ("_mask",)

    def __init__(self, mask: np.ndarray) -> None:
        values = np.asarray(mask, dtype=np.float32)
        if values.ndim != 2:
            raise ValueError(f"a selection mask is H×W, got {values.shape}")
        values = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)
        values.setflags(write=False)
        self._mask = values

    @classmethod
    def everything(cls, height: int, width: int) -> Selection:
        return cls(np.ones((height, width), dtype=np.float32))

    @classmethod
    def nothing(cls, height: int, width: int) -> Selection:
        return cls(np.zeros((height, width), dtype=np.float32))

    @classmethod
    def rectangle(cls, height: int, width: int, bounds: Bounds, feather_radius: float = 0.0) -> Selection:
        return cls(feather(rectangle_mask(height, width, bounds), feather_radius))

    @classmethod
    def stroke(
        cls,
        height: int,
        width: int,
        points: Sequence[tuple[float, float]] | np.ndarray,
        radius: float,
        feather_radius: float = 0.0,
    ) -> Selection:
        """A brush stroke through ``points`` (x, y) with ``radius`` pixels, softened by ``feather_radius``."""
        return cls(feather(stroke_mask(height, width, points, radius), feather_radius))

    @property
    def mask(self) -> np.ndarray:
        """The read-only (H, W) float32 mask."""
        return self._mask

    @property
    def height(self) -> int:
        return int(self._mask.shape[0])

    @property
    def width(self) -> int:
        return int(self._mask.shape[1])

    @property
    def bounds(self) -> Bounds | None:
        """The rectangle holding every selected pixel (any value above zero); None when empty."""
        return Bounds.from_mask(self._mask)

    @property
    def is_empty(self) -> bool:
        return not bool(self._mask.any())

    def crop(self, bounds: Bounds) -> np.ndarray:
        """The mask under ``bounds`` (a read-only view)."""
        return self._mask[bounds.slices]

    def feathered(self, radius: float) -> Selection:
        return Selection(feather(self._mask, radius))

    def inverted(self) -> Selection:
        return Selection(1.0 - self._mask)

    def union(self, other: Selection) -> Selection:
        return Selection(np.maximum(self._mask, self._checked(other)))

    def intersection(self, other: Selection) -> Selection:
        return Selection(np.minimum(self._mask, self._checked(other)))

    def subtract(self, other: Selection) -> Selection:
        return Selection(np.minimum(self._mask, 1.0 - self._checked(other)))

    def _checked(self, other: Selection) -> np.ndarray:
        if other._mask.shape != self._mask.shape:
            raise ValueError(f"cannot combine selections of shapes {self._mask.shape} and {other._mask.shape}")
        return other._mask
