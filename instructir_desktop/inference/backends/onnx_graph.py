"""The InstructIR network as two ONNX graphs that reproduce the tiled executor exactly.

Each NAFBlock's channel attention needs global channel means (see ``executor.py``). Tiles share
them, so the network is exported twice from one traceable module:

- ``record``: inputs ``image`` (N, 3, H, W), ``embedding`` (1, text_dim) and ``weight`` (N, 1, H, W),
  the share of each pixel each tile owns; outputs ``restored`` and ``means``, every block's channel
  means over the whole batch weighted by ``weight``, concatenated in execution order. With one
  image and a weight of ones this is the plain module's forward.
- ``replay``: inputs ``image``, ``embedding`` and ``means`` (as recorded); output ``restored``.

The instruction enters as its embedding, so one graph serves every instruction. Weights are folded
as in the executor (LayerNorm affines and residual scales into the 1x1 convolutions). Height and
width are dynamic (multiples of the network's size multiple); the batch is dynamic for ``record``.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instructir_desktop.inference.executor import fold_block
from instructir_desktop.model.network import LAYER_NORM_EPS, InstructIRNet, NAFBlock

RECORD = "record"
REPLAY = "replay"
GRAPH_KINDS = (RECORD, REPLAY)


def channel_layer_norm(x: Tensor) -> Tensor:
    """LayerNorm over the channels of an NCHW tensor without affine (folded into the next conv).

    Written with reductions over axis 1 rather than a transpose to NHWC and back: the two
    transposes per norm cost more in ONNX Runtime than the reductions (measured).
    """
    mean = x.mean(dim=1, keepdim=True)
    centred = x - mean
    variance = (centred * centred).mean(dim=1, keepdim=True)
    return centred * torch.rsqrt(variance + LAYER_NORM_EPS)


class _FoldedBlock(nn.Module):
    sca_weight: Tensor
    sca_bias: Tensor | None

    def __init__(self, block: NAFBlock, scale: int) -> None:
        super().__init__()
        folded = fold_block(block)
        channels = folded.channels
        hidden = 2 * channels
        self.channels = channels
        self.scale = scale  # how many image pixels one feature pixel spans (per side)

        def conv1x1(weight: Tensor, bias: Tensor | None) -> nn.Conv2d:
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None)
            conv.weight.data.copy_(weight[:, :, None, None])
            if bias is not None and conv.bias is not None:
                conv.bias.data.copy_(bias)
            return conv

        # SimpleGate multiplies the two halves of conv1 (and conv4): as two convolutions each, the
        # halves come out as separate tensors and no Split copies them.
        w1, b1 = folded.conv1.weight, folded.conv1.bias
        assert b1 is not None
        self.conv1_a = conv1x1(w1[:channels], b1[:channels])
        self.conv1_b = conv1x1(w1[channels:], b1[channels:])
        self.depthwise_a = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.depthwise_b = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        for conv, part in ((self.depthwise_a, slice(0, channels)), (self.depthwise_b, slice(channels, hidden))):
            assert conv.bias is not None
            conv.weight.data.copy_(folded.depthwise_weight[part])
            conv.bias.data.copy_(folded.depthwise_bias[part])
        self.register_buffer("sca_weight", folded.sca.weight.clone())
        self.register_buffer("sca_bias", folded.sca.bias.clone() if folded.sca.bias is not None else None)
        self.conv3 = conv1x1(folded.conv3.weight, folded.conv3.bias)
        w4, b4 = folded.conv4.weight, folded.conv4.bias
        assert b4 is not None
        self.conv4_a = conv1x1(w4[:channels], b4[:channels])
        self.conv4_b = conv1x1(w4[channels:], b4[channels:])
        self.conv5 = conv1x1(folded.conv5.weight, folded.conv5.bias)

    def forward(self, x: Tensor, statistics: _Statistics) -> Tensor:
        normed = channel_layer_norm(x)
        y = self.depthwise_a(self.conv1_a(normed)) * self.depthwise_b(self.conv1_b(normed))
        attention = F.linear(statistics.take(y, self.scale), self.sca_weight, self.sca_bias)
        x = self.conv3(y * attention[None, :, None, None]) + x
        normed = channel_layer_norm(x)
        restored: Tensor = self.conv5(self.conv4_a(normed) * self.conv4_b(normed)) + x
        return restored


class _Statistics:
    """Hands each block its channel means: measured over the batch (record) or read from the input."""

    def __init__(self, weight: Tensor | None, means: Tensor | None) -> None:
        self.weight = weight
        self.means = means
        self.offset = 0
        self.recorded: list[Tensor] = []
        self._weights: dict[int, Tensor] = {}

    def _weight_at(self, scale: int) -> Tensor:
        assert self.weight is not None
        if scale not in self._weights:
            self._weights[scale] = F.avg_pool2d(self.weight, scale) if scale > 1 else self.weight
        return self._weights[scale]

    def take(self, features: Tensor, scale: int) -> Tensor:
        channels = features.shape[1]
        if self.means is not None:
            mean = self.means[self.offset : self.offset + channels]
        else:
            weight = self._weight_at(scale)
            mean = (features * weight).sum(dim=(0, 2, 3)) / weight.sum().clamp_min(1e-6)
            self.recorded.append(mean)
        self.offset += channels
        return mean


class _Condition(nn.Module):
    gamma: Tensor
    beta: Tensor

    def __init__(self, condition: Any, scale: int) -> None:
        super().__init__()
        self.fc = nn.Linear(condition.fc.in_features, condition.fc.out_features)
        self.fc.load_state_dict(condition.fc.state_dict())
        self.register_buffer("gamma", condition.gamma.detach().flatten().clone())
        self.register_buffer("beta", condition.beta.detach().flatten().clone())
        self.block = _FoldedBlock(condition.block, scale)

    def forward(self, x: Tensor, embedding: Tensor, statistics: _Statistics) -> Tensor:
        gate = torch.sigmoid(self.fc(embedding)).reshape(-1)
        scale = (self.gamma * gate)[None, :, None, None]
        shift = (self.beta * gate)[None, :, None, None]
        conditioned: Tensor = self.block(x * scale + shift, statistics) + x
        return conditioned


class ExportableInstructIR(nn.Module):
    """A traceable inference copy of an :class:`InstructIRNet` in one of the two graph kinds."""

    def __init__(self, network: InstructIRNet, kind: str) -> None:
        super().__init__()
        if kind not in GRAPH_KINDS:
            raise ValueError(f"unknown graph kind {kind!r}")
        net: Any = network
        self.kind = kind
        self.config = network.config
        self.intro = nn.Conv2d(net.intro.in_channels, net.intro.out_channels, 3, padding=1)
        self.intro.load_state_dict(net.intro.state_dict())
        self.ending = nn.Conv2d(net.ending.in_channels, net.ending.out_channels, 3, padding=1)
        self.ending.load_state_dict(net.ending.state_dict())
        levels = self.config.levels
        # How many image pixels one feature pixel of a level spans per side: the pixel-unshuffle
        # stem puts the first level at 1/stem of the image's resolution, and each level halves it.
        stem = self.config.stem

        def scale(level: int) -> int:
            return int(stem * 2**level)

        self.encoders = nn.ModuleList(
            nn.ModuleList(_FoldedBlock(b, scale(index)) for b in level) for index, level in enumerate(net.encoders)
        )
        self.enc_cond = nn.ModuleList(_Condition(c, scale(index)) for index, c in enumerate(net.enc_cond))
        self.downs = nn.ModuleList()
        for down in net.downs:
            copy = nn.Conv2d(down.in_channels, down.out_channels, 2, stride=2)
            copy.load_state_dict(down.state_dict())
            self.downs.append(copy)
        self.middle = nn.ModuleList(_FoldedBlock(b, scale(levels)) for b in net.middle_blks)
        self.ups = nn.ModuleList()
        for up in net.ups:
            conv = nn.Conv2d(up[0].in_channels, up[0].out_channels, 1, bias=False)
            conv.load_state_dict(up[0].state_dict())
            self.ups.append(nn.Sequential(conv, nn.PixelShuffle(2)))
        # Decoder level i works at the resolution of encoder level (levels - 1 - i).
        self.decoders = nn.ModuleList(
            nn.ModuleList(_FoldedBlock(b, scale(levels - 1 - index)) for b in level)
            for index, level in enumerate(net.decoders)
        )
        self.dec_cond = nn.ModuleList(_Condition(c, scale(levels - 1 - index)) for index, c in enumerate(net.dec_cond))
        self.eval()

    def forward(self, image: Tensor, embedding: Tensor, statistics_input: Tensor) -> Any:
        if self.kind == RECORD:
            statistics = _Statistics(weight=statistics_input, means=None)
        else:
            statistics = _Statistics(weight=None, means=statistics_input)
        stem = self.config.stem
        features = self.intro(F.pixel_unshuffle(image, stem) if stem > 1 else image)
        skips = []
        for blocks, condition, down in zip(self.encoders, self.enc_cond, self.downs, strict=True):
            for block in cast(nn.ModuleList, blocks):
                features = block(features, statistics)
            features = condition(features, embedding, statistics)
            skips.append(features)
            features = down(features)
        for block in self.middle:
            features = block(features, statistics)
        for up, blocks, condition, skip in zip(self.ups, self.decoders, self.dec_cond, reversed(skips), strict=True):
            features = up(features) + skip
            for block in cast(nn.ModuleList, blocks):
                features = block(features, statistics)
            features = condition(features, embedding, statistics)
        residual = self.ending(features)
        restored = (F.pixel_shuffle(residual, stem) if stem > 1 else residual) + image
        if self.kind == RECORD:
            return restored, torch.cat(statistics.recorded)
        return restored


def statistics_layout(network: InstructIRNet) -> list[int]:
    """The channel count of each block's means, in the order a forward records them (the torch
    executor keeps one entry per block; the graph's ``means`` is their concatenation)."""
    config = network.config
    layout: list[int] = []
    channels = config.width
    for count in config.enc_blocks:
        layout += [channels] * (count + 1)  # the level's blocks and its condition block
        channels *= 2
    layout += [channels] * config.middle_blocks
    for count in config.dec_blocks:
        channels //= 2
        layout += [channels] * (count + 1)
    return layout


def statistics_length(network: InstructIRNet) -> int:
    """How many channel means one forward records (the length of ``means``)."""
    return sum(statistics_layout(network))
