"""The InstructIR image network: a NAFNet U-Net with instruction condition blocks.

Parameter names follow the published InstructIR-7D checkpoint so that its files load with
``strict=True``; the architecture is described by :class:`NetworkConfig`, which can be recovered
from a state dict's shapes with :func:`detect_config`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LAYER_NORM_EPS = 1e-6


@dataclass(frozen=True)
class NetworkConfig:
    """Shape of an InstructIR image network."""

    width: int = 32
    enc_blocks: tuple[int, ...] = (2, 2, 4, 8)
    middle_blocks: int = 4
    dec_blocks: tuple[int, ...] = (2, 2, 2, 2)
    text_dim: int = 256
    in_channels: int = 3
    # Pixel-unshuffle stem: the first level runs at 1/stem of the resolution on stem² times the
    # input channels, so the costliest (full-resolution) level costs about a quarter (stem 2).
    # 1 is the published architecture.
    stem: int = 1

    def __post_init__(self) -> None:
        # Accept lists from JSON/TOML while keeping the dataclass hashable.
        object.__setattr__(self, "enc_blocks", tuple(int(b) for b in self.enc_blocks))
        object.__setattr__(self, "dec_blocks", tuple(int(b) for b in self.dec_blocks))
        if len(self.enc_blocks) != len(self.dec_blocks):
            raise ValueError("enc_blocks and dec_blocks must have the same number of levels")
        if self.width <= 0 or self.text_dim <= 0 or self.middle_blocks < 0:
            raise ValueError("width and text_dim must be positive, middle_blocks non-negative")
        if self.stem not in (1, 2, 4):
            raise ValueError("stem must be 1 (none), 2 or 4")

    @property
    def levels(self) -> int:
        return len(self.enc_blocks)

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this (inputs are padded to it)."""
        return self.stem * 2**self.levels

    @property
    def stem_channels(self) -> int:
        """Channels entering the first convolution (and leaving the last one)."""
        return self.in_channels * self.stem**2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


PUBLISHED_7D_CONFIG = NetworkConfig()


def layer_norm_channels(x: Tensor, weight: Tensor, bias: Tensor, eps: float = LAYER_NORM_EPS) -> Tensor:
    """LayerNorm over the channel axis of an NCHW tensor, independently per pixel."""
    # Permuting to NHWC lets the fused layer_norm kernel normalise the last axis; for a
    # channels_last tensor the permute is a free view.
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), weight, bias, eps).permute(0, 3, 1, 2)


class ChannelLayerNorm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm_channels(x, self.weight, self.bias)


def simple_gate(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=1)
    return first * second


