"""Import spandrel without torchvision.

spandrel (MIT) detects and builds third-party restoration networks from their state dicts. Two of
its architecture modules (LaMa inpainting, RestoreFormer face restoration) import three functions
from torchvision at import time, and torchvision's wheel pins its own, multi-gigabyte CUDA build of
torch. We install spandrel without dependencies, and, when torchvision is absent, put a small
stand-in module in its place before spandrel is imported: ``normalize`` is the real formula,
``InterpolationMode`` names the modes, and ``rotate`` (used only by LaMa's inference-time
augmentation, a task this application does not offer) refuses with a clear message.
"""

from __future__ import annotations

import enum
import importlib.util
import sys
import types
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def normalize(tensor: Tensor, mean: Sequence[float], std: Sequence[float], inplace: bool = False) -> Tensor:
    """(tensor - mean) / std per channel of a (..., C, H, W) tensor, as torchvision defines it."""
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    if inplace:
        return tensor.sub_(mean_t).div_(std_t)
    return (tensor - mean_t) / std_t


def rotate(*_args: Any, **_kwargs: Any) -> Tensor:
    raise NotImplementedError("rotating inside a network needs torchvision, which is not installed")


_STAND_IN_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def _install_stand_in() -> None:
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    functional.normalize = normalize  # type: ignore[attr-defined]
    functional.rotate = rotate  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional  # type: ignore[attr-defined]
    package = types.ModuleType("torchvision")
    package.transforms = transforms  # type: ignore[attr-defined]
    sys.modules.update(zip(_STAND_IN_NAMES, (package, transforms, functional), strict=True))


def import_spandrel() -> types.ModuleType:
    """The spandrel package, importable with or without torchvision installed."""
    if "spandrel" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        import spandrel

        return spandrel
    _install_stand_in()
    try:
        import spandrel
    finally:
        # spandrel's modules hold the functions they imported; the stand-in leaves sys.modules, so
        # other libraries that probe for torchvision (transformers does) still see it is absent.
        for name in _STAND_IN_NAMES:
            sys.modules.pop(name, None)
    return spandrel
