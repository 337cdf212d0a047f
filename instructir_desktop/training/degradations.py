"""Synthetic degradations for training and evaluation, on batches of torch tensors.

Every function takes clean images ``(N, 3, H, W)`` in [0, 1] on any device and a
``torch.Generator`` on the same device, so a batch is reproducible from a seed and is made
where training runs (on the GPU the data pipeline never waits on the CPU). A ``level`` in
[0, 1] picks a point inside each documented range (0 = mildest, 1 = strongest); ``None``
draws a level per sample, which is what training uses.

Ranges (chosen to look like real photos, not like textbook test patterns):

- noise: additive Gaussian, sigma 5-55 (of 255), a third of them chroma-correlated
  (a shared luminance component plus per-channel noise); or shot + read noise added in
  linear light, variance = a*x + b with a in 2e-4..1.2e-2 and b in 1e-6..4e-4.
- blur: camera shake (random trajectories of 3-31 px path length, straight to strongly
  curved, with jitter), defocus discs of radius 1-6 px, or an anisotropic Gaussian of
  sigma 0.6-2.6 px; a little sensor noise (sigma 0-1.5) after the blur.
- rain: one to three streak layers, 0.04-0.4 % of pixels seeding streaks, length 15-100 px,
  width 0.4-1.3 px, within 35 degrees of vertical, brightness 0.35-1.0, composited with a
  screen blend (streaks add light); heavier rain adds a bright veil of mist up to 0.35. Training
  draws are downpours half the time, and in a third of them the layers cross (gusts).
- haze: I = J t + A (1 - t), t = exp(-beta d) from a depth proxy mixing a tilted vertical
  ramp (sky far away), low-frequency noise and smoothed brightness; near transmission
  0.6-0.95, far 0.08-0.5; airlight 0.75-1.0 grey with a tint of a few percent.
- lowlight: exposure multiplied by 0.025-0.3 in linear light, shot + read noise at that
  exposure, a colour cast of up to 8 % per channel, 8-bit quantisation of the dark image.
- upscale: downscale x2 (60 % of draws) or x4, by area or antialiased bicubic, after a
  pre-blur of sigma 0.4-0.8 half the time; JPEG quality 60-95 a third of the time; bicubic
  back to the original size.
- enhance: the inverse of a good edit: contrast squeezed to 55-90 %, blacks lifted by up to
  0.1, saturation down to 30-85 %, white balance off by up to 8 % per channel, exposure
  -0.4..+0.3 EV.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from instructir_desktop.model.resampling import resize_bicubic
from instructir_desktop.model.tasks import TASKS

DegradeFn = Callable[[Tensor, torch.Generator, "float | None"], Tensor]

LUMA_WEIGHTS = (0.2126, 0.7152, 0.0722)


# ----------------------------------------------------------------------------- helpers


def _uniform(n: int, low: float, high: float, generator: torch.Generator, level: float | None) -> Tensor:
    """n values in [low, high]: a fixed point when level is given, else random per sample."""
    device = generator.device
    if level is not None:
        return torch.full((n,), low + (high - low) * float(level), device=device)
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _log_uniform(n: int, low: float, high: float, generator: torch.Generator, level: float | None) -> Tensor:
    return torch.exp(_uniform(n, math.log(low), math.log(high), generator, level))


def _rand(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


def _randn(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=generator, device=generator.device)


def _per_sample(values: Tensor) -> Tensor:
    """Shape (N,) → (N, 1, 1, 1) for broadcasting over images."""
    return values.view(-1, 1, 1, 1)


def srgb_to_linear(x: Tensor) -> Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def luminance(x: Tensor) -> Tensor:
    weights = torch.tensor(LUMA_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def quantize_8bit(x: Tensor) -> Tensor:
    """Round to 8-bit levels: every photo a person opens has been through this."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def _kernel_grid(size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    coords = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    grid_y, grid_x = torch.meshgrid(coords, coords, indexing="ij")
    return grid_y, grid_x