class NAFBlock(nn.Module):
    """Nonlinear-activation-free block: gated depthwise conv + channel attention, then a gated FFN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = channels * 2
        self.norm1 = ChannelLayerNorm(channels)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        # Index 1 holds the conv so that names read ``sca.1.weight`` like the published files.
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1))
        self.conv3 = nn.Conv2d(channels, channels, 1)
        self.norm2 = ChannelLayerNorm(channels)
        self.conv4 = nn.Conv2d(channels, hidden, 1)
        self.conv5 = nn.Conv2d(channels, channels, 1)
        # Residual scales start at zero so a fresh block is the identity.
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        y = simple_gate(self.conv2(self.conv1(self.norm1(x))))
        y = self.conv3(y * self.sca(y))
        x = x + y * self.beta
        y = self.conv5(simple_gate(self.conv4(self.norm2(x))))
        return x + y * self.gamma


class InstructionConditionBlock(nn.Module):
    """Routes channels by the instruction: a per-channel sigmoid gate from the text embedding."""

    def __init__(self, channels: int, text_dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(text_dim, channels)
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.block = NAFBlock(channels)

    def channel_gate(self, embedding: Tensor) -> Tensor:
        return torch.sigmoid(self.fc(embedding))[:, :, None, None]

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        features = (x * self.gamma + self.beta) * self.channel_gate(embedding)
        return self.block(features) + x


class InstructIRNet(nn.Module):
    """U-Net of NAFBlocks with an instruction condition block after every encoder/decoder level."""

    def __init__(self, config: NetworkConfig = PUBLISHED_7D_CONFIG) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.intro = nn.Conv2d(config.stem_channels, width, 3, padding=1)
        self.ending = nn.Conv2d(width, config.stem_channels, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.enc_cond = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = width
        for count in config.enc_blocks:
            self.encoders.append(nn.Sequential(*[NAFBlock(channels) for _ in range(count)]))
            self.enc_cond.append(InstructionConditionBlock(channels, config.text_dim))
            self.downs.append(nn.Conv2d(channels, channels * 2, 2, stride=2))
            channels *= 2
        self.middle_blks = nn.Sequential(*[NAFBlock(channels) for _ in range(config.middle_blocks)])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.dec_cond = nn.ModuleList()
        for count in config.dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(channels, channels * 2, 1, bias=False), nn.PixelShuffle(2)))
            channels //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(channels) for _ in range(count)]))
            self.dec_cond.append(InstructionConditionBlock(channels, config.text_dim))

    def forward(self, image: Tensor, embedding: Tensor) -> Tensor:
        """Restore ``image`` (N,3,H,W in [0,1]) following the instruction ``embedding`` (N,text_dim)."""
        height, width = image.shape[-2:]
        x = pad_to_multiple(image, self.config.size_multiple)
        stem = self.config.stem
        features = self.intro(F.pixel_unshuffle(x, stem) if stem > 1 else x)
        skips = []
        for encoder, condition, down in zip(self.encoders, self.enc_cond, self.downs, strict=True):
            features = condition(encoder(features), embedding)
            skips.append(features)
            features = down(features)
        features = self.middle_blks(features)
        for up, decoder, condition, skip in zip(self.ups, self.decoders, self.dec_cond, reversed(skips), strict=True):
            features = condition(decoder(up(features) + skip), embedding)
        residual = self.ending(features)
        restored = (F.pixel_shuffle(residual, stem) if stem > 1 else residual) + x
        return restored[..., :height, :width]


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad the bottom/right of an NCHW tensor by reflection up to a multiple of ``multiple``."""
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if not pad_h and not pad_w:
        return x
    # Reflection needs the pad to be smaller than the side; replicate covers tiny inputs.
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def detect_config(state_dict: Mapping[str, Tensor] | Mapping[str, Sequence[int]]) -> NetworkConfig:
    """Recover the network shape from parameter names and shapes (tensors or shape lists)."""

    def shape(name: str) -> tuple[int, ...]:
        value = state_dict[name]
        return tuple(value.shape) if isinstance(value, Tensor) else tuple(int(s) for s in value)

    def count_blocks(prefix: str) -> int:
        indices = {int(k[len(prefix) :].split(".")[0]) for k in state_dict if k.startswith(prefix)}
        return max(indices) + 1 if indices else 0

    try:
        width, stem_channels = shape("intro.weight")[:2]
        stem, in_channels = _stem_of(stem_channels)
        levels = count_blocks("downs.")  # every level has a down-sampler, even one without blocks
        enc_blocks = tuple(count_blocks(f"encoders.{level}.") for level in range(levels))
        dec_blocks = tuple(count_blocks(f"decoders.{level}.") for level in range(levels))
        text_dim = shape("enc_cond.0.fc.weight")[1]
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"not an InstructIR image network (missing or odd parameter: {error})") from error
    if levels == 0:
        raise ValueError("not an InstructIR image network (no encoder levels)")
    return NetworkConfig(
        width=width,
        enc_blocks=enc_blocks,
        middle_blocks=count_blocks("middle_blks."),
        dec_blocks=dec_blocks,
        text_dim=text_dim,
        in_channels=in_channels,
        stem=stem,
    )


def _stem_of(stem_channels: int) -> tuple[int, int]:
    """(stem, image channels) from the first convolution's input channels: 3 or 1 channels are a
    plain network; 12 and 48 are RGB behind a 2x or 4x pixel-unshuffle."""
    for stem in (4, 2):
        if stem_channels % stem**2 == 0 and stem_channels // stem**2 in (1, 3):
            return stem, stem_channels // stem**2
    return 1, stem_channels


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
