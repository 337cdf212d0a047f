"""Small random-weight checkpoints of third-party architectures, built by spandrel's own classes."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from instructir_desktop.model.spandrel_import import import_spandrel


def span_x(scale: int) -> nn.Module:
    """An upscaler (SPAN), x2 or x4."""
    import_spandrel()
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(scale)
    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale).eval()


def dncnn() -> nn.Module:
    """A denoiser (DnCNN, colour, 4 layers)."""
    import_spandrel()
    from spandrel.architectures.DnCNN import DnCNN

    torch.manual_seed(1)
    return DnCNN(in_nc=3, out_nc=3, nc=8, nb=4).eval()


def retinexformer() -> nn.Module:
    """A low-light network whose input sides must be multiples of 8 (RetinexFormer)."""
    import_spandrel()
    from spandrel.architectures.RetinexFormer import RetinexFormer

    torch.manual_seed(2)
    return RetinexFormer(in_channels=3, out_channels=3, n_feat=8, stage=1, num_blocks=[1, 1, 1]).eval()


def save_checkpoint(network: nn.Module, path: Path) -> Path:
    """As people find them: a .pth state dict (torch.save) or .safetensors."""
    state = {name: value.detach().clone() for name, value in network.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