def convolve(images: Tensor, kernels: Tensor) -> Tensor:
    """Convolve each image with its own kernel: images (N,C,H,W), kernels (N,K,K), K odd.

    Borders are reflected. Small kernels use a grouped convolution; large ones an FFT, which
    is far cheaper for the long kernels of rain streaks and heavy shake.
    """
    n, channels, height, width = images.shape
    size = kernels.shape[-1]
    pad = size // 2
    mode = "reflect" if pad < min(height, width) else "replicate"
    padded = F.pad(images, (pad, pad, pad, pad), mode=mode)
    if size <= 15:
        weight = kernels.repeat_interleave(channels, dim=0).unsqueeze(1)
        out = F.conv2d(padded.reshape(1, n * channels, *padded.shape[-2:]), weight.flip(-1, -2), groups=n * channels)
        return out.view(n, channels, height, width)
    ph, pw = padded.shape[-2:]
    spectrum = torch.fft.rfft2(padded)
    kernel_spectrum = torch.fft.rfft2(kernels.unsqueeze(1), s=(ph, pw))
    full = torch.fft.irfft2(spectrum * kernel_spectrum, s=(ph, pw))
    # Circular convolution with the kernel anchored at (0,0): valid output starts at 2*pad.
    return full[..., 2 * pad : 2 * pad + height, 2 * pad : 2 * pad + width]


# ----------------------------------------------------------------------------- kernels


def shake_kernels(lengths: Tensor, curvature: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """Camera-shake kernels from random trajectories, normalised to sum 1: (N, size, size).

    A trajectory is a path whose heading turns at a random rate (curvature) with jitter and
    whose speed varies; the sensor integrates light along it.
    """
    n = lengths.shape[0]
    device = lengths.device
    steps = 96
    heading0 = _rand((n, 1), generator) * 2 * math.pi
    turn_rate = _randn((n, 1), generator) * curvature.view(-1, 1)
    jitter = _randn((n, steps), generator) * (0.05 + 0.4 * curvature.view(-1, 1))
    heading = heading0 + torch.cumsum(turn_rate / steps * 6 + jitter * 0.3, dim=1)
    speed = (1 + 0.6 * _randn((n, steps), generator)).clamp_min(0.1)
    path = torch.cumsum(torch.stack((torch.cos(heading), torch.sin(heading)), dim=-1) * speed.unsqueeze(-1), dim=1)
    segment = (path[:, 1:] - path[:, :-1]).norm(dim=-1).sum(dim=1).clamp_min(1e-6)
    path = path * (lengths / segment).view(-1, 1, 1)
    # Centred on the centre of mass, not the bounding box: the sensor dwells longer where the
    # camera moves slowly, and a kernel whose mass sits off-centre also shifts the photo (by
    # about 1 px at 17 px of shake, up to 5 px at 31), a shift no restoration can know. Training
    # on shifted targets taught the network to leave blur alone. Paths that reach past the
    # window from there are shortened to fit.
    path = path - path.mean(dim=1, keepdim=True)
    half = (size - 1) / 2
    reach = path.abs().amax(dim=(1, 2)).clamp_min(1e-6)
    path = path * ((half - 0.01) / reach).clamp(max=1.0).view(-1, 1, 1)
    points = (path + half).clamp(0, size - 1.001)
    x0 = points[..., 0].floor()
    y0 = points[..., 1].floor()
    fx = points[..., 0] - x0
    fy = points[..., 1] - y0
    kernel = torch.zeros(n, size * size, device=device)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        index = ((y0 + dy).clamp(max=size - 1) * size + (x0 + dx).clamp(max=size - 1)).long()
        kernel.scatter_add_(1, index, weight)
    kernel = kernel.view(n, size, size)
    return kernel / kernel.sum(dim=(1, 2), keepdim=True)


def disc_kernels(radii: Tensor, size: int) -> Tensor:
    """Anti-aliased defocus discs normalised to sum 1."""
    y, x = _kernel_grid(size, radii.device)
    distance = torch.sqrt(x**2 + y**2).unsqueeze(0)
    kernel = (radii.view(-1, 1, 1) + 0.5 - distance).clamp(0, 1)
    return kernel / kernel.sum(dim=(1, 2), keepdim=True)


def gaussian_kernels(sigma_major: Tensor, sigma_minor: Tensor, angle: Tensor, size: int) -> Tensor:
    """Anisotropic Gaussian kernels normalised to sum 1."""
    y, x = _kernel_grid(size, sigma_major.device)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    along = x * cos + y * sin
    across = -x * sin + y * cos
    kernel = torch.exp(-0.5 * ((along / sigma_major.view(-1, 1, 1)) ** 2 + (across / sigma_minor.view(-1, 1, 1)) ** 2))
    return kernel / kernel.sum(dim=(1, 2), keepdim=True)


def streak_kernels(lengths: Tensor, widths: Tensor, angles: Tensor, size: int) -> Tensor:
    """Rain streak shapes: a tapered line with a Gaussian cross-section, peak value 1."""
    y, x = _kernel_grid(size, lengths.device)
    # Angle measured from vertical: rain falls mostly downwards.
    dx, dy = torch.sin(angles).view(-1, 1, 1), torch.cos(angles).view(-1, 1, 1)
    along = x * dx + y * dy
    across = -x * dy + y * dx
    half = (lengths / 2).view(-1, 1, 1)
    taper = (1 - (along / half) ** 2).clamp_min(0).sqrt()
    kernel = torch.exp(-0.5 * (across / widths.view(-1, 1, 1)) ** 2) * taper
    return kernel / kernel.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)


