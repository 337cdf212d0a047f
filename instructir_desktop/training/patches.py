"""Clean training images held in memory as uint8, and random patches cut from them."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


def list_images(folders: Iterable[str | os.PathLike[str]]) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        root = Path(folder)
        if root.is_file():
            files.append(root)
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"training data folder not found: {root}")
        files.extend(sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES))
    return files


def load_rgb_uint8(path: Path) -> Tensor:
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


class PatchSampler:
    """Random square patches with flips and 90-degree turns, drawn in proportion to image area."""

    def __init__(self, images: list[Tensor], patch_size: int) -> None:
        self.patch_size = patch_size
        self.images = [img for img in images if min(img.shape[-2:]) >= patch_size]
        if not self.images:
            raise ValueError(f"no training image is at least {patch_size} px on its shorter side")
        areas = torch.tensor([float(img.shape[-2] * img.shape[-1]) for img in self.images])
        self._weights = areas / areas.sum()

    @classmethod
    def from_folders(cls, folders: Iterable[str | os.PathLike[str]], patch_size: int) -> PatchSampler:
        return cls([load_rgb_uint8(p) for p in list_images(folders)], patch_size)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """A uint8 batch (N, 3, P, P) on the CPU; the generator must be a CPU generator."""
        size = self.patch_size
        choices = torch.multinomial(self._weights, batch_size, replacement=True, generator=generator)
        patches = []
        for index in choices.tolist():
            image = self.images[index]
            height, width = image.shape[-2:]
            top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
            patch = image[:, top : top + size, left : left + size]
            turns = int(torch.randint(0, 4, (1,), generator=generator))
            if turns:
                patch = torch.rot90(patch, turns, dims=(1, 2))
            if bool(torch.randint(0, 2, (1,), generator=generator)):
                patch = patch.flip(-1)
            patches.append(patch)
        return torch.stack(patches)


def to_float(batch: Tensor, device: torch.device) -> Tensor:
    return batch.to(device, non_blocking=True).float().div_(255)
