"""Which network runs a plan step, and running a step on a third-party network.

The plan stays ours (the text model reads the instruction); each step then runs on the model the
step names, else on ``forced`` (``restore --model ID``) when it does the step's task, else on the
task's default in the model store, else on the bundled all-in-one network (``model_for`` returns
None). Networks that change the size serve upscale steps: a x4 network serves a x2 request by
running once and then shrinking the result with an antialiased bicubic filter; a x2 network
serves x4 by running twice.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from instructir_desktop.inference.executor import CancelCheck
from instructir_desktop.inference.expert_tiling import ExpertTiler, ExpertTiling, free_memory, tile_for_memory
from instructir_desktop.inference.tiling import TileProgress
from instructir_desktop.instructions.interpret import PlanStep
from instructir_desktop.model import ffdnet
from instructir_desktop.model.experts import ExpertNetwork
from instructir_desktop.model.resampling import resize_image
from instructir_desktop.model.store import ModelStore, StoredModel
from instructir_desktop.model.weights import WeightsError

# A x2 network asked for x8 runs three times; more is never worth it.
MAX_PASSES = 3


class ExpertRouter:
    def __init__(self, store: ModelStore | None, forced: StoredModel | None = None) -> None:
        self.store = store
        self.forced = forced
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.tile_size: int | None = None
        self._loaded: dict[str, ExpertNetwork] = {}

    def place(self, device: torch.device, dtype: torch.dtype, tile_size: int | None) -> None:
        """Run experts on ``device``: fp16 on a GPU where the network allows it, else float32."""
        self.device, self.tile_size = device, tile_size
        self.dtype = dtype if device.type != "cpu" else torch.float32
        for expert in self._loaded.values():
            expert.to(self.device, self.dtype)

    def model_for(self, step: PlanStep) -> StoredModel | None:
        """The store's model that runs ``step``; None: the bundled network."""
        if self.store is None:
            return None
        if step.model is not None:
            try:
                chosen = self.store.find(step.model)
            except KeyError as error:
                raise WeightsError(str(error.args[0])) from None
            if step.task not in chosen.tasks:
                raise WeightsError(f"{chosen.name} does not do {step.task} (it does {', '.join(chosen.tasks)})")
            return None if chosen.bundled else chosen
        if self.forced is not None and step.task in self.forced.tasks:
            return None if self.forced.bundled else self.forced
        default = self.store.default_for(step.task)
        return None if default.bundled else default

    def serves_bundled(self, task: str) -> bool:
        return self.model_for(PlanStep(task, 1.0, "")) is None

    def expert(self, model: StoredModel) -> ExpertNetwork:
        if model.id not in self._loaded:
            assert self.store is not None
            self._loaded[model.id] = self.store.load(model).to(self.device, self.dtype)
        return self._loaded[model.id]

    def run(
        self,
        model: StoredModel,
        image: np.ndarray,
        step: PlanStep,
        *,
        progress: Callable[[TileProgress], None] | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """``step`` on an (H, W, 3) float image with ``model``; the result and notices."""
        expert = self.expert(model)
        tile = self.tile_size or tile_for_memory(
            expert, free_memory(self.device), 2 if expert.dtype != torch.float32 else 4
        )
        tiler = ExpertTiler(expert, ExpertTiling(tile))
        tensor = torch.from_numpy(np.require(image, np.float32, ["C", "W"])).permute(2, 0, 1)[None]
        noise_level = None
        if expert.takes_noise_level:
            sigma = ffdnet.sigma_from_words(step.instruction)
            noise_level = (ffdnet.estimate_sigma(tensor) if sigma is None else sigma) / 255.0
        factor = (step.factor or 2) if step.task == "upscale" else 1
        passes = 1
        if expert.scale > 1:
            while expert.scale**passes < factor and passes < MAX_PASSES:
                passes += 1
        for index in range(passes):

            def report(tiles: TileProgress, index: int = index) -> None:
                if progress is not None:
                    fraction = (index + tiles.fraction) / passes
                    progress(TileProgress(tiles.tiles_done, tiles.tiles_total, fraction, tiles.eta_seconds))

            tensor = tiler.restore(tensor, noise_level, progress=report, check_cancel=check_cancel)
        pixels = np.ascontiguousarray(tensor[0].permute(1, 2, 0).clamp(0, 1).numpy())
        if factor > 1 and pixels.shape[0] != image.shape[0] * factor:
            # A larger factor than asked: an antialiased bicubic reduction to the requested size.
            pixels = resize_image(pixels, image.shape[0] * factor, image.shape[1] * factor)
        return pixels, tiler.notices
