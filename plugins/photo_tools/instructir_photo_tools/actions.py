"""The photo tools' actions: plain numpy, float32 in and out, progress and cancel between stages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from instructir_desktop.plugins.api import ActionContext

# Luma weights (Rec. 709) for brightness measures.
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def auto_white_balance(
    image: np.ndarray, mask: np.ndarray | None, params: Mapping[str, Any], context: ActionContext
) -> np.ndarray:
    """Neutralise a colour cast, measured on the surfaces that should be grey, keeping white white.

    The cast is estimated from near-neutral pixels (``estimate_cast``), not from the average of the
    scene: a snowfield beside sunlit trees averages green, yet the snow is white and needs no
    correction. Near-white pixels keep their colour (``_protect_highlights``), so snow and clipped sky
    never turn tinted. The gains are measured inside the selection when there is one, so a person
    can point at the region whose colour should be neutral.
    """
    pixels = _weighted_pixels(image, mask)
    gains = estimate_cast(pixels)
    context.check_cancel()
    strength = float(params["strength"])
    gains = 1 + strength * (gains - 1)
    context.log(f"white balance gains R {gains[0]:.3f} G {gains[1]:.3f} B {gains[2]:.3f}")
    corrected = image * gains.astype(np.float32)
    context.progress(1.0)
    return np.clip(_protect_highlights(image, corrected), 0, 1).astype(np.float32)


# A pixel counts as near-neutral when its channels differ by less than this share of the brightest.
_NEUTRAL_CHROMA = 0.25
_CAST_ROUNDS = 6


def estimate_cast(pixels: np.ndarray) -> np.ndarray:
    """Per-channel gains (brightness kept) that make neutral surfaces grey.

    Iterated grey-pixel estimate: start from grey-world on the brighter half of the tones, then
    repeatedly take the pixels that look neutral once corrected (low chroma, neither black nor
    clipped) and move the gains so their average is grey. Surfaces that are really coloured drop
    out after the first round; a scene without neutral surfaces keeps the grey-world estimate.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    luma = pixels @ _LUMA
    bright = pixels[luma >= np.quantile(luma, 0.5)] if len(luma) > 16 else pixels
    means = np.maximum(bright.mean(axis=0), 1e-4)
    gains = means.mean() / means
    usable = (luma > 0.05) & (pixels.max(axis=1) < 0.999)  # black has no colour; clipped lost it
    candidates = pixels[usable] if np.count_nonzero(usable) >= 16 else pixels
    for _ in range(_CAST_ROUNDS):
        corrected = candidates * gains
        high = corrected.max(axis=1)
        chroma = (high - corrected.min(axis=1)) / np.maximum(high, 1e-4)
        neutral = corrected[chroma < _NEUTRAL_CHROMA]
        if len(neutral) < max(16, len(candidates) // 200):
            break  # too few grey surfaces to trust: keep what we have
        average = np.maximum(neutral.mean(axis=0), 1e-4)
        step = average.mean() / average
        gains = gains * step
        if np.abs(step - 1).max() < 1e-3:
            break
    # Keep the brightness: the gains' luma-weighted mean is 1 (near-white pixels are protected apart).
    return (gains / float(gains @ _LUMA)).astype(np.float32)


def _protect_highlights(image: np.ndarray, corrected: np.ndarray) -> np.ndarray:
    """Fade the correction out over the near-white pixels (lowest channel from 0.85 to 1): white
    stays white instead of taking the gains' tint."""
    lowest = image.min(axis=-1, keepdims=True)
    keep = np.clip((lowest - 0.85) / 0.15, 0.0, 1.0)
    keep = keep * keep * (3 - 2 * keep)  # smoothstep: no visible edge where it starts
    return corrected + keep * (image - corrected)


def auto_levels(
    image: np.ndarray, mask: np.ndarray | None, params: Mapping[str, Any], context: ActionContext
) -> np.ndarray:
    clip = float(params["clip"]) / 100
    pixels = _weighted_pixels(image, mask)
    if params["per_channel"]:
        low = np.quantile(pixels, clip, axis=0)
        high = np.quantile(pixels, 1 - clip, axis=0)
    else:
        low = np.full(3, np.quantile(pixels, clip), dtype=np.float32)
        high = np.full(3, np.quantile(pixels, 1 - clip), dtype=np.float32)
    context.check_cancel()
    span = np.maximum(high - low, 1e-3)
    stretched = np.clip((image - low.astype(np.float32)) / span.astype(np.float32), 0, 1)
    gamma = float(params["gamma"])
    if gamma != 1.0:
        stretched = stretched ** np.float32(1 / gamma)
    context.progress(1.0)
    return stretched.astype(np.float32)


def unsharp_mask(
    image: np.ndarray, mask: np.ndarray | None, params: Mapping[str, Any], context: ActionContext
) -> np.ndarray:
    amount = float(params["amount"])
    threshold = float(params["threshold"])
    blurred = np.empty_like(image)
    for channel in range(3):
        context.check_cancel()
        blurred[..., channel] = gaussian_blur(image[..., channel], float(params["radius"]))
        context.progress((channel + 1) / 4)
    detail = image - blurred
    if threshold > 0:
        # A soft knee rather than a hard cut, so sharpened edges do not get halos of untouched pixels.
        magnitude = np.abs(detail)
        detail *= np.clip((magnitude - threshold) / max(threshold, 1e-6), 0, 1)
    context.progress(1.0)
    return np.clip(image + amount * detail, 0, 1).astype(np.float32)


def gaussian_blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur: exact taps for small sigmas, three box blurs (cost independent of radius) above.

    Three boxes match the variance poorly when the boxes are only 1-3 pixels wide, so small
    sigmas (the usual sharpening radii) use a sampled kernel, which is cheap there anyway.
    """
    if sigma < 2.5:
        return _separable_gaussian(plane.astype(np.float32), sigma)
    sizes = _box_sizes(sigma, 3)
    result = plane.astype(np.float32)
    for size in sizes:
        radius = (size - 1) // 2
        result = _box_blur_axis(_box_blur_axis(result, radius, 0), radius, 1)
    return result


def _separable_gaussian(plane: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    result = plane
    for axis in (0, 1):
        padded = np.pad(result, [(radius, radius) if a == axis else (0, 0) for a in range(2)], mode="reflect")
        length = result.shape[axis]
        blurred = np.zeros_like(result)
        for offset, weight in enumerate(taps):
            blurred += weight * np.take(padded, np.arange(offset, offset + length), axis=axis)
        result = blurred
    return result


def _box_sizes(sigma: float, passes: int) -> list[int]:
    # Box widths whose combined variance matches sigma² (odd widths, mixed to hit it closely).
    ideal = np.sqrt(12 * sigma * sigma / passes + 1)
    lower = int(np.floor(ideal))
    lower -= 1 - lower % 2
    upper = lower + 2
    count_lower = round(
        (12 * sigma * sigma - passes * lower * lower - 4 * passes * lower - 3 * passes) / (-4 * lower - 4)
    )
    return [lower if i < count_lower else upper for i in range(passes)]


def _box_blur_axis(plane: np.ndarray, radius: int, axis: int) -> np.ndarray:
    if radius <= 0:
        return plane
    padded = np.pad(plane, [(radius + 1, radius) if a == axis else (0, 0) for a in range(2)], mode="reflect")
    summed = np.cumsum(padded, axis=axis, dtype=np.float64)
    length = plane.shape[axis]
    upper = np.take(summed, np.arange(2 * radius + 1, 2 * radius + 1 + length), axis=axis)
    lower = np.take(summed, np.arange(0, length), axis=axis)
    return ((upper - lower) / (2 * radius + 1)).astype(np.float32)


def _weighted_pixels(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The pixels to measure: the selected ones (mask > 0.5) if any, else all (subsampled if huge)."""
    pixels = image.reshape(-1, 3)
    if mask is not None:
        selected = mask.reshape(-1) > 0.5
        if selected.any():
            pixels = pixels[selected]
    step = max(1, len(pixels) // 2_000_000)
    return pixels[::step]
