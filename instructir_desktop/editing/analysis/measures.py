"""Measurements of a photo's pixels that each restoration task responds to (numpy only, no torch).

Everything here is a number with a physical meaning (a noise sigma in 8-bit levels, a fraction
of the spectrum, a mean luminance); ``verdict`` turns them into problems with confidences. Global
statistics (exposure, haze, colour) are taken on an area-downscaled overview; the measurements that
live at the pixel scale (noise, sharpness, rain streaks, resolution) on a few full-resolution
crops, so a 12 MP photo costs about as much as a 1 MP one.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
OVERVIEW_SIDE = 512  # global statistics do not need more pixels than this
CROP_SIDE = 512
MAX_CROPS = 4
SPECTRUM_TILE = 128
# Immerkær's estimator: sigma = sqrt(pi/2) / 6 * mean |I * N| for the mask N below.
_IMMERKAER_SCALE = float(np.sqrt(np.pi / 2) / 6)
NOISE_BLOCK = 16
DARK_CHANNEL_WINDOW = 7


@dataclass(frozen=True)
class Measurements:
    width: int
    height: int
    # noise: robust sigma of the finest detail on flat blocks, in 8-bit levels (0-255 scale)
    noise_sigma: float
    # sharpness: whitened spectral energy at 0.18-0.30 cycles/px relative to 0.06-0.10, in dB; about
    # 0 to -5 for a sharp photo (a natural 1/f spectrum), far below for a blurred or enlarged one
    softness_db: float
    # how far the fine spectrum rises again after a dip (dB): the mark of an enlarged small image
    rebound_db: float
    # the same loss one octave lower (0.1-0.2 against 0.03-0.07 cycles/px): what blur takes first
    blur_db: float
    # spread of that loss between 8 directions (dB): camera shake blurs along its path only
    blur_anisotropy_db: float
    # exposure, on the sRGB luminance in [0, 1]
    mean_luminance: float
    median_luminance: float
    bright_luminance: float  # 99th percentile
    dark_fraction: float  # share of pixels below 0.1
    # haze
    dark_channel_median: float
    dark_channel_low: float  # 10th percentile
    contrast: float  # 95th - 5th percentile of luminance
    saturation: float  # mean HSV saturation
    # colour (Hasler and Süsstrunk's colourfulness on a 0-255 scale)
    colourfulness: float
    # rain: coherence of the bright thin-line residual's orientation (0 none, 1 one direction)
    streak_coherence: float
    streak_angle_deg: float  # the lines' angle from vertical
    streak_strength: float  # energy of the positive thin-line residual, in 8-bit levels
    streak_peak: float  # the strongest 5° orientation bin of line-like pixels against the mean bin
    streak_peak_angle_deg: float

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


def luminance(rgb: Array) -> Array:
    return np.asarray(rgb[..., :3] @ LUMA, dtype=np.float32)


def area_downscale(rgb: Array, longest: int) -> Array:
    """Integer-factor block mean so the longest side is at most ``longest``."""
    height, width = rgb.shape[:2]
    factor = int(np.ceil(max(height, width) / longest))
    if factor <= 1:
        return rgb
    h, w = height // factor * factor, width // factor * factor
    blocks = rgb[:h, :w].reshape(h // factor, factor, w // factor, factor, -1)
    return np.asarray(blocks.mean(axis=(1, 3)), dtype=np.float32)


def crops(rgb: Array, side: int = CROP_SIDE, count: int = MAX_CROPS) -> list[Array]:
    """Full-resolution crops spread over the photo (the whole photo when it is small)."""
    height, width = rgb.shape[:2]
    if height * width <= count * side * side or height < side or width < side:
        return [rgb]
    # Centre and the four quadrants' centres: where the subject is, and away from the vignetted corners.
    centres = [(0.5, 0.5), (0.3, 0.3), (0.7, 0.7), (0.3, 0.7), (0.7, 0.3)][:count]
    out = []
    for fy, fx in centres:
        top = int(np.clip(fy * height - side / 2, 0, height - side))
        left = int(np.clip(fx * width - side / 2, 0, width - side))
        out.append(rgb[top : top + side, left : left + side])
    return out


def box_mean(plane: Array, radius: int) -> Array:
    """Mean over a (2r+1)² window, edges replicated, by cumulative sums."""
    size = 2 * radius + 1
    padded = np.pad(plane, radius, mode="edge").astype(np.float64)
    table = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1))
    table[1:, 1:] = padded.cumsum(0).cumsum(1)
    total = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    return np.asarray(total / (size * size), dtype=np.float32)


def min_filter(plane: Array, size: int) -> Array:
    """Minimum over a size² window (separable), edges replicated."""
    radius = size // 2
    padded = np.pad(plane, radius, mode="edge")
    rows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=0).min(axis=-1)
    return np.asarray(np.lib.stride_tricks.sliding_window_view(rows, size, axis=1).min(axis=-1), dtype=np.float32)


# ----------------------------------------------------------------------------- noise


def immerkaer_map(plane: Array) -> Array:
    """|I * N| on the interior, N = [[1,-2,1],[-2,4,-2],[1,-2,1]]: zero on any plane or linear ramp."""
    p = plane
    response = np.abs(
        p[:-2, :-2]
        - 2 * p[:-2, 1:-1]
        + p[:-2, 2:]
        - 2 * p[1:-1, :-2]
        + 4 * p[1:-1, 1:-1]
        - 2 * p[1:-1, 2:]
        + p[2:, :-2]
        - 2 * p[2:, 1:-1]
        + p[2:, 2:]
    )
    return np.asarray(response, dtype=np.float32)


def noise_sigma(tiles: list[Array]) -> float:
    """Noise sigma in 8-bit levels: Immerkær's estimate per 16×16 block, over the flattest blocks.

    Texture only adds to a block's estimate, so the low end of the block distribution belongs to
    flat areas where the estimate is the noise alone. Blocks near black or white are left out:
    clipping hides noise there.
    """
    estimates = []
    for tile in tiles:
        channel_estimates = []
        for channel in range(3):
            plane = tile[..., channel]
            response = immerkaer_map(plane)
            mean_level = plane[1:-1, 1:-1]
            h = response.shape[0] // NOISE_BLOCK * NOISE_BLOCK
            w = response.shape[1] // NOISE_BLOCK * NOISE_BLOCK
            if h == 0 or w == 0:
                continue
            shape = (h // NOISE_BLOCK, NOISE_BLOCK, w // NOISE_BLOCK, NOISE_BLOCK)
            block_sigma = response[:h, :w].reshape(shape).mean(axis=(1, 3)) * _IMMERKAER_SCALE
            block_level = mean_level[:h, :w].reshape(shape).mean(axis=(1, 3))
            usable = block_sigma[(block_level > 0.06) & (block_level < 0.94)]
            if usable.size >= 4:
                channel_estimates.append(float(np.percentile(usable, 10)))
        if channel_estimates:
            estimates.append(float(np.median(channel_estimates)))
    if not estimates:
        return 0.0
    # The 10th percentile of block estimates sits below the true sigma on pure noise: 16x16 blocks
    # scatter by about 8 % around it (measured on flat noise fields).
    return float(np.median(estimates)) * 255 / 0.9


# ----------------------------------------------------------------------------- sharpness


def _tile_spectra(plane: Array) -> Array:
    """Mean power spectrum of Hann-windowed tiles (fftshifted, SPECTRUM_TILE²)."""
    n = SPECTRUM_TILE
    height, width = plane.shape
    window = np.outer(np.hanning(n), np.hanning(n)).astype(np.float32)
    total = np.zeros((n, n), dtype=np.float64)
    count = 0
    step = n
    for top in range(0, height - n + 1, step):
        for left in range(0, width - n + 1, step):
            tile = plane[top : top + n, left : left + n]
            if float(tile.std()) < 0.01:  # featureless tiles say nothing about sharpness
                continue
            tile = (tile - tile.mean()) * window
            total += np.abs(np.fft.fft2(tile)) ** 2
            count += 1
    if count == 0:
        return np.zeros((n, n), dtype=np.float32)
    return np.asarray(np.fft.fftshift(total / count), dtype=np.float32)


@dataclass(frozen=True)
class SpectrumBands:
    softness_db: float
    rebound_db: float
    blur_db: float
    anisotropy_db: float


# Radial bands 0.04 cycles/px wide from 0.02 to 0.5; index 1 (0.06-0.10) is the reference.
_BAND_EDGES = np.arange(0.02, 0.5 + 1e-9, 0.04)


def _whitened_spectrum(tiles: list[Array]) -> tuple[Array, Array, Array] | None:
    """Mean power × f² of the crops' tiles, with each coefficient's radius and angle (0-π)."""
    n = SPECTRUM_TILE
    spectra = [_tile_spectra(luminance(tile)) for tile in tiles]
    spectra = [s for s in spectra if float(s.sum()) > 0]
    if not spectra:
        return None
    power = np.mean(spectra, axis=0)
    freq = (np.arange(n) - n // 2) / n
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    radius = np.sqrt(fx**2 + fy**2)
    angle = np.mod(np.arctan2(fy, fx), np.pi)
    return (
        np.asarray(power * radius**2, dtype=np.float32),
        np.asarray(radius, dtype=np.float32),
        np.asarray(angle, dtype=np.float32),
    )


def spectrum_bands(tiles: list[Array]) -> SpectrumBands:
    """How much detail the photo keeps at two scales, whether its spectrum rises again past a dip,
    and how unequal the loss is between directions.

    Natural photos have power falling about as 1/f², so power × f² stays nearly flat when a photo
    is sharp; blur makes it fall smoothly and steadily, camera shake only along the direction of
    motion. A photo enlarged by interpolation keeps its middle frequencies but has (almost) nothing
    between the small image's Nyquist frequency and the interpolation kernel's first image of the
    spectrum, and then a little energy again: the fine profile dips and rises. Blur never makes it
    rise (under 2 dB, which is what 8-bit noise alone gives).
    """
    spectrum = _whitened_spectrum(tiles)
    if spectrum is None:
        return SpectrumBands(0.0, 0.0, 0.0, 0.0)
    whitened, radius, angle = spectrum

    def level(low: float, high: float, mask: npt.NDArray[np.bool_] | None = None) -> float:
        select = (radius >= low) & (radius < high)
        if mask is not None:
            select &= mask
        return float(whitened[select].mean()) + 1e-14

    profile = 10 * np.log10([level(low, high) for low, high in pairwise(_BAND_EDGES)])
    profile -= profile[1]
    centres = (_BAND_EDGES[:-1] + _BAND_EDGES[1:]) / 2
    softness = float(profile[(centres > 0.18) & (centres < 0.3)].mean())
    tail = profile[centres > 0.2]
    rebound = max(float(tail[j] - tail[:j].min()) for j in range(1, len(tail)))
    sectors = 8
    directional = []
    for index in range(sectors):
        mask = (angle >= index * np.pi / sectors) & (angle < (index + 1) * np.pi / sectors)
        directional.append(10 * np.log10(level(0.1, 0.2, mask) / level(0.03, 0.07, mask)))
    return SpectrumBands(
        softness, max(0.0, rebound), float(np.mean(directional)), float(max(directional) - min(directional))
    )


# ----------------------------------------------------------------------------- rain


@dataclass(frozen=True)
class Streaks:
    coherence: float
    angle_deg: float
    strength: float
    peak: float
    peak_angle_deg: float


_ORIENTATION_BINS = 36  # 5° each


def streaks(tiles: list[Array]) -> Streaks:
    """Thin bright lines: the positive part of luminance minus its local mean, and how much its
    edges agree on one orientation, over the whole crop (the structure tensor summed: heavy rain)
    and pixel by pixel (a histogram of the orientations where the local structure is line-like:
    sparse rain still piles up in one 5° bin, a scene spreads over many)."""
    jxx = jyy = jxy = 0.0
    energy = []
    histogram = np.zeros(_ORIENTATION_BINS)
    for tile in tiles:
        if min(tile.shape[:2]) < 3:  # no gradient to take
            continue
        y = luminance(tile)
        residual = np.clip(y - box_mean(y, 3), 0, None)
        gy, gx = np.gradient(residual)
        jxx += float((gx * gx).sum())
        jyy += float((gy * gy).sum())
        jxy += float((gx * gy).sum())
        energy.append(float(np.sqrt((residual**2).mean())) * 255)
        local_xx, local_yy, local_xy = box_mean(gx * gx, 3), box_mean(gy * gy, 3), box_mean(gx * gy, 3)
        local_trace = local_xx + local_yy + 1e-12
        line_like = np.hypot(local_xx - local_yy, 2 * local_xy) / local_trace > 0.6
        angles = 0.5 * np.degrees(np.arctan2(2 * local_xy, local_xx - local_yy))
        counts, _ = np.histogram(angles[line_like], _ORIENTATION_BINS, (-90, 90), weights=local_trace[line_like])
        histogram += counts
    trace = jxx + jyy
    if trace <= 0:
        return Streaks(0.0, 0.0, 0.0, 0.0, 0.0)
    coherence = float(np.hypot(jxx - jyy, 2 * jxy) / trace)
    # Dominant gradient direction; the lines run perpendicular to it, so 0° is a vertical line.
    gradient_angle = 0.5 * np.degrees(np.arctan2(2 * jxy, jxx - jyy))
    peak_bin = int(np.argmax(histogram))
    peak = float(histogram[peak_bin] / max(float(histogram.mean()), 1e-12))
    peak_angle = -90 + (peak_bin + 0.5) * 180 / _ORIENTATION_BINS
    return Streaks(coherence, float(gradient_angle), float(np.median(energy)), peak, peak_angle)


# ----------------------------------------------------------------------------- all of it


def colourfulness(rgb: Array) -> float:
    """Hasler and Süsstrunk (2003), on a 0-255 scale: about 15 is dull, 33 moderate, 59 quite colourful."""
    r, g, b = (rgb[..., c].astype(np.float64) * 255 for c in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def measure(rgb: Array) -> Measurements:
    """Measure a float RGB photo in [0, 1], (H, W, 3)."""
    rgb = np.asarray(rgb[..., :3], dtype=np.float32)
    height, width = rgb.shape[:2]
    overview = area_downscale(rgb, OVERVIEW_SIDE)
    detail = crops(rgb)
    y = luminance(overview)
    dark_channel = min_filter(overview.min(axis=-1), DARK_CHANNEL_WINDOW)
    high = overview.max(axis=-1)
    saturation = np.where(high > 1e-3, (high - overview.min(axis=-1)) / np.maximum(high, 1e-3), 0)
    bands = spectrum_bands(detail)
    lines = streaks(detail)
    p5, p50, p95, p99 = np.percentile(y, [5, 50, 95, 99])
    return Measurements(
        width=width,
        height=height,
        noise_sigma=noise_sigma(detail),
        softness_db=bands.softness_db,
        rebound_db=bands.rebound_db,
        blur_db=bands.blur_db,
        blur_anisotropy_db=bands.anisotropy_db,
        mean_luminance=float(y.mean()),
        median_luminance=float(p50),
        bright_luminance=float(p99),
        dark_fraction=float((y < 0.1).mean()),
        dark_channel_median=float(np.median(dark_channel)),
        dark_channel_low=float(np.percentile(dark_channel, 10)),
        contrast=float(p95 - p5),
        saturation=float(saturation.mean()),
        colourfulness=colourfulness(overview),
        streak_coherence=lines.coherence,
        streak_angle_deg=lines.angle_deg,
        streak_strength=lines.strength,
        streak_peak=lines.peak,
        streak_peak_angle_deg=lines.peak_angle_deg,
    )
