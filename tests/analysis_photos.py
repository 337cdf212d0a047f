"""Synthetic photos for the analysis tests: a natural-looking scene (a 1/f^1.7 field under many
sharp-edged shapes, quantised to 8 bits) and known degradations of it."""

from __future__ import annotations

import numpy as np


def natural_photo(side: int = 384, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frequencies = np.fft.fftfreq(side)
    radius = np.hypot(*np.meshgrid(frequencies, frequencies, indexing="ij"))
    radius[0, 0] = 1.0
    shared = rng.normal(size=(side, side)) + 1j * rng.normal(size=(side, side))
    planes = []
    for _ in range(3):
        own = rng.normal(size=(side, side)) + 1j * rng.normal(size=(side, side))
        spectrum = (0.8 * shared + 0.45 * own) / radius**1.7
        spectrum[0, 0] = 0
        planes.append(np.real(np.fft.ifft2(spectrum)))
    rgb = np.stack(planes, -1)
    rgb = (rgb - rgb.mean()) / (4 * rgb.std()) + 0.45
    for _ in range(60):  # objects with sharp edges: what a focused photo has and blur takes away
        top, left = rng.integers(0, side - 60, 2)
        height, width = rng.integers(20, 120, 2)
        patch = rgb[top : top + height, left : left + width]
        rgb[top : top + height, left : left + width] = patch * 0.6 + rng.uniform(0.05, 0.95, 3) * 0.4
    return quantised(rgb)


def quantised(rgb: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(rgb, 0, 1) * 255) / 255).astype(np.float32)


def with_noise(rgb: np.ndarray, sigma_255: float, seed: int = 1) -> np.ndarray:
    return quantised(rgb + np.random.default_rng(seed).normal(0, sigma_255 / 255, rgb.shape))


def degraded(rgb: np.ndarray, task: str, level: float = 0.5, seed: int = 0) -> np.ndarray:
    """The training degradation that ``task`` undoes (torch, as training makes it)."""
    import torch

    from instructir_desktop.training.degradations import degrade

    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    out = degrade(tensor, task, torch.Generator().manual_seed(seed), level)
    return np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())