# ----------------------------------------------------------------------------- degradations


def add_noise(clean: Tensor, generator: torch.Generator, level: float | None = None) -> Tensor:
    n = clean.shape[0]
    shape = tuple(clean.shape)
    if level is None:
        use_gaussian = _rand((n,), generator) < 0.6
    else:
        use_gaussian = torch.ones(n, dtype=torch.bool, device=clean.device)
    sigma = _per_sample(_uniform(n, 5 / 255, 55 / 255, generator, level))
    chroma_share = torch.where(
        _rand((n,), generator) < 1 / 3, 0.3 + 0.5 * _rand((n,), generator), torch.zeros(n, device=clean.device)
    )
    if level is not None:
        chroma_share = torch.zeros(n, device=clean.device)
    share = _per_sample(chroma_share)
    white = _randn(shape, generator)
    shared = _randn((n, 1, *shape[2:]), generator)
    gaussian_noise = (torch.sqrt(1 - share) * white + torch.sqrt(share) * shared) * sigma
    gaussian = clean + gaussian_noise

    linear = srgb_to_linear(clean)
    shot = _per_sample(_log_uniform(n, 2e-4, 1.2e-2, generator, level))
    read = _per_sample(_log_uniform(n, 1e-6, 4e-4, generator, level))
    realistic = linear_to_srgb(linear + torch.sqrt(shot * linear + read) * _randn(shape, generator))
    noisy = torch.where(_per_sample(use_gaussian), gaussian, realistic)
    return quantize_8bit(noisy)


def add_gaussian_noise(clean: Tensor, generator: torch.Generator, sigma_255: float) -> Tensor:
    """Plain additive white Gaussian noise at a fixed sigma, the benchmark protocol (CBSD68-style)."""
    return quantize_8bit(clean + _randn(tuple(clean.shape), generator) * (sigma_255 / 255))


BLUR_KERNEL_SIZE = 33


def blur(clean: Tensor, generator: torch.Generator, level: float | None = None) -> Tensor:
    return blur_with_kernels(clean, generator, level)[0]


def blur_with_kernels(clean: Tensor, generator: torch.Generator, level: float | None = None) -> tuple[Tensor, Tensor]:
    """The blurred photos and the (N, K, K) kernels that blurred them (evaluation's deconvolution
    floor is given the true kernel)."""
    n = clean.shape[0]
    size = BLUR_KERNEL_SIZE
    kind = _rand((n,), generator) if level is None else torch.zeros(n, device=clean.device)
    lengths = _uniform(n, 3, size - 2, generator, level)
    curvature = _uniform(n, 0.0, 1.0, generator, None if level is None else 0.5)
    kernels = shake_kernels(lengths, curvature, size, generator)
    radii = _uniform(n, 1.0, 6.0, generator, level)
    sigma_major = _uniform(n, 0.6, 2.6, generator, level)
    sigma_minor = sigma_major * _uniform(n, 0.4, 1.0, generator, None)
    angle = _uniform(n, 0, math.pi, generator, None)
    kernels = torch.where((kind >= 0.6).view(-1, 1, 1), disc_kernels(radii, size), kernels)
    kernels = torch.where(
        (kind >= 0.85).view(-1, 1, 1), gaussian_kernels(sigma_major, sigma_minor, angle, size), kernels
    )
    blurred = convolve(clean, kernels)
    sensor_sigma = _per_sample(_uniform(n, 0, 1.5 / 255, generator, None if level is None else 0.0))
    return quantize_8bit(blurred + sensor_sigma * _randn(tuple(clean.shape), generator)), kernels


