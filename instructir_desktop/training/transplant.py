"""Carry a trained plain network into a pixel-unshuffle network without starting from scratch.

A plain network's level ``i`` (width ``w * 2**i`` at ``1/2**i`` of the resolution) computes on
the same grid and with the same channels as level ``i - k`` of a network whose stem unshuffles
by ``2**k`` and whose width is ``w * 2**k``. The deeper levels, the middle and the matching
decoders therefore move over unchanged; only the first convolution, the last one and the dropped
full-resolution level(s) are new. Blocks the target has beyond the source's start as fresh
NAFBlocks, which are the identity (their residual scales start at zero), so the transplanted
network computes what the source's deeper part did from the first step.

With no stem (``stem = 1`` in both) the same mapping grows a network in place: every tensor moves
to the same name, the added blocks are the identity, and the grown network starts out computing
exactly what the source did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor

from instructir_desktop.model.network import NetworkConfig


def transplant_state(
    source: Mapping[str, Tensor], source_config: NetworkConfig, target_config: NetworkConfig
) -> dict[str, Tensor]:
    """The source's parameters renamed for the target; keys the target has no match for are absent.

    Raises ValueError when the two shapes do not line up (the target's width must be the source's
    times its stem, and its levels those the source has below the dropped ones).
    """
    if source_config.stem != 1:
        raise ValueError("transplanting starts from a plain network (stem 1)")
    shift = int(math.log2(target_config.stem))
    if target_config.width != source_config.width * target_config.stem:
        raise ValueError(
            f"a stem of {target_config.stem} needs width {source_config.width * target_config.stem}, "
            f"not {target_config.width}"
        )
    if target_config.levels != source_config.levels - shift:
        raise ValueError(f"the target needs {source_config.levels - shift} levels to line up with the source")
    if target_config.text_dim != source_config.text_dim:
        raise ValueError("the text embedding sizes differ")

    renamed: dict[str, Tensor] = {}
    for name, value in source.items():
        target_name = _target_name(name, shift, source_config, target_config)
        if target_name is not None:
            renamed[target_name] = value
    return renamed


def _target_name(name: str, shift: int, source: NetworkConfig, target: NetworkConfig) -> str | None:
    parts = name.split(".")
    group = parts[0]
    if group in ("intro", "ending"):
        return name if shift == 0 else None  # a stem changes their channels; plain growth keeps them
    if group == "middle_blks":
        return name if int(parts[1]) < target.middle_blocks else None
    level = int(parts[1])
    if group in ("encoders", "enc_cond", "downs"):
        level -= shift  # encoder levels count from the full-resolution end
        if level < 0:
            return None
    elif group in ("decoders", "dec_cond", "ups"):
        if level >= target.levels:  # decoder levels count from the bottom: the last ones go
            return None
    else:
        return None
    if group in ("encoders", "decoders"):
        blocks = (target.enc_blocks if group == "encoders" else target.dec_blocks)[level]
        if int(parts[2]) >= blocks:
            return None
    return ".".join([group, str(level), *parts[2:]])
