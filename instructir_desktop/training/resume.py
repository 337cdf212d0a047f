"""Resume points: what a training run needs to continue on another machine, in one small file.

The local ``checkpoint.pt`` of a run holds everything (optimizer moments, random states) but is
large and tied to one machine. A resume point is committed to the repository at the end of a
stage: the weights and their moving average in fp16 safetensors, with the configuration, the
step count, the training seconds spent and the data-order seed as metadata. Continuing from one
restarts the optimizer's moments, which a short warm-up absorbs, and draws the data from
``seed + step``, so two machines continuing the same point see the same batches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from instructir_desktop.model.weights import load_state_dict, save_state_dict

FORMAT = "instructir-desktop resume point 1"


@dataclass
class ResumePoint:
    model: dict[str, Tensor]
    ema: dict[str, Tensor]
    config: dict[str, Any]  # the TrainConfig that produced it, as a dict
    step: int
    elapsed_s: float
    seed: int

    def save(self, path: str | os.PathLike[str]) -> Path:
        tensors = {f"model.{k}": v for k, v in self.model.items()} | {f"ema.{k}": v for k, v in self.ema.items()}
        metadata = {
            "format": FORMAT,
            "config": json.dumps(self.config),
            "step": str(self.step),
            "elapsed_s": f"{self.elapsed_s:.1f}",
            "seed": str(self.seed),
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return save_state_dict(path, tensors, metadata)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ResumePoint:
        tensors, metadata = load_state_dict(path)
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{Path(path).name}: not a training resume point")
        return cls(
            model={k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")},
            ema={k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")},
            config=json.loads(metadata["config"]),
            step=int(metadata["step"]),
            elapsed_s=float(metadata["elapsed_s"]),
            seed=int(metadata["seed"]),
        )
