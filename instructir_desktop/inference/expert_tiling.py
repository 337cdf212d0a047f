"""Tiled restoration with any third-party network ("expert"): bounded memory, no seams.

The photo is padded (reflected) to the network's size requirements, cut into overlapping tiles
whose sides and starts are multiples of the network's size multiple, and each tile's output is
blended into the result with the complementary ramps of ``tiling.plan_tiles``, planned at the
output's resolution so a x2 or x4 network gets output tiles scaled with it. The tile side follows
the memory the device has free, and shrinks on an out-of-memory error; cancel is checked between
tiles. Unlike our own network, these have no global statistics to share between tiles: convolution
and windowed attention are local, and the overlap covers their reach near a tile's edge.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instructir_desktop.inference.devices import is_out_of_memory
from instructir_desktop.inference.executor import CancelCheck
from instructir_desktop.inference.tiling import TileProgress, plan_tiles
from instructir_desktop.model.experts import ExpertNetwork, NoiseLevel

MIN_EXPERT_TILE = 64
MAX_EXPERT_TILE = 1024
# Networks with global attention or statistics (spandrel marks them: SwinIR, SCUNet, RetinexFormer,
# ...) differ between a tile and the whole photo: they get as large a tile as memory allows.
MAX_WHOLE_TILE = 4096
DEFAULT_OVERLAP = 32
# Live activations per input pixel, in units of (widest layer's channels x bytes per value x
# scale^2): a few feature maps of the widest layer at once, the output's upsampled maps beside.
_LIVE_MAPS = 6


@dataclass(frozen=True)
class ExpertTiling:
    tile: int = 512  # input pixels per side
    overlap: int = DEFAULT_OVERLAP


def _widest_layer(module: nn.Module) -> int:
    widths = [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]
    widths += [m.out_features for m in module.modules() if isinstance(m, nn.Linear)]
    return max(widths, default=64)


def free_memory(device: torch.device) -> float:
    """Bytes the device can give a restoration now."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    import psutil

    return float(psutil.virtual_memory().available)


def tile_for_memory(expert: ExpertNetwork, memory_bytes: float, bytes_per_value: int = 4) -> int:
    """The largest tile side (a multiple of the network's size multiple) whose activations fit in a
    quarter of ``memory_bytes``, between MIN_EXPERT_TILE and MAX_EXPERT_TILE."""
    per_pixel = _widest_layer(expert.module) * bytes_per_value * _LIVE_MAPS * expert.scale**2
    side = int(math.sqrt(max(1.0, memory_bytes / 4) / per_pixel))
    largest = MAX_WHOLE_TILE if expert.tiling_discouraged else MAX_EXPERT_TILE
    side = min(largest, max(MIN_EXPERT_TILE, side, expert.minimum_size))
    return _round_to(side, expert.size_multiple)


def _round_to(side: int, multiple: int) -> int:
    return max(multiple, side // multiple * multiple)


def _pad(image: Tensor, height: int, width: int) -> Tensor:
    pad_h, pad_w = height - image.shape[-2], width - image.shape[-1]
    if not (pad_h or pad_w):
        return image
    mode = "reflect" if pad_h < image.shape[-2] and pad_w < image.shape[-1] else "replicate"
    return F.pad(image, (0, pad_w, 0, pad_h), mode=mode)


class ExpertTiler:
    def __init__(self, expert: ExpertNetwork, settings: ExpertTiling | None = None) -> None:
        self.expert = expert
        self.settings = settings or ExpertTiling()
        # What the person should hear (a smaller tile after running out of memory).
        self.notices: list[str] = []

    def restore(
        self,
        image: Tensor,
        noise_level: NoiseLevel = None,
        *,
        progress: Callable[[TileProgress], None] | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> Tensor:
        """(1, 3, H, W) float32 on the CPU -> (1, 3, H*scale, W*scale) float32 on the CPU."""
        while True:
            try:
                return self._restore(image, noise_level, progress, check_cancel)
            except Exception as error:
                if not is_out_of_memory(error) or self.settings.tile // 2 < MIN_EXPERT_TILE:
                    raise
                if self.expert.device.type == "cuda":
                    torch.cuda.empty_cache()
                smaller = _round_to(self.settings.tile // 2, self.expert.size_multiple)
                self.settings = ExpertTiling(smaller, self.settings.overlap)
                self.notices.append(f"Out of memory: continuing with {smaller}-pixel tiles.")

    def _run(self, tile: Tensor, noise_level: NoiseLevel) -> Tensor:
        expert = self.expert
        return expert(tile.to(expert.device, expert.dtype), noise_level).float().cpu()

    def _restore(
        self,
        image: Tensor,
        noise_level: NoiseLevel,
        progress: Callable[[TileProgress], None] | None,
        check_cancel: CancelCheck | None,
    ) -> Tensor:
        expert, scale = self.expert, self.expert.scale
        multiple = expert.size_multiple
        height, width = image.shape[-2:]
        tile = max(_round_to(self.settings.tile, multiple), expert.minimum_size, 2 * multiple)
        # At most two tiles meet anywhere (the blend ramps pair neighbours): the overlap stays
        # within a quarter of the tile, rounded to the size multiple.
        overlap = min(-(-self.settings.overlap // multiple) * multiple, tile // 4 // multiple * multiple)
        full_h = max(-(-height // multiple) * multiple, expert.minimum_size)
        full_w = max(-(-width // multiple) * multiple, expert.minimum_size)
        padded = _pad(image, full_h, full_w)
        started = time.monotonic()
        if full_h <= tile and full_w <= tile:
            if check_cancel is not None:
                check_cancel()
            whole = self._run(padded, noise_level)
            if progress is not None:
                progress(TileProgress(1, 1, 1.0, 0.0))
            return whole[..., : height * scale, : width * scale]
        # Planned at the output's resolution: every length is the input's times ``scale``, so the
        # input tiles are these divided by it, on the same grid of multiples.
        tiles = plan_tiles(
            full_h * scale, full_w * scale, tile * scale, overlap * scale, (overlap // 2) * scale, multiple * scale
        )
        output = torch.zeros((1, 3, full_h * scale, full_w * scale), dtype=torch.float32)
        # The weights of a plan sum to one; dividing by what was laid down keeps that exact at the
        # borders of the padded photo too.
        laid = torch.zeros((full_h * scale, full_w * scale), dtype=torch.float32)
        for done, planned in enumerate(tiles, 1):
            if check_cancel is not None:
                check_cancel()
            top, left = planned.top // scale, planned.left // scale
            crop = padded[..., top : top + planned.height // scale, left : left + planned.width // scale]
            restored = self._run(crop, noise_level)
            weight = torch.from_numpy(planned.weight)
            region = output[
                ..., planned.top : planned.top + planned.height, planned.left : planned.left + planned.width
            ]
            region.add_(restored * weight)
            laid[planned.top : planned.top + planned.height, planned.left : planned.left + planned.width].add_(weight)
            if progress is not None:
                elapsed = time.monotonic() - started
                fraction = done / len(tiles)
                progress(TileProgress(done, len(tiles), fraction, elapsed * (1 - fraction) / fraction))
        output /= laid.clamp_min(1e-6)
        return output[..., : height * scale, : width * scale]
