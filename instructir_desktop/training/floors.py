"""Classical floors: the best cheap method a person could use instead of the model, per task.

``instructir-desktop evaluate`` runs these on the same degraded images as the model and prints
them beside it, so the table says honestly whether the network is worth running. Each method is
given the facts of the degradation it needs (the true noise level, the true blur kernel, the
low-resolution image), which a real user would not have: the floors are upper bounds for their
methods. Each task tries a few methods or parameters and the evaluation keeps the best by mean
PSNR over the images, so the floor is the strongest of them, chosen with hindsight.

OpenCV (non-local means, CLAHE, Lanczos, filters) and scikit-image (Wiener and Richardson-Lucy
deconvolution) do the work; both are optional (the ``eval`` extra), and without them evaluate
prints the model alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clue:
    """What a classical method is told about the degradation."""

    sigma_255: float | None = None  # noise standard deviation, of 255
    kernel: np.ndarray | None = None  # (K, K) blur kernel, sums to 1
    small: np.ndarray | None = None  # the low-resolution photo (h, w, 3) the upscale input came from


Method = Callable[[np.ndarray, Clue], np.ndarray]  # (H, W, 3) float32 in [0, 1] -> same


def available() -> bool:
    try:
        import cv2  # noqa: F401
        import skimage  # noqa: F401
    except ImportError:
        return False
    return True


def _uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def _float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255


# ----------------------------------------------------------------------------- noise


def non_local_means(strength: float) -> Method:
    """OpenCV's colour non-local means with its filter strength at ``strength`` times sigma."""

    def run(image: np.ndarray, clue: Clue) -> np.ndarray:
        import cv2

        h = strength * (clue.sigma_255 or 10.0)
        return _float(cv2.fastNlMeansDenoisingColored(_uint8(image), None, h, h, 7, 21))

    return run


# ----------------------------------------------------------------------------- blur


def _padded(image: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, int]:
    pad = kernel.shape[0]
    return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"), pad


def wiener(balance: float) -> Method:
    """Wiener deconvolution with the true kernel (scikit-image), borders reflected first."""

    def run(image: np.ndarray, clue: Clue) -> np.ndarray:
        from skimage.restoration import wiener as deconvolve

        assert clue.kernel is not None
        padded, pad = _padded(image, clue.kernel)
        channels = [deconvolve(padded[..., c].astype(np.float64), clue.kernel, balance) for c in range(3)]
        return np.clip(np.stack(channels, axis=-1)[pad:-pad, pad:-pad], 0, 1).astype(np.float32)

    return run


def richardson_lucy(iterations: int) -> Method:
    """Richardson-Lucy deconvolution with the true kernel (scikit-image)."""

    def run(image: np.ndarray, clue: Clue) -> np.ndarray:
        from skimage.restoration import richardson_lucy as deconvolve

        assert clue.kernel is not None
        padded, pad = _padded(image, clue.kernel)
        channels = [deconvolve(padded[..., c].astype(np.float64), clue.kernel, num_iter=iterations) for c in range(3)]
        return np.clip(np.stack(channels, axis=-1)[pad:-pad, pad:-pad], 0, 1).astype(np.float32)

    return run


# ----------------------------------------------------------------------------- rain


def median(size: int) -> Method:
    def run(image: np.ndarray, clue: Clue) -> np.ndarray:
        import cv2

        return _float(cv2.medianBlur(_uint8(image), size))

    return run


# ----------------------------------------------------------------------------- haze


