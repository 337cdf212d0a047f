"""FFDNet (Zhang, Zuo and Zhang, IEEE TIP 2018): a fast denoiser steered by a noise-level map.

spandrel has no FFDNet, so this is a small network of our own that loads the published state dicts
(KAIR's layout: ``model.0`` .. ``model.2k`` convolutions with ReLUs between them). The photo is
pixel-unshuffled by 2, a constant plane holding the noise level (sigma / 255) is appended, a plain
stack of 3x3 convolutions runs at half resolution, and pixel-shuffle brings back the full size.
The output is the clean image itself, not a residual.

The noise level comes from the person's words ("strong noise", "sigma 25") or, without them, from
the photo: a robust estimate on the finest diagonal wavelet band, the median absolute deviation
over 0.6745 (Donoho and Johnstone, 1994).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCHITECTURE = "FFDNet"
_KEY = re.compile(r"^model\.(\d+)\.(weight|bias)$")
# Sigmas FFDNet was trained for (in 0..255 units); estimates are kept inside.
MIN_SIGMA, MAX_SIGMA = 0.0, 75.0


class FFDNet(nn.Module):
    def __init__(self, channels: int = 3, features: int = 96, layers: int = 12) -> None:
        super().__init__()
        self.channels = channels
        modules: list[nn.Module] = []
        inputs = channels * 4 + 1
        for index in range(layers):
            last = index == layers - 1
            modules.append(nn.Conv2d(inputs, channels * 4 if last else features, 3, padding=1))
            if not last:
                modules.append(nn.ReLU(inplace=True))
            inputs = features
        self.model = nn.Sequential(*modules)

    def forward(self, image: Tensor, sigma: Tensor) -> Tensor:
        """``image`` (N, C, H, W) in [0, 1], ``sigma`` (N,) noise level in [0, 1] units."""
        height, width = image.shape[-2:]
        padded = F.pad(image, (0, width % 2, 0, height % 2), mode="replicate")
        small = F.pixel_unshuffle(padded, 2)
        level = sigma.to(small.dtype).view(-1, 1, 1, 1).expand(small.shape[0], 1, *small.shape[-2:])
        restored = F.pixel_shuffle(self.model(torch.cat((small, level), 1)), 2)
        return restored[..., :height, :width]


def detect(state_dict: Mapping[str, Tensor]) -> FFDNet | None:
    """The FFDNet these weights describe, loaded strictly, or None when they are not FFDNet's."""
    indices: dict[int, set[str]] = {}
    for name in state_dict:
        match = _KEY.match(name)
        if match is None:
            return None
        indices.setdefault(int(match.group(1)), set()).add(match.group(2))
    ordered = sorted(indices)
    if len(ordered) < 3 or ordered != list(range(0, 2 * len(ordered), 2)):
        return None
    if any(parts != {"weight", "bias"} for parts in indices.values()):
        return None
    first, last = state_dict["model.0.weight"], state_dict[f"model.{ordered[-1]}.weight"]
    if first.ndim != 4 or tuple(first.shape[-2:]) != (3, 3) or (first.shape[1] - 1) % 4:
        return None
    channels = (first.shape[1] - 1) // 4
    if channels not in (1, 3) or last.shape[0] != channels * 4:
        return None
    network = FFDNet(channels, first.shape[0], len(ordered))
    try:
        network.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError:
        return None
    return network.eval()


def estimate_sigma(image: Tensor) -> float:
    """Gaussian noise level of (1, C, H, W) pixels in [0, 1], in 0..255 units: MAD of the finest
    diagonal Haar band / 0.6745, the median over channels (robust to edges and texture)."""
    height, width = image.shape[-2:]
    even = image[..., : height // 2 * 2, : width // 2 * 2].float()
    a, b = even[..., 0::2, 0::2], even[..., 0::2, 1::2]
    c, d = even[..., 1::2, 0::2], even[..., 1::2, 1::2]
    diagonal = (a - b - c + d) / 2
    if diagonal.numel() == 0:
        return 0.0
    per_channel = diagonal.abs().flatten(2).median(dim=-1).values / 0.6745
    sigma = float(per_channel.median()) * 255.0
    return min(MAX_SIGMA, max(MIN_SIGMA, sigma))


_WORDS = (
    (re.compile(r"\b(slight|light|a little|a bit of|mild|subtle|faint)\b"), 10.0),
    (re.compile(r"\b(heavy|strong|lots of|very noisy|extreme|a lot of|severe)\b"), 50.0),
)
_SIGMA_NUMBER = re.compile(r"\bsigma\s*=?\s*(\d+(?:\.\d+)?)")


def sigma_from_words(instruction: str) -> float | None:
    """A noise level the person stated ("sigma 25") or described ("slight noise", "heavy grain")."""
    text = instruction.lower()
    number = _SIGMA_NUMBER.search(text)
    if number is not None:
        value = float(number.group(1))
        if math.isfinite(value):
            return min(MAX_SIGMA, max(MIN_SIGMA, value))
    for pattern, sigma in _WORDS:
        if pattern.search(text):
            return sigma
    return None
