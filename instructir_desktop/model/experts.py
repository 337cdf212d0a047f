"""Third-party restoration networks ("experts"): one file in, a network that maps pixels to pixels out.

spandrel detects the architecture from the state dict's names and shapes and builds it (scale,
channels, size requirements, half-precision support); FFDNet, which spandrel lacks, has its own
small loader (``model.ffdnet``). Files are read only through ``weights.load_state_dict``:
safetensors, or a pickle with ``weights_only=True``, so a file that would run code is refused
before any network is built.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from instructir_desktop.model import ffdnet
from instructir_desktop.model.network import detect_config
from instructir_desktop.model.tasks import TASKS
from instructir_desktop.model.weights import WeightsError, load_state_dict

# What an architecture restores when its file says nothing else. Architectures trained for several
# tasks (NAFNet, Restormer-like, SwinIR at scale 1) are not here: the person names the task.
ARCHITECTURE_TASKS: dict[str, tuple[str, ...]] = {
    "DnCNN": ("denoise",),
    "DRUNet": ("denoise",),
    "SCUNet": ("denoise",),
    "FFDNet": ("denoise",),
    "FBCNN": ("denoise",),
    "KBNet": ("denoise",),
    "FFTformer": ("deblur",),
    "RetinexFormer": ("lowlight",),
    "HVICIDNet": ("lowlight",),
    "MixDehazeNet": ("dehaze",),
}

# A tile's noise level: FFDNet's map (0..1 units) or None for networks that take only pixels.
NoiseLevel = float | None


@dataclass
class ExpertNetwork:
    """A loaded third-party network and what the tiler must know about it."""

    architecture: str
    module: nn.Module
    scale: int
    input_channels: int
    size_multiple: int  # input sides must be multiples of this (1: any)
    minimum_size: int  # and at least this long
    supports_half: bool
    tasks: tuple[str, ...]  # what it restores by its architecture alone (empty: the person says)
    takes_noise_level: bool
    _call: Callable[[Tensor, NoiseLevel], Tensor]
    # Its output near a tile differs from the whole photo's (global attention or statistics).
    tiling_discouraged: bool = False

    def __call__(self, image: Tensor, noise_level: NoiseLevel = None) -> Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H*scale, W*scale) in [0, 1]; sides must meet the size
        requirements already (the tiler pads)."""
        with torch.inference_mode():
            if self.input_channels == 1:  # a grey-level network restores each channel on its own
                batch, channels = image.shape[:2]
                planes = image.reshape(batch * channels, 1, *image.shape[-2:])
                output = self._call(planes, noise_level)
                return output.reshape(batch, channels, *output.shape[-2:]).clamp(0, 1)
            return self._call(image, noise_level).clamp(0, 1)

    @property
    def device(self) -> torch.device:
        parameter = next(self.module.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        parameter = next(self.module.parameters(), None)
        return parameter.dtype if parameter is not None else torch.float32

    def to(self, device: torch.device, dtype: torch.dtype = torch.float32) -> ExpertNetwork:
        if dtype in (torch.float16, torch.bfloat16) and not self.supports_half:
            dtype = torch.float32
        self.module.to(device=device, dtype=dtype)
        return self


def load_expert_file(path: str | os.PathLike[str]) -> ExpertNetwork:
    """The network in a weights file; WeightsError (one line) for a file that is damaged, unsafe,
    or holds an architecture we do not know."""
    state, _ = load_state_dict(path)
    return expert_from_state_dict(state, Path(path).name)


def expert_from_state_dict(state: Mapping[str, Tensor], label: str) -> ExpertNetwork:
    network = ffdnet.detect(state)
    if network is not None:
        return _ffdnet_expert(network)
    if _is_instructir(state):
        raise WeightsError(
            f"{label}: this is an InstructIR model, not a single-task network; open its folder with --model FOLDER"
        )
    from instructir_desktop.model.spandrel_import import import_spandrel

    spandrel = import_spandrel()
    try:
        with warnings.catch_warnings():  # notes from inside third-party constructors are not the person's concern
            warnings.simplefilter("ignore")
            descriptor: Any = spandrel.ModelLoader().load_from_state_dict(dict(state))
    except spandrel.UnsupportedModelError:
        raise WeightsError(
            f"{label}: not a network architecture this application knows; it loads those spandrel "
            f"{spandrel.__version__} supports (SwinIR, SCUNet, NAFNet, SPAN, Real-ESRGAN, ...) and FFDNet"
        ) from None
    except Exception as error:  # an architecture matched by name but the shapes do not add up
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise WeightsError(
            f"{label}: the weights do not fit their architecture ({first}); the file is damaged"
        ) from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise WeightsError(
            f"{label}: a {descriptor.architecture.name} model ({descriptor.purpose}) needs more than a photo "
            "to run; only photo-to-photo restoration networks can be added"
        )
    if descriptor.purpose == "FaceSR":
        raise WeightsError(
            f"{label}: {descriptor.architecture.name} restores faces only; it cannot restore whole photos"
        )
    if descriptor.input_channels not in (1, 3) or descriptor.output_channels != descriptor.input_channels:
        raise WeightsError(
            f"{label}: the network takes {descriptor.input_channels} channels and gives "
            f"{descriptor.output_channels}; only grey or RGB photo networks can be used"
        )
    architecture = str(descriptor.architecture.id)
    requirements = descriptor.size_requirements
    descriptor.model.eval()
    tasks = ("upscale",) if descriptor.scale > 1 else ARCHITECTURE_TASKS.get(architecture, ())
    return ExpertNetwork(
        architecture=architecture,
        module=descriptor.model,
        scale=int(descriptor.scale),
        input_channels=int(descriptor.input_channels),
        size_multiple=max(1, int(requirements.multiple_of)),
        minimum_size=int(requirements.minimum),
        supports_half=bool(descriptor.supports_half),
        tasks=tasks,
        takes_noise_level=False,
        _call=lambda image, _level: descriptor(image),
        tiling_discouraged=descriptor.tiling != spandrel.ModelTiling.SUPPORTED,
    )


def _ffdnet_expert(network: ffdnet.FFDNet) -> ExpertNetwork:
    def call(image: Tensor, level: NoiseLevel) -> Tensor:
        sigma = torch.full((image.shape[0],), 25 / 255 if level is None else level, device=image.device)
        return network(image, sigma)

    return ExpertNetwork(
        architecture=ffdnet.ARCHITECTURE,
        module=network,
        scale=1,
        input_channels=network.channels,
        size_multiple=2,
        minimum_size=0,
        supports_half=True,
        tasks=("denoise",),
        takes_noise_level=True,
        _call=call,
    )


def _is_instructir(state: Mapping[str, Tensor]) -> bool:
    try:
        detect_config(state)
    except (ValueError, KeyError, IndexError):
        return False
    return True


def check_tasks(tasks: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}; known tasks: {', '.join(TASKS)}")
    return tuple(dict.fromkeys(tasks))