def rain(clean: Tensor, generator: torch.Generator, level: float | None = None) -> Tensor:
    n, _, height, width = clean.shape
    size = 101
    heaviness = _uniform(n, 0.0, 1.0, generator, level)
    base_angle = _uniform(n, -math.radians(35), math.radians(35), generator, None if level is None else 0.55)
    if level is None:
        # Half the training draws are downpours (heaviness 0.7-1): uniform heaviness alone put the
        # median added light near 0.09 of full scale, where dense rain adds 0.15-0.35 (Rain100H's
        # pairs: 0.13-0.40, median 0.20); now the median is 0.12 and one draw in ten passes 0.25.
        downpour = _rand((n,), generator) < 0.5
        heaviness = torch.where(downpour, 0.7 + 0.3 * heaviness, heaviness)
        # Layer directions differ by a few degrees; in gusts (a third of training draws) each
        # layer takes its own direction, so streaks cross.
        gusty = _rand((n,), generator) < 1 / 3
        layer_count = torch.randint(1, 4, (n,), generator=generator, device=clean.device).float()
        # How streak light meets the scene differs between photos and rain sets. Screen blending
        # lifts dark pixels more than bright ones and a mist scales the whole frame: both lower the
        # contrast, so a network trained on them alone stretches contrast whenever it sees heavy
        # rain. Rain100H's pairs have none of that: on the half of each photo the streaks touch
        # least, rainy = a * clean + b with a = 1.00 (median of 100 pairs), b = 0.08, and the rainy
        # photo's spread is 1.09 times the clean one's. So half the draws add the light (clipped),
        # and only a third carry a mist.
        additive = _per_sample((_rand((n,), generator) < 0.5).float())
        misty = _per_sample((_rand((n,), generator) < 1 / 3).float())
    else:
        # A fixed level is an evaluation row: never a gust, so its numbers compare across models.
        gusty = torch.zeros(n, dtype=torch.bool, device=clean.device)
        layer_count = 1 + (heaviness * 2.999).floor()
        additive = torch.zeros(n, 1, 1, 1, device=clean.device)
        misty = torch.ones(n, 1, 1, 1, device=clean.device)
    rain_light = torch.zeros(n, 1, height, width, device=clean.device)
    for layer in range(3):
        active = _per_sample((layer_count > layer).float())
        # Coverage is roughly density x length x width: 0.04 % .. 0.4 % of pixels seed a streak.
        density = _per_sample(0.0004 + 0.0036 * heaviness * _uniform(n, 0.3, 1.0, generator, None))
        seeds = (_rand((n, 1, height, width), generator) < density).float()
        seeds = seeds * (0.5 + 0.5 * _rand((n, 1, height, width), generator))
        lengths = 15 + 85 * heaviness * _uniform(n, 0.3, 1.0, generator, None)
        widths = _uniform(n, 0.4, 1.3, generator, None)
        offset = _uniform(n, -math.radians(8), math.radians(8), generator, None)
        angles = base_angle + torch.where(gusty, offset * (30 / 8), offset)
        streaks = convolve(seeds, streak_kernels(lengths, widths, angles, size))
        brightness = _per_sample(_uniform(n, 0.35, 1.0, generator, None if level is None else 0.7))
        rain_light = rain_light + active * brightness * streaks.clamp(0, 1)
    rain_light = rain_light.clamp(0, 1)
    screened = 1 - (1 - clean) * (1 - rain_light)
    rainy = torch.lerp(screened, (clean + rain_light).clamp(max=1), additive)
    # Heavy rain can also scatter light into a bright mist over the whole frame.
    veil = misty * _per_sample(0.35 * heaviness * _uniform(n, 0.2, 1.0, generator, None if level is None else 0.6))
    veil_colour = _per_sample(_uniform(n, 0.7, 0.95, generator, None if level is None else 0.5))
    return quantize_8bit(rainy * (1 - veil) + veil_colour * veil)


