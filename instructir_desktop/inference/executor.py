"""An inference-only executor of the InstructIR network, built from a loaded :class:`InstructIRNet`.

Why not just call the module: for restoration of large photos we need three things the training
module does not give.

1. Shared channel statistics. Every NAFBlock multiplies its channels by a function of their
   *global* mean (simplified channel attention). When a photo is processed in tiles, each tile
   would compute its own means and tiles would disagree (seams, brightness jumps). The executor
   can *record* the means over a set of tiles processed together (masked to the pixels each tile
   owns) and *replay* them for every other tile, so all tiles see the same statistics.
2. Speed. Features are kept in NHWC so LayerNorm is one fused kernel over the last axis and 1x1
   convolutions are plain matrix products; LayerNorm affines and the residual scales are folded
   into the neighbouring 1x1 weights once, and with replayed statistics the channel attention is
   folded into the following 1x1 weights per tile.
3. Cooperative cancellation: a callback runs between blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from instructir_desktop.model.network import LAYER_NORM_EPS, InstructIRNet, NAFBlock, NetworkConfig

CancelCheck = Callable[[], None]


@dataclass
class _Linear:
    weight: Tensor  # (out, in)
    bias: Tensor | None

    def __call__(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


@dataclass
class _Block:
    """A NAFBlock with LayerNorm affines and beta/gamma folded into its 1x1 convolutions."""

    conv1: _Linear
    depthwise_weight: Tensor  # (2c, 1, 3, 3)
    depthwise_bias: Tensor
    sca: _Linear
    conv3: _Linear  # already scaled by beta
    conv4: _Linear
    conv5: _Linear  # already scaled by gamma
    channels: int


@dataclass
class _Condition:
    """Instruction condition block: per-channel affine (gamma, beta, and the fc gate) + a block."""

    fc: _Linear
    gamma: Tensor  # (c,)
    beta: Tensor
    block: _Block


def fold_block(block: NAFBlock) -> _Block:
    """The block's inference weights: LayerNorm affines and beta/gamma folded into the 1x1 convolutions."""

    def linear(conv: torch.nn.Conv2d) -> tuple[Tensor, Tensor]:
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        return conv.weight.detach().flatten(1).clone(), bias.clone()

    w1, b1 = linear(block.conv1)
    # conv1(norm * w + b) == (conv1 * diag(w))(norm) + conv1 @ b
    b1 = b1 + w1 @ block.norm1.bias.detach()
    w1 = w1 * block.norm1.weight.detach()[None, :]
    w4, b4 = linear(block.conv4)
    b4 = b4 + w4 @ block.norm2.bias.detach()
    w4 = w4 * block.norm2.weight.detach()[None, :]
    beta = block.beta.detach().flatten()
    gamma = block.gamma.detach().flatten()
    w3, b3 = linear(block.conv3)
    w5, b5 = linear(block.conv5)
    sca_conv = block.sca[1]
    assert isinstance(sca_conv, torch.nn.Conv2d)
    ws, bs = linear(sca_conv)
    return _Block(
        conv1=_Linear(w1, b1),
        depthwise_weight=block.conv2.weight.detach().clone(),
        depthwise_bias=block.conv2.bias.detach().clone() if block.conv2.bias is not None else torch.zeros(w1.shape[0]),
        sca=_Linear(ws, bs),
        conv3=_Linear(w3 * beta[:, None], b3 * beta),
        conv4=_Linear(w4, b4),
        conv5=_Linear(w5 * gamma[:, None], b5 * gamma),
        channels=block.conv3.in_channels,
    )


class ChannelStatistics:
    """The per-block channel means, in execution order: recorded once, replayed for every tile."""

    def __init__(self) -> None:
        self.means: list[Tensor] = []

    def __len__(self) -> int:
        return len(self.means)

    def to(self, device: torch.device, dtype: torch.dtype) -> ChannelStatistics:
        moved = ChannelStatistics()
        moved.means = [m.to(device, dtype) for m in self.means]
        return moved