def _guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide), from box filters: edge-aware smoothing of ``source``."""
    import cv2

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, (2 * radius + 1, 2 * radius + 1), normalize=True, borderType=cv2.BORDER_REFLECT)

    mean_guide, mean_source = box(guide), box(source)
    covariance = box(guide * source) - mean_guide * mean_source
    variance = box(guide * guide) - mean_guide**2
    a = covariance / (variance + eps)
    b = mean_source - a * mean_guide
    return box(a) * guide + box(b)


def dark_channel_prior(omega: float = 0.95, patch: int = 15, floor: float = 0.1) -> Method:
    """He et al.'s dark-channel-prior dehazing with a guided-filter refined transmission."""

    def run(image: np.ndarray, clue: Clue) -> np.ndarray:
        import cv2

        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
        dark = cv2.erode(image.min(axis=2), kernel)
        brightest = np.argsort(dark.ravel())[-max(1, dark.size // 1000) :]
        airlight = image.reshape(-1, 3)[brightest].max(axis=0).clip(0.05, 1.0)
        normalised_dark = cv2.erode((image / airlight).min(axis=2).astype(np.float32), kernel)
        transmission = 1 - omega * normalised_dark
        grey = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2GRAY)
        transmission = _guided_filter(grey, transmission.astype(np.float32), 40, 1e-3).clip(floor, 1)
        restored = (image - airlight) / transmission[..., None] + airlight
        return np.clip(restored, 0, 1).astype(np.float32)

    return run


# ----------------------------------------------------------------------------- low light and colour


def auto_gamma(target_mean: float = 0.45) -> Method:
    """A gamma curve that brings the mean brightness to ``target_mean``."""

    def run(image: np.ndarray, clue: Clue) -> np.ndarray:
        mean = float(np.clip(image.mean(), 1e-4, 0.99))
        gamma = float(np.clip(np.log(target_mean) / np.log(mean), 0.1, 1.0))
        return np.power(np.clip(image, 0, 1), gamma).astype(np.float32)

    return run


def clahe(after: Method | None = None, clip_limit: float = 2.0) -> Method:
    """Contrast-limited adaptive histogram equalisation of lightness (OpenCV), optionally after another method."""

    def run(image: np.ndarray, clue: Clue) -> np.ndarray:
        import cv2

        if after is not None:
            image = after(image, clue)
        lab = cv2.cvtColor(_uint8(image), cv2.COLOR_RGB2LAB)
        lab[..., 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(8, 8)).apply(lab[..., 0])
        return _float(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))

    return run


def auto_levels(saturation: float = 1.0, cut: float = 0.5) -> Method:
    """Per-channel levels stretched between the ``cut`` and 100 - ``cut`` percentiles, then saturation."""

    def run(image: np.ndarray, clue: Clue) -> np.ndarray:
        low = np.percentile(image, cut, axis=(0, 1))
        high = np.percentile(image, 100 - cut, axis=(0, 1))
        stretched = np.clip((image - low) / np.maximum(high - low, 1e-3), 0, 1)
        if saturation != 1.0:
            grey = stretched @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
            stretched = np.clip(grey[..., None] + (stretched - grey[..., None]) * saturation, 0, 1)
        return stretched.astype(np.float32)

    return run


# ----------------------------------------------------------------------------- resolution


def lanczos(image: np.ndarray, clue: Clue) -> np.ndarray:
    """Lanczos (8x8) interpolation of the low-resolution photo to the output size (OpenCV)."""
    import cv2

    assert clue.small is not None
    height, width = image.shape[:2]
    return np.clip(cv2.resize(clue.small, (width, height), interpolation=cv2.INTER_LANCZOS4), 0, 1)


# Per task, the candidates tried; the best on the evaluated images is the floor.
FLOORS: dict[str, tuple[tuple[str, Method], ...]] = {
    "denoise": tuple((f"non-local means h={k}σ", non_local_means(k)) for k in (0.6, 0.8, 1.0, 1.2)),
    "deblur": (
        *((f"Wiener, true kernel, balance {b}", wiener(b)) for b in (0.003, 0.01, 0.03)),
        ("Richardson-Lucy, true kernel, 20 it.", richardson_lucy(20)),
    ),
    "derain": (("median 3x3", median(3)), ("median 5x5", median(5))),
    "dehaze": (("dark channel prior", dark_channel_prior()),),
    "lowlight": (
        ("auto gamma", auto_gamma()),
        ("CLAHE", clahe()),
        ("auto gamma + CLAHE", clahe(after=auto_gamma())),
    ),
    "enhance": (("auto levels", auto_levels()), ("auto levels + saturation 1.2", auto_levels(1.2))),
    "upscale": (("Lanczos", lanczos),),
}