def _low_frequency_noise(n: int, height: int, width: int, generator: torch.Generator, cells: int = 6) -> Tensor:
    coarse = _rand((n, 1, cells, cells), generator)
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)


def depth_proxy(clean: Tensor, generator: torch.Generator, frame: Tensor | None = None) -> Tensor:
    """A plausible relative depth in [0, 1] (1 = far): higher in the frame and brighter is farther.

    ``frame`` (N,): how many times larger than the image the photo it was cut from is, per side
    (None or 1: the image is the whole photo). A training patch is a small window of a photo, so
    its depth spans only the part of the photo's near-to-far range that the window covers; a patch
    that always spanned the whole range would teach haze that thickens from clear to dense within
    a hundred pixels, which no photo has.
    """
    n, _, height, width = clean.shape
    device = clean.device
    weights = _rand((n, 3), generator) * torch.tensor([0.6, 0.3, 0.3], device=device) + torch.tensor(
        [0.4, 0.05, 0.05], device=device
    )
    smooth_brightness = F.avg_pool2d(luminance(clean), 9, stride=1, padding=4, count_include_pad=False)
    if frame is None:
        rows = torch.linspace(1, 0, height, device=device).view(1, 1, height, 1)
        cols = torch.linspace(-0.5, 0.5, width, device=device).view(1, 1, 1, width)
        tilt = _per_sample(_uniform(n, -0.3, 0.3, generator, None))
        ramp = rows + tilt * cols
        large_scale = _low_frequency_noise(n, height, width, generator)
        depth = (
            weights[:, 0].view(-1, 1, 1, 1) * ramp
            + weights[:, 1].view(-1, 1, 1, 1) * large_scale
            + weights[:, 2].view(-1, 1, 1, 1) * smooth_brightness
        )
        low = depth.amin(dim=(2, 3), keepdim=True)
        high = depth.amax(dim=(2, 3), keepdim=True)
        return (depth - low) / (high - low).clamp_min(1e-6)
    # The window's place in the photo, in the photo's [0, 1] coordinates.
    extent = 1 / frame.clamp_min(1.0)
    top = _rand((n,), generator) * (1 - extent)
    left = _rand((n,), generator) * (1 - extent)
    across_y = torch.linspace(0, 1, height, device=device).view(1, height, 1)
    across_x = torch.linspace(0, 1, width, device=device).view(1, 1, width)
    photo_y = top.view(-1, 1, 1) + extent.view(-1, 1, 1) * across_y  # (N, H, 1), 0 = top of the photo
    photo_x = left.view(-1, 1, 1) + extent.view(-1, 1, 1) * across_x  # (N, 1, W)
    tilt = _uniform(n, -0.3, 0.3, generator, None).view(-1, 1, 1)
    ramp = (1 - photo_y) + tilt * (photo_x - 0.5)  # in [-0.15, 1.15] over the photo
    # The photo's coarse depth variation, sampled where the window lies (grid_sample's [-1, 1]).
    coarse = _rand((n, 1, 6, 6), generator)
    grid = torch.stack([(photo_x * 2 - 1).expand(n, height, width), (photo_y * 2 - 1).expand(n, height, width)], -1)
    large_scale = F.grid_sample(coarse, grid, mode="bicubic", padding_mode="border", align_corners=False)
    depth = (
        weights[:, 0].view(-1, 1, 1, 1) * (ramp.unsqueeze(1) + 0.15) / 1.3
        + weights[:, 1].view(-1, 1, 1, 1) * large_scale.clamp(0, 1)
        + weights[:, 2].view(-1, 1, 1, 1) * smooth_brightness
    )
    return (depth / weights.sum(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)


# How much larger than a training patch the photo it stands for is, per side (log-uniform draw).
HAZE_FRAME_RANGE = (1.0, 6.0)


def haze(clean: Tensor, generator: torch.Generator, level: float | None = None) -> Tensor:
    n = clean.shape[0]
    # A fixed level is an evaluation on whole photos; random levels are training patches, each a
    # window of a larger photo.
    frame = None if level is not None else _log_uniform(n, *HAZE_FRAME_RANGE, generator, None)
    depth = depth_proxy(clean, generator, frame)
    t_near = _per_sample(_uniform(n, 0.95, 0.6, generator, level))
    t_far = _per_sample(_uniform(n, 0.5, 0.08, generator, level))
    transmission = t_near ** (1 - depth) * t_far**depth
    grey = _per_sample(_uniform(n, 0.75, 1.0, generator, None if level is None else 0.6))
    tint = 1 + 0.03 * _randn((n, 3, 1, 1), generator)
    airlight = (grey * tint).clamp(0, 1)
    return quantize_8bit(clean * transmission + airlight * (1 - transmission))


def low_light(clean: Tensor, generator: torch.Generator, level: float | None = None) -> Tensor:
    n = clean.shape[0]
    # Level 1 is the darkest; draw exposure on a log scale, like stops.
    exposure = _per_sample(_log_uniform(n, 0.3, 0.025, generator, level))
    cast = 1 + (_rand((n, 3, 1, 1), generator) * 2 - 1) * 0.08
    if level is not None:
        cast = torch.ones_like(cast)
    dark = srgb_to_linear(clean) * exposure * cast
    shot = _per_sample(_log_uniform(n, 5e-5, 2e-3, generator, level)) * exposure.sqrt()
    read = _per_sample(_log_uniform(n, 1e-7, 2e-5, generator, level))
    noisy = dark + torch.sqrt(shot * dark.clamp_min(0) + read) * _randn(tuple(clean.shape), generator)
    return quantize_8bit(linear_to_srgb(noisy))


# JPEG luminance/chrominance quantisation tables of the standard (ITU T.81 Annex K).
_JPEG_LUMA_TABLE = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]  # fmt: skip
_JPEG_CHROMA_TABLE = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
] + [99] * 32  # fmt: skip


