"""Tiled restoration of images of any size with bounded memory and no seams.

Tiles start at multiples of the network's size multiple (16), so each tile sees the same
down-sampling grid as the whole image would. Neighbouring tiles overlap; in each overlap the two
tiles hand over through a short linear ramp centred in the overlap, so the pixels near a tile's
edge (where its convolutions saw padding instead of the real neighbourhood) get zero weight.

Channel attention needs global channel means. A sample of tiles spread over the photo is run
first as one batch, recording means weighted by the pixels each tile owns; every other tile
replays them. When the sample is every tile (small photos), the means are those of the whole
image. The sampled tiles' outputs are final, so the whole photo is still one pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from instructir_desktop.inference.backends import InstructIRRunner
from instructir_desktop.inference.executor import CancelCheck, ChannelStatistics


@dataclass(frozen=True)
class TileProgress:
    tiles_done: int
    tiles_total: int
    fraction: float
    eta_seconds: float | None


ProgressCallback = Callable[[TileProgress], None]


@dataclass(frozen=True)
class Tile:
    top: int
    left: int
    height: int
    width: int
    weight: np.ndarray  # (height, width) float32 blend weight; all tiles' weights sum to 1


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one axis (all lengths multiples of the size multiple)."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return sorted(set(starts))


def axis_weights(length: int, starts: list[int], size: int, feather: int) -> list[np.ndarray]:
    """1-D blend weights per tile: complementary linear ramps centred in each overlap."""
    weights = [np.ones(size, dtype=np.float32) for _ in starts]
    positions = np.arange(size, dtype=np.float32)
    for index in range(1, len(starts)):
        overlap_start, overlap_end = starts[index], starts[index - 1] + size
        middle = (overlap_start + overlap_end) / 2
        ramp_width = max(1.0, min(float(feather), float(overlap_end - overlap_start)))
        # Weight of the later tile rises from 0 to 1 across [middle - ramp/2, middle + ramp/2].
        later = np.clip((positions + starts[index] - (middle - ramp_width / 2)) / ramp_width, 0, 1)
        earlier = 1 - np.clip((positions + starts[index - 1] - (middle - ramp_width / 2)) / ramp_width, 0, 1)
        weights[index] *= later
        weights[index - 1] *= earlier
    return weights


def balanced_tile_size(length: int, tile: int, overlap: int, multiple: int = 16) -> int:
    """The smallest tile (a multiple of ``multiple``) that covers ``length`` in as many tiles as ``tile`` would.

    A fixed tile size leaves the last tile mostly overlapping its neighbour; spreading the same
    number of tiles evenly wastes less work on overlaps.
    """
    if length <= tile:
        return length
    count = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (count - 1) * overlap) / count / multiple) * multiple
    return min(length, max(size, overlap + multiple))


def plan_tiles(height: int, width: int, tile: int, overlap: int, feather: int = 16, multiple: int = 16) -> list[Tile]:
    tile_h = balanced_tile_size(height, tile, overlap, multiple)
    tile_w = balanced_tile_size(width, tile, overlap, multiple)
    rows = axis_starts(height, tile_h, overlap)
    cols = axis_starts(width, tile_w, overlap)
    row_weights = axis_weights(height, rows, tile_h, feather)
    col_weights = axis_weights(width, cols, tile_w, feather)
    return [
        Tile(top, left, tile_h, tile_w, np.outer(row_weight, col_weight).astype(np.float32))
        for top, row_weight in zip(rows, row_weights, strict=True)
        for left, col_weight in zip(cols, col_weights, strict=True)
    ]


def pick_sample(count: int, sample_size: int) -> list[int]:
    """Indices of ``sample_size`` tiles spread evenly over the raster order."""
    if sample_size >= count:
        return list(range(count))
    return sorted({round(i) for i in np.linspace(0, count - 1, sample_size)})


@dataclass
class TilingSettings:
    tile: int = 512
    overlap: int = 64
    feather: int = 16
    # Channel means are measured in one joint pass over several tiles, whose activations are all
    # in memory at once. If every tile fits in ``exact_statistics_pixels`` (of tile area), all of
    # them are measured and the result equals the whole-image forward; otherwise an evenly spread
    # sample of ``statistics_sample_pixels`` stands in for the photo (seam-free, approximate).
    exact_statistics_pixels: int = 3_000_000
    statistics_sample_pixels: int = 1_100_000
    # A photo up to this many pixels runs as one tile: no overlap to recompute, exact statistics.
    whole_image_pixels: int = 0

    def statistics_tiles(self, tile_count: int, tile_area: int) -> list[int]:
        if tile_count * tile_area <= self.exact_statistics_pixels:
            return list(range(tile_count))
        return pick_sample(tile_count, max(1, self.statistics_sample_pixels // tile_area))


# Peak activation memory of the folded executor on the CPU in float32, per pixel and per unit of
# network width (measured: 7D, width 32, ~2.4 kB per pixel in a joint pass).
ACTIVATION_BYTES_PER_PIXEL_PER_WIDTH = 75


def tiling_for_memory(tile: int, width: int, memory_bytes: float = 3e9) -> TilingSettings:
    """Settings whose largest single pass stays within ``memory_bytes`` for a network ``width``."""
    affordable = int(memory_bytes / (ACTIVATION_BYTES_PER_PIXEL_PER_WIDTH * width))
    return TilingSettings(
        tile=tile,
        exact_statistics_pixels=affordable,
        # The sample pass runs while the whole photo's input and output buffers are held too.
        statistics_sample_pixels=min(affordable * 7 // 10, 1_100_000),
        whole_image_pixels=affordable,
    )


class TiledRestorer:
    def __init__(self, executor: InstructIRRunner, settings: TilingSettings | None = None) -> None:
        self.executor = executor
        self.settings = settings or TilingSettings()
        multiple = executor.config.size_multiple
        if self.settings.tile % multiple or self.settings.overlap % multiple:
            raise ValueError(f"tile and overlap must be multiples of {multiple}")

    def restore(
        self,
        image: Tensor,
        conditioning: Any,
        *,
        progress: ProgressCallback | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> Tensor:
        """Restore a (1, 3, H, W) float image; returns the same shape on the CPU (possibly a strided view)."""
        height, width = image.shape[-2:]
        multiple = self.executor.config.size_multiple
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            padded = F.pad(image, (0, pad_w, 0, pad_h), mode=mode)
        else:
            padded = image
        full_h, full_w = padded.shape[-2:]
        settings = self.settings
        started = time.monotonic()
        if full_h * full_w <= settings.whole_image_pixels:
            whole = self.executor.forward(padded, conditioning, check_cancel=check_cancel).cpu()
            if progress is not None:
                progress(TileProgress(1, 1, 1.0, 0.0))
            return whole[:, :, :height, :width]
        tiles = plan_tiles(full_h, full_w, settings.tile, settings.overlap, settings.feather, multiple)
        tile_area = tiles[0].height * tiles[0].width
        sample = settings.statistics_tiles(len(tiles), tile_area)
        # Accumulated channels-last, so the caller gets (H, W, 3) pixels without another full copy.
        output = torch.zeros((full_h, full_w, 3), dtype=torch.float32)
        done = 0

        def report() -> None:
            if progress is None:
                return
            elapsed = time.monotonic() - started
            fraction = done / len(tiles)
            eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
            progress(TileProgress(done, len(tiles), fraction, eta))

        def crop(tile: Tile) -> Tensor:
            return padded[:, :, tile.top : tile.top + tile.height, tile.left : tile.left + tile.width]

        def accumulate(tile: Tile, restored: Tensor) -> None:
            weight = torch.from_numpy(tile.weight)[..., None]
            target = output[tile.top : tile.top + tile.height, tile.left : tile.left + tile.width]
            target.add_(restored[0].permute(1, 2, 0).cpu() * weight)

        statistics = ChannelStatistics()
        batch = torch.cat([crop(tiles[i]) for i in sample])
        masks = torch.from_numpy(np.stack([tiles[i].weight for i in sample]))
        restored = self.executor.forward(
            batch, conditioning, statistics, record=True, weight_mask=masks, check_cancel=check_cancel
        )
        for row, index in enumerate(sample):
            accumulate(tiles[index], restored[row : row + 1])
        del batch, restored
        done = len(sample)
        report()
        sampled = set(sample)
        for index, tile in enumerate(tiles):
            if index in sampled:
                continue
            if check_cancel is not None:
                check_cancel()
            accumulate(tile, self.executor.forward(crop(tile), conditioning, statistics, check_cancel=check_cancel))
            done += 1
            report()
        return output.permute(2, 0, 1)[None, :, :height, :width]


def estimate_tile_count(height: int, width: int, settings: TilingSettings, multiple: int = 16) -> int:
    full_h = math.ceil(height / multiple) * multiple
    full_w = math.ceil(width / multiple) * multiple
    if full_h * full_w <= settings.whole_image_pixels:
        return 1
    tile_h = balanced_tile_size(full_h, settings.tile, settings.overlap, multiple)
    tile_w = balanced_tile_size(full_w, settings.tile, settings.overlap, multiple)
    return len(axis_starts(full_h, tile_h, settings.overlap)) * len(axis_starts(full_w, tile_w, settings.overlap))