class _Run:
    """State of one forward pass: statistics to record or replay, the ownership mask, cancel."""

    def __init__(
        self,
        statistics: ChannelStatistics,
        record: bool,
        weight_mask: Tensor | None,
        check_cancel: CancelCheck | None,
    ) -> None:
        self.statistics = statistics
        self.record = record
        self.weight_mask = weight_mask  # (N, H, W, 1) at full resolution; None = plain mean
        self.masks: dict[int, Tensor] = {}
        self.index = 0
        self.check_cancel = check_cancel

    def mask_at(self, height: int) -> Tensor | None:
        if self.weight_mask is None:
            return None
        if height not in self.masks:
            factor = self.weight_mask.shape[1] // height
            mask = self.weight_mask.permute(0, 3, 1, 2)
            mask = F.avg_pool2d(mask, factor) if factor > 1 else mask
            self.masks[height] = mask.permute(0, 2, 3, 1)
        return self.masks[height]

    def channel_means(self, features: Tensor) -> Tensor:
        """Means over all tiles and pixels (N,H,W,C) -> (C,), recorded or replayed."""
        if not self.record:
            mean = self.statistics.means[self.index]
        else:
            mask = self.mask_at(features.shape[1])
            if mask is None:
                mean = features.mean(dim=(0, 1, 2), dtype=torch.float32)
            else:
                weighted = (features * mask).sum(dim=(0, 1, 2), dtype=torch.float32)
                mean = weighted / mask.sum().float().clamp_min(1e-6)
            self.statistics.means.append(mean)
        self.index += 1
        return mean.to(features.dtype)