def _dct_matrix(device: torch.device) -> Tensor:
    k = torch.arange(8, device=device, dtype=torch.float32)
    matrix = torch.cos((2 * k.view(1, 8) + 1) * k.view(8, 1) * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2)
    return matrix


def _quality_scale(quality: Tensor) -> Tensor:
    quality = quality.clamp(1, 100)
    return torch.where(quality < 50, 5000 / quality, 200 - 2 * quality) / 100


def _jpeg_plane(plane: Tensor, table: Tensor, scale: Tensor) -> Tensor:
    """Quantise one (N,1,H,W) plane in 8x8 DCT blocks; H and W multiples of 8."""
    n, _, height, width = plane.shape
    dct = _dct_matrix(plane.device)
    blocks = plane.view(n, height // 8, 8, width // 8, 8).permute(0, 1, 3, 2, 4)
    coefficients = dct @ (blocks * 255 - 128) @ dct.T
    step = (table.view(1, 1, 1, 8, 8) * scale.view(-1, 1, 1, 1, 1)).floor().clamp(1, 255)
    restored = dct.T @ (torch.round(coefficients / step) * step) @ dct
    return ((restored + 128) / 255).permute(0, 1, 3, 2, 4).reshape(n, 1, height, width)


def jpeg_compress(images: Tensor, quality: Tensor) -> Tensor:
    """Simulate baseline JPEG (YCbCr, 4:2:0, standard tables) so it runs on any device."""
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % 16, (-width) % 16
    x = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else images
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - y) * 0.564 + 0.5
    cr = (r - y) * 0.713 + 0.5
    scale = _quality_scale(quality)
    luma_table = torch.tensor(_JPEG_LUMA_TABLE, device=x.device, dtype=torch.float32)
    chroma_table = torch.tensor(_JPEG_CHROMA_TABLE, device=x.device, dtype=torch.float32)
    y = _jpeg_plane(y, luma_table, scale)
    chroma = [
        F.interpolate(
            _jpeg_plane(F.avg_pool2d(c, 2), chroma_table, scale), scale_factor=2, mode="bilinear", align_corners=False
        )
        for c in (cb, cr)
    ]
    cb, cr = chroma[0] - 0.5, chroma[1] - 0.5
    out = torch.cat((y + 1.403 * cr, y - 0.344 * cb - 0.714 * cr, y + 1.773 * cb), dim=1)
    return out[..., :height, :width].clamp(0, 1)


