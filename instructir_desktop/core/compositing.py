"""Masks, feathering and compositing on float32 numpy images (H, W, C) in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from instructir_desktop.core.geometry import Bounds


def _box_blur_axis(values: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over a window of 2*radius+1 along ``axis`` (edges extended), via cumulative sums."""
    if radius <= 0:
        return values
    pad = [(0, 0)] * values.ndim
    pad[axis] = (radius + 1, radius)
    padded = np.pad(values, pad, mode="edge").astype(np.float64)
    summed = np.cumsum(padded, axis=axis)
    upper = np.take(summed, np.arange(2 * radius + 1, summed.shape[axis]), axis=axis)
    lower = np.take(summed, np.arange(0, summed.shape[axis] - 2 * radius - 1), axis=axis)
    return ((upper - lower) / (2 * radius + 1)).astype(np.float32)


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soften a mask's edge over about ``radius`` pixels (three box passes ≈ a Gaussian)."""
    mask = np.asarray(mask, dtype=np.float32)
    if radius <= 0:
        return mask.copy()
    # Three box blurs of this half-width give a Gaussian of standard deviation ~radius/2.
    box = max(1, round(radius / 2))
    # A selection is usually small against a 24 MP photo, and the blur of zeros is zeros: blurring
    # only the selected rectangle plus everything the three passes can reach gives the same values.
    # The margin keeps the crop's edge at zero through every pass, so its edge extension adds nothing.
    selected = Bounds.from_mask(np.not_equal(mask, 0)) if mask.ndim == 2 else None
    if selected is None:
        return np.zeros_like(mask) if mask.ndim == 2 else _feather_all(mask, box)
    region = selected.expanded(3 * box + 1, Bounds.of_image(mask.shape[0], mask.shape[1]))
    out = np.zeros_like(mask)
    out[region.slices] = _feather_all(mask[region.slices], box)
    return out


def _feather_all(mask: np.ndarray, box: int) -> np.ndarray:
    out = mask
    for _ in range(3):
        out = _box_blur_axis(_box_blur_axis(out, box, 0), box, 1)
    clipped: np.ndarray = np.clip(out, 0.0, 1.0)
    return clipped


def rectangle_mask(height: int, width: int, bounds: Bounds) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.float32)
    clipped = bounds.intersect(Bounds.of_image(height, width))
    mask[clipped.slices] = 1.0
    return mask


def stroke_mask(
    height: int, width: int, points: Sequence[tuple[float, float]] | np.ndarray, radius: float
) -> np.ndarray:
    """A brush stroke of ``radius`` pixels along ``points`` (x, y in pixel units, pixel centres at +0.5).

    The edge is antialiased over one pixel; feather it for a softer brush.
    """
    mask = np.zeros((height, width), dtype=np.float32)
    path = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if path.shape[0] == 0 or radius <= 0:
        return mask
    # A single dab is a zero-length segment.
    starts, ends = (path, path) if path.shape[0] == 1 else (path[:-1], path[1:])
    image = Bounds.of_image(height, width)
    reach = radius + 1.0
    for (ax, ay), (bx, by) in zip(starts, ends, strict=True):
        left, top = int(np.floor(min(ax, bx) - reach)), int(np.floor(min(ay, by) - reach))
        right, bottom = int(np.ceil(max(ax, bx) + reach)), int(np.ceil(max(ay, by) + reach))
        box = Bounds(left, top, max(0, right - left), max(0, bottom - top)).intersect(image)
        if box.empty:
            continue
        # Only the segment's own rectangle is measured, so a stroke costs its area, not the photo's.
        xs = np.arange(box.x, box.right, dtype=np.float64)[None, :] + 0.5
        ys = np.arange(box.y, box.bottom, dtype=np.float64)[:, None] + 0.5
        dx, dy = bx - ax, by - ay
        length_sq = dx * dx + dy * dy
        if length_sq > 0:
            along = np.clip(((xs - ax) * dx + (ys - ay) * dy) / length_sq, 0.0, 1.0)
            distance = np.hypot(xs - (ax + along * dx), ys - (ay + along * dy))
        else:
            distance = np.hypot(xs - ax, ys - ay)
        coverage = np.clip(radius + 0.5 - distance, 0.0, 1.0).astype(np.float32)
        target = mask[box.slices]
        np.maximum(target, coverage, out=target)
    return mask


def blend(original: np.ndarray, restored: np.ndarray, strength: float) -> np.ndarray:
    """Mix the restoration into the original: 0 keeps the original, 1 is the full restoration."""
    strength = float(np.clip(strength, 0.0, 1.0))
    if strength >= 1.0:
        return restored.astype(np.float32, copy=True)
    if strength <= 0.0:
        return original.astype(np.float32, copy=True)
    mixed: np.ndarray = (original + strength * (restored - original)).astype(np.float32)
    return mixed


def composite(base: np.ndarray, overlay: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``overlay`` over ``base`` through ``mask`` (H, W) in [0, 1]; same shapes, new array."""
    if base.shape != overlay.shape:
        raise ValueError(f"cannot composite {overlay.shape} over {base.shape}")
    if mask is None:
        return overlay.astype(np.float32, copy=True)
    weight = np.asarray(mask, dtype=np.float32)
    if weight.ndim == base.ndim - 1:
        weight = weight[..., None]
    mixed: np.ndarray = (base + weight * (overlay - base)).astype(np.float32)
    return mixed


def to_uint8(image: np.ndarray) -> np.ndarray:
    values: np.ndarray = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return values
