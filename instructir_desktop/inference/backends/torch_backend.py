"""The torch backend: the folded executor for InstructIR, the module itself for anything else."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from instructir_desktop.inference.devices import describe_device
from instructir_desktop.inference.executor import CancelCheck, FastInstructIR


class TorchInstructIR(FastInstructIR):
    """:class:`FastInstructIR` as an ``InstructIRRunner`` (the interface names its gates "conditioning")."""

    backend = "torch"
    preferred_tile = 0  # the device's default (see devices.default_tile_size)

    @property
    def description(self) -> str:
        return describe_device(self.device, self.dtype)

    def condition(self, embedding: Tensor) -> Any:
        return self.gates(embedding)


class TorchImageModule:
    """Any image-to-image module on a device, whole tiles at a time."""

    backend = "torch"

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.module = module.to(device).eval()
        self.device = device

    def run(self, image: Tensor, check_cancel: CancelCheck | None = None) -> Tensor:
        if check_cancel is not None:
            check_cancel()
        with torch.inference_mode():
            restored: Tensor = self.module(image.to(self.device))
            return restored.float().cpu()