# The upscale mix. A blind mix that is mostly x4, softened or compressed teaches the network to
# sharpen every input hard and over-sharpens a clean x2 resample (stages 1-3: -0.05 dB at x2);
# these leave about a third of the draws a clean resample, most of them x2.
UPSCALE_X4_FRACTION = 0.4
UPSCALE_PRE_BLUR_FROM = 0.4  # pre-blur sigma drawn in 0-0.8, applied above this: half the draws
UPSCALE_JPEG_FRACTION = 0.35


def downscale_upscale(
    clean: Tensor, generator: torch.Generator, level: float | None = None, factor: int | None = None
) -> Tensor:
    """Low-resolution look at the original size: the input the upscale step restores."""
    n, _, height, width = clean.shape
    if factor is None:
        factor = 4 if (level is not None and level >= 0.5) else 2
        if level is None and float(_rand((1,), generator)) < UPSCALE_X4_FRACTION:
            factor = 4
    pre_sigma = _uniform(n, 0.0, 0.8, generator, None if level is None else 0.0)
    # Samples under the threshold keep the clean image; clamping only keeps their unused kernels sane.
    kernel_sigma = pre_sigma.clamp_min(UPSCALE_PRE_BLUR_FROM)
    blurred = torch.where(
        _per_sample(pre_sigma > UPSCALE_PRE_BLUR_FROM),
        convolve(clean, gaussian_kernels(kernel_sigma, kernel_sigma, pre_sigma * 0, 7)),
        clean,
    )
    small_size = (max(1, height // factor), max(1, width // factor))
    use_area = level is None and float(_rand((1,), generator)) < 0.5
    small = F.interpolate(blurred, size=small_size, mode="area") if use_area else resize_bicubic(blurred, small_size)
    small = quantize_8bit(small)
    if level is None:
        quality = _uniform(n, 60, 95, generator, None)
        compressed = jpeg_compress(small, quality)
        small = torch.where(_per_sample(_rand((n,), generator) < UPSCALE_JPEG_FRACTION), compressed, small)
    return quantize_8bit(resize_bicubic(small, (height, width)))


def flatten_colours(clean: Tensor, generator: torch.Generator, level: float | None = None) -> Tensor:
    """Undo a good edit: squeeze contrast, lift blacks, mute colours, shift white balance and exposure."""
    n = clean.shape[0]
    contrast = _per_sample(_uniform(n, 0.9, 0.55, generator, level))
    lift = _per_sample(_uniform(n, 0.0, 0.1, generator, level))
    saturation = _per_sample(_uniform(n, 0.85, 0.3, generator, level))
    balance = 1 + (_rand((n, 3, 1, 1), generator) * 2 - 1) * 0.08
    if level is not None:
        balance = torch.tensor([1.0 + 0.06 * level, 1.0, 1.0 - 0.06 * level], device=clean.device).view(1, 3, 1, 1)
    exposure_ev = _per_sample(_uniform(n, -0.4, 0.3, generator, None if level is None else 0.3))
    linear = srgb_to_linear(clean) * balance * torch.pow(2.0, exposure_ev)
    x = linear_to_srgb(linear)
    mean = luminance(x).mean(dim=(2, 3), keepdim=True)
    x = mean + (x - mean) * contrast
    grey = luminance(x)
    x = grey + (x - grey) * saturation
    x = x * (1 - lift) + lift
    return quantize_8bit(x)


DEGRADATIONS: dict[str, DegradeFn] = {
    "denoise": add_noise,
    "deblur": blur,
    "derain": rain,
    "dehaze": haze,
    "lowlight": low_light,
    "enhance": flatten_colours,
    "upscale": downscale_upscale,
}
assert tuple(DEGRADATIONS) == TASKS


def degrade(clean: Tensor, task: str, generator: torch.Generator, level: float | None = None) -> Tensor:
    """Apply the degradation that ``task`` undoes."""
    try:
        function = DEGRADATIONS[task]
    except KeyError:
        raise ValueError(f"no degradation for task {task!r}") from None
    return function(clean, generator, level)


def degrade_mixed(clean: Tensor, task_indices: Tensor, generator: torch.Generator) -> Tensor:
    """Degrade each sample with its own task (index into TASKS), random levels: a training batch."""
    out = clean.clone()
    for index, task in enumerate(TASKS):
        members = (task_indices == index).nonzero(as_tuple=True)[0]
        if members.numel():
            out[members] = degrade(clean[members], task, generator)
    return out
