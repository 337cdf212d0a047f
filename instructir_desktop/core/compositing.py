"""Masks, feathering and compositing on float32 numpy images (H, W, C) in [0, 1]."""

from __future__ import annotations

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
    out = mask
    for _ in range(3):
        out = _box_blur_axis(_box_blur_axis(out, box, 0), box, 1)
    return np.clip(out, 0.0, 1.0)


def rectangle_mask(height: int, width: int, bounds: Bounds) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.float32)
    clipped = bounds.intersect(Bounds.of_image(height, width))
    mask[clipped.slices] = 1.0
    return mask


def blend(original: np.ndarray, restored: np.ndarray, strength: float) -> np.ndarray:
    """Mix the restoration into the original: 0 keeps the original, 1 is the full restoration."""
    strength = float(np.clip(strength, 0.0, 1.0))
    if strength >= 1.0:
        return restored.astype(np.float32, copy=True)
    if strength <= 0.0:
        return original.astype(np.float32, copy=True)
    return (original + strength * (restored - original)).astype(np.float32)


def composite(base: np.ndarray, overlay: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``overlay`` over ``base`` through ``mask`` (H, W) in [0, 1]; same shapes, new array."""
    if base.shape != overlay.shape:
        raise ValueError(f"cannot composite {overlay.shape} over {base.shape}")
    if mask is None:
        return overlay.astype(np.float32, copy=True)
    weight = np.asarray(mask, dtype=np.float32)
    if weight.ndim == base.ndim - 1:
        weight = weight[..., None]
    return (base + weight * (overlay - base)).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
