"""The bicubic resampling the upscale task is built on, in one place.

Training makes its low-resolution inputs with it and the runtime enlarges a photo with it before
the network restores the enlargement: the network only learnt to undo this exact resampler, so
both sides must share it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def resize_bicubic(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize of (N, C, H, W) images to ``size`` (height, width), antialiased when
    shrinking, clamped to [0, 1]."""
    antialias = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=antialias).clamp(0, 1)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``resize_bicubic`` for one (H, W, C) float image; the image itself when the size is unchanged."""
    if image.shape[:2] == (height, width):
        return image
    tensor = torch.from_numpy(np.require(image, np.float32, ["C", "W"])).permute(2, 0, 1)[None]
    resized = resize_bicubic(tensor, (height, width))
    return np.ascontiguousarray(resized[0].permute(1, 2, 0).numpy())


def resize_plane(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """``resize_image`` for one (H, W) plane (an alpha channel, a mask)."""
    return resize_image(plane[..., None], height, width)[..., 0]