class FastInstructIR:
    """Runs an :class:`InstructIRNet` for inference on NHWC tensors with shared statistics."""

    def __init__(self, network: InstructIRNet, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        # Submodule attributes are typed loosely by torch; read them through Any.
        net: Any = network
        self.config: NetworkConfig = network.config
        self.device = torch.device(device)
        self.dtype = dtype
        convert = self._convert
        self.intro_weight = convert(net.intro.weight.detach())
        self.intro_bias = convert(net.intro.bias.detach())
        self.ending_weight = convert(net.ending.weight.detach())
        self.ending_bias = convert(net.ending.bias.detach())
        self.encoders = [[self._block(b) for b in level] for level in net.encoders]
        self.middle = [self._block(b) for b in net.middle_blks]
        self.decoders = [[self._block(b) for b in level] for level in net.decoders]
        self.enc_cond = [self._condition(c) for c in net.enc_cond]
        self.dec_cond = [self._condition(c) for c in net.dec_cond]
        self.downs = []
        for down in net.downs:
            weight = down.weight.detach()  # (2c, c, 2, 2): as a linear map over (dy, dx, c) patches
            self.downs.append(_Linear(convert(weight.permute(0, 2, 3, 1).flatten(1)), convert(down.bias.detach())))
        self.ups = [_Linear(convert(up[0].weight.detach().flatten(1)), None) for up in net.ups]

    def _convert(self, tensor: Tensor) -> Tensor:
        return tensor.to(self.device, self.dtype).contiguous()

    def _float32(self, linear: _Linear) -> _Linear:
        # The attention path stays in float32 even when the activations run in half precision.
        bias = None if linear.bias is None else linear.bias.to(self.device, torch.float32)
        return _Linear(linear.weight.to(self.device, torch.float32), bias)

    def _block(self, block: torch.nn.Module) -> _Block:
        assert isinstance(block, NAFBlock)
        folded = fold_block(block)
        convert = self._convert
        return _Block(
            conv1=_Linear(convert(folded.conv1.weight), convert(folded.conv1.bias)),  # type: ignore[arg-type]
            depthwise_weight=convert(folded.depthwise_weight).to(memory_format=torch.channels_last),
            depthwise_bias=convert(folded.depthwise_bias),
            sca=self._float32(folded.sca),
            conv3=self._float32(folded.conv3),
            conv4=_Linear(convert(folded.conv4.weight), convert(folded.conv4.bias)),  # type: ignore[arg-type]
            conv5=_Linear(convert(folded.conv5.weight), convert(folded.conv5.bias)),  # type: ignore[arg-type]
            channels=folded.channels,
        )

    def _condition(self, condition: Any) -> _Condition:
        return _Condition(
            fc=_Linear(
                condition.fc.weight.detach().to(self.device, torch.float32),
                condition.fc.bias.detach().to(self.device, torch.float32),
            ),
            gamma=condition.gamma.detach().flatten().to(self.device, torch.float32),
            beta=condition.beta.detach().flatten().to(self.device, torch.float32),
            block=self._block(condition.block),
        )

    # ------------------------------------------------------------------ running

    def gates(self, embedding: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per condition block, the channel scale and shift that the instruction selects."""
        embedding = embedding.to(self.device, torch.float32).reshape(-1)
        out = []
        for condition in (*self.enc_cond, *self.dec_cond):
            gate = torch.sigmoid(condition.fc(embedding))
            out.append(((condition.gamma * gate).to(self.dtype), (condition.beta * gate).to(self.dtype)))
        return out

    @torch.inference_mode()
    def forward(
        self,
        image: Tensor,
        gates: list[tuple[Tensor, Tensor]],
        statistics: ChannelStatistics | None = None,
        *,
        record: bool = False,
        weight_mask: Tensor | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> Tensor:
        """Restore NCHW ``image`` (sides multiples of 2**levels) with one instruction's gates.

        ``record=True`` computes channel means over the whole batch (weighted by ``weight_mask``,
        NHW at full resolution) and appends them to ``statistics``; otherwise the means in
        ``statistics`` are replayed. With ``statistics=None`` every image uses its own means
        (the behaviour of the training module for a batch of one).
        """
        multiple = self.config.size_multiple
        if image.shape[-1] % multiple or image.shape[-2] % multiple:
            raise ValueError(f"image sides must be multiples of {multiple}")
        if statistics is None:
            if image.shape[0] != 1:
                raise ValueError("per-image statistics need a batch of one; record them for batches")
            statistics, record = ChannelStatistics(), True
        mask = weight_mask.to(self.device, self.dtype)[..., None] if weight_mask is not None else None
        run = _Run(statistics, record, mask, check_cancel)
        x = image.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        stem = self.config.stem
        stemmed = F.pixel_unshuffle(x, stem).contiguous(memory_format=torch.channels_last) if stem > 1 else x
        features = F.conv2d(stemmed, self.intro_weight, self.intro_bias, padding=1).permute(0, 2, 3, 1)
        gate_iter = iter(gates)
        skips = []
        for level, blocks in enumerate(self.encoders):
            for block in blocks:
                features = self._run_block(block, features, run)
            features = self._run_condition(self.enc_cond[level], features, next(gate_iter), run)
            skips.append(features)
            features = self._down(self.downs[level], features)
        for block in self.middle:
            features = self._run_block(block, features, run)
        for level, blocks in enumerate(self.decoders):
            features = self._up(self.ups[level], features) + skips[-1 - level]
            for block in blocks:
                features = self._run_block(block, features, run)
            features = self._run_condition(self.dec_cond[level], features, next(gate_iter), run)
        restored = F.conv2d(features.permute(0, 3, 1, 2), self.ending_weight, self.ending_bias, padding=1)
        if stem > 1:
            restored = F.pixel_shuffle(restored, stem)
        return (restored + x).float().contiguous()

    def _run_condition(self, condition: _Condition, x: Tensor, gate: tuple[Tensor, Tensor], run: _Run) -> Tensor:
        scale, shift = gate
        return self._run_block(condition.block, torch.addcmul(shift, x, scale), run) + x

    def _run_block(self, block: _Block, x: Tensor, run: _Run) -> Tensor:
        if run.check_cancel is not None:
            run.check_cancel()
        channels = block.channels
        y = block.conv1(F.layer_norm(x, (channels,), eps=LAYER_NORM_EPS))
        y = F.conv2d(
            y.permute(0, 3, 1, 2), block.depthwise_weight, block.depthwise_bias, padding=1, groups=2 * channels
        )
        y = y.permute(0, 2, 3, 1)
        y = y[..., :channels] * y[..., channels:]
        attention = block.sca(run.channel_means(y).float())
        # Fold the channel attention into conv3: conv3(y * a) == (conv3 * diag(a))(y).
        conv3_weight = (block.conv3.weight * attention[None, :]).to(y.dtype)
        assert block.conv3.bias is not None  # the SCA branch's conv3 always has a bias
        x = torch.addmm(block.conv3.bias.to(y.dtype), y.reshape(-1, channels), conv3_weight.t()).view_as(x) + x
        z = block.conv4(F.layer_norm(x, (channels,), eps=LAYER_NORM_EPS))
        z = z[..., :channels] * z[..., channels:]
        return block.conv5(z) + x

    @staticmethod
    def _down(linear: _Linear, x: Tensor) -> Tensor:
        n, height, width, channels = x.shape
        patches = x.view(n, height // 2, 2, width // 2, 2, channels).permute(0, 1, 3, 2, 4, 5)
        return linear(patches.reshape(n, height // 2, width // 2, 4 * channels))

    @staticmethod
    def _up(linear: _Linear, x: Tensor) -> Tensor:
        n, height, width, _ = x.shape
        y = linear(x)
        channels = y.shape[-1] // 4
        # PixelShuffle: output channel c at sub-pixel (i, j) is input channel c*4 + i*2 + j.
        y = y.view(n, height, width, channels, 2, 2).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(n, height * 2, width * 2, channels)
