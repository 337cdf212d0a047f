"""Integer pixel rectangles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Bounds:
    """A pixel rectangle: columns ``x .. x+width``, rows ``y .. y+height`` (end exclusive)."""

    x: int
    y: int
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width < 0 or self.height < 0:
            raise ValueError("bounds cannot have a negative size")

    @classmethod
    def of_image(cls, height: int, width: int) -> Bounds:
        return cls(0, 0, width, height)

    @classmethod
    def from_mask(cls, mask: np.ndarray, threshold: float = 0.0) -> Bounds | None:
        """The smallest rectangle holding every mask value above ``threshold``; None if empty."""
        rows = np.flatnonzero((mask > threshold).any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero((mask > threshold).any(axis=0))
        return cls(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))

    @classmethod
    def of_difference(cls, before: np.ndarray, after: np.ndarray) -> Bounds | None:
        """The smallest rectangle holding every pixel where two same-shaped images differ; None if equal."""
        if before.shape != after.shape:
            raise ValueError(f"cannot compare images of shapes {before.shape} and {after.shape}")
        changed = np.not_equal(before, after)
        if changed.ndim == 3:
            changed = changed.any(axis=2)
        return cls.from_mask(changed)

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def empty(self) -> bool:
        return self.width == 0 or self.height == 0

    @property
    def slices(self) -> tuple[slice, slice]:
        """Row and column slices for indexing an (H, W, ...) array."""
        return slice(self.y, self.bottom), slice(self.x, self.right)

    def intersect(self, other: Bounds) -> Bounds:
        x, y = max(self.x, other.x), max(self.y, other.y)
        right, bottom = min(self.right, other.right), min(self.bottom, other.bottom)
        return Bounds(x, y, max(0, right - x), max(0, bottom - y))

    def union(self, other: Bounds) -> Bounds:
        if self.empty:
            return other
        if other.empty:
            return self
        x, y = min(self.x, other.x), min(self.y, other.y)
        return Bounds(x, y, max(self.right, other.right) - x, max(self.bottom, other.bottom) - y)

    def expanded(self, margin: int, limit: Bounds | None = None) -> Bounds:
        grown = Bounds(self.x - margin, self.y - margin, self.width + 2 * margin, self.height + 2 * margin)
        return grown.intersect(limit) if limit is not None else grown

    def relative_to(self, outer: Bounds) -> Bounds:
        """These bounds in the coordinates of ``outer``'s top-left corner."""
        return Bounds(self.x - outer.x, self.y - outer.y, self.width, self.height)

    def scaled(self, factor: float) -> Bounds:
        return Bounds(
            round(self.x * factor), round(self.y * factor), round(self.width * factor), round(self.height * factor)
        )
