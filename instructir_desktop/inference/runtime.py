"""The loaded models on one device and the restoration of one plan on one image.

Only the engine's worker thread (or a command-line process) creates and uses a Runtime.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference.backends import PrepareProgress, prepare_instructir, resolve_backend
from instructir_desktop.inference.devices import (
    configure_cpu_allocator,
    default_tile_size,
    is_out_of_memory,
    release_cpu_memory,
    resolve_device,
    resolve_dtype,
)
from instructir_desktop.inference.expert_routing import ExpertRouter
from instructir_desktop.inference.requests import (
    CancelCheck,
    EngineSettings,
    PreviewResult,
    ProgressReport,
    RestoreProgress,
    RestoreRequest,
    RestoreResult,
)
from instructir_desktop.inference.tiling import TiledRestorer, TileProgress, TilingSettings, tiling_for_memory
from instructir_desktop.instructions.intent import DEFAULT_CONFIDENCE_THRESHOLD
from instructir_desktop.instructions.interpret import Interpretation, Interpreter, PlanStep, compose_caveat
from instructir_desktop.model.registry import (
    LoadedModel,
    default_model_spec,
    load_lexical,
    load_model,
    load_text_head,
    spec_from_files,
    spec_from_folder,
    weak_tasks,
)
from instructir_desktop.model.resampling import resize_image, resize_plane
from instructir_desktop.model.store import ModelStore, StoredModel
from instructir_desktop.model.tasks import TASK_TITLES
from instructir_desktop.model.text import InstructionEncoder, SentenceEncoder, SentenceTransformerEncoder
from instructir_desktop.model.weights import WeightsError

MIN_TILE = 128
PREVIEW_PIXELS = 300_000
# A preview costs at most this share of the full restoration's pixels, so showing one first never
# makes the whole run noticeably slower than the command line's (which shows none).
PREVIEW_SHARE = 0.05
# ...but never fewer pixels than this, or a preview of a small photo is a smudge.
PREVIEW_FLOOR = 65_536


class Runtime:
    def __init__(
        self,
        model: LoadedModel,
        encoder: SentenceEncoder,
        device: torch.device,
        dtype: torch.dtype,
        tile_size: int | None = None,
        *,
        backend: str = "auto",
        progress: PrepareProgress | None = None,
        store: ModelStore | None = None,
        forced_model: StoredModel | None = None,
    ) -> None:
        self.model = model
        # Which network runs each step: the task's default in the store, or ``forced_model``.
        self.router = ExpertRouter(store, forced_model)
        self.instruction_encoder = InstructionEncoder(encoder, model.head, lexical=model.lexical)
        self.interpreter = Interpreter(self.instruction_encoder, model.classes)
        self.notices: list[str] = []
        # What preparing the backend had to say (say, ONNX Runtime export failed, torch runs it).
        self.load_notices: list[str] = []
        self.backend_request = backend
        self._set_device(device, dtype, tile_size, progress)

    def _set_device(
        self, device: torch.device, dtype: torch.dtype, tile_size: int | None, progress: PrepareProgress | None = None
    ) -> None:
        if device.type == "cpu":
            configure_cpu_allocator()
        self.device = device
        self.dtype = dtype
        backend = resolve_backend(self.backend_request, device)
        prepared = prepare_instructir(self.model.network, backend, device, dtype, progress=progress)
        self.load_notices.extend(prepared.notices)
        self.executor = prepared.runner
        self.router.place(device, dtype, tile_size)
        tile = tile_size or self.executor.preferred_tile or default_tile_size(device)
        self.tiling = tiling_for_memory(self._tile_side(tile), self.model.network.config.width)

    def _tile_side(self, tile: int) -> int:
        """``tile`` rounded down to what the network takes (sides in multiples of its size multiple:
        16 for the published network, 32 or 64 with a pixel-unshuffle stem), at least MIN_TILE."""
        multiple = self.model.network.config.size_multiple
        return max(-(-MIN_TILE // multiple) * multiple, tile // multiple * multiple)

    @property
    def device_description(self) -> str:
        return self.executor.description

    @property
    def model_id(self) -> str:
        return self.model.spec.id

    @property
    def model_name(self) -> str:
        return self.model.spec.name

    def interpret(
        self, text: str, image_size: tuple[int, int] | None = None, threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    ) -> Interpretation:
        """The plan for ``text``; the reply also says when the model barely does a planned step."""
        interpretation = self.interpreter.interpret(text, image_size, threshold)
        # A task another model serves is not the bundled model's weakness.
        weak = {task: gain for task, gain in weak_tasks(self.model.spec).items() if self.router.serves_bundled(task)}
        caveat = compose_caveat(interpretation.steps, weak)
        return dataclasses.replace(interpretation, reply=interpretation.reply + caveat) if caveat else interpretation

    def restore_step(
        self,
        image: np.ndarray,
        step: PlanStep,
        *,
        progress: Callable[[TileProgress], None] | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> np.ndarray:
        """One step on an (H, W, 3) float image; an upscale step returns the larger image. The step
        runs on its task's model: an expert from the store, or the bundled network."""
        expert = self.router.model_for(step)
        if expert is not None:
            restored, notices = self.router.run(expert, image, step, progress=progress, check_cancel=check_cancel)
            self.notices.extend(notices)
            return restored
        if step.task == "upscale":
            factor = step.factor or 2
            image = resize_image(image, image.shape[0] * factor, image.shape[1] * factor)
        return self.run_network(image, step.instruction, progress=progress, check_cancel=check_cancel)

    def run_network(
        self,
        image: np.ndarray,
        instruction: str,
        *,
        progress: Callable[[TileProgress], None] | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> np.ndarray:
        """The network conditioned on ``instruction``, tiled, on an (H, W, 3) float image."""
        embedding = torch.from_numpy(self.instruction_encoder.encode_one(instruction).embedding)
        tensor = torch.from_numpy(np.require(image, np.float32, ["C", "W"])).permute(2, 0, 1)[None]
        while True:
            conditioning = self.executor.condition(embedding)
            restorer = TiledRestorer(self.executor, self.tiling)
            try:
                restored = restorer.restore(tensor, conditioning, progress=progress, check_cancel=check_cancel)
                break
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                self._recover_from_out_of_memory()
        with torch.inference_mode():  # the executor's output is an inference tensor
            pixels = restored[0].permute(1, 2, 0)
            pixels.clamp_(0, 1)
        return np.ascontiguousarray(pixels.numpy())

    def _recover_from_out_of_memory(self) -> None:
        """Halve the tile; below the smallest tile, move from the GPU to the CPU; else give up."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.tiling.tile // 2 >= MIN_TILE:
            self.tiling = TilingSettings(
                tile=self._tile_side(self.tiling.tile // 2),
                overlap=self.tiling.overlap,
                exact_statistics_pixels=self.tiling.exact_statistics_pixels // 4,
                statistics_sample_pixels=max(MIN_TILE * MIN_TILE, self.tiling.statistics_sample_pixels // 4),
                whole_image_pixels=0,  # the one-pass attempt is what ran out first
            )
            self.notices.append(f"Out of memory: continuing with {self.tiling.tile}-pixel tiles.")
            return
        if self.device.type != "cpu":
            self.notices.append("Out of memory on the GPU even with small tiles: continuing on the CPU.")
            self._set_device(torch.device("cpu"), torch.float32, None)
            return
        raise MemoryError("not enough memory to restore this photo, even in small tiles; close other programs")

    def restore(
        self,
        request: RestoreRequest,
        *,
        progress: ProgressReport | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> RestoreResult:
        """Every step of the plan on the request's pixels, at full strength."""
        started = time.perf_counter()
        self.notices = []
        current = np.array(request.pixels, dtype=np.float32)
        step_seconds = []
        used: list[StoredModel | None] = []
        count = len(request.plan)
        for index, step in enumerate(request.plan):
            step_started = time.perf_counter()

            def report(tiles: TileProgress, index: int = index) -> None:
                if progress is not None:
                    progress(
                        RestoreProgress(
                            index, count, tiles.fraction, tiles.tiles_done, tiles.tiles_total, tiles.eta_seconds
                        )
                    )

            expert = self.router.model_for(step)
            used.append(expert)
            current = self.restore_step(current, step, progress=report, check_cancel=check_cancel)
            if expert is not None:
                self.notices.append(f"{TASK_TITLES[step.task]} ran on {expert.label}.")
            step_seconds.append(time.perf_counter() - step_started)
        if self.device.type == "cpu":
            release_cpu_memory()
        return RestoreResult(
            restored=current,
            scale=current.shape[0] // request.pixels.shape[0],
            seconds=time.perf_counter() - started,
            device=self.device_description,
            model_id="+".join(dict.fromkeys(self.model_id if model is None else model.id for model in used)),
            step_seconds=tuple(step_seconds),
            notices=tuple(self.notices),
            step_models=tuple("" if model is None else model.id for model in used),
        )

    def preview(
        self,
        request: RestoreRequest,
        bounds: Bounds | None,
        mask: np.ndarray | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> PreviewResult:
        """A quick restoration of ``bounds`` (default: everything) at no more than PREVIEW_PIXELS,
        and no more than PREVIEW_SHARE of the whole image. It shows the restoration, not an
        enlargement: upscale steps are left out."""
        height, width = request.pixels.shape[:2]
        region = (bounds or Bounds.of_image(height, width)).intersect(Bounds.of_image(height, width))
        crop = np.asarray(request.pixels[region.slices], dtype=np.float32)
        budget = min(PREVIEW_PIXELS, max(PREVIEW_FLOOR, PREVIEW_SHARE * height * width))
        scale = min(1.0, (budget / max(1, region.area)) ** 0.5)
        small = resize_image(crop, max(16, round(crop.shape[0] * scale)), max(16, round(crop.shape[1] * scale)))
        original = small
        for step in request.plan:
            if step.task != "upscale":
                small = self.restore_step(small, step, check_cancel=check_cancel)
        small_mask = None
        if mask is not None:
            small_mask = resize_plane(np.asarray(mask[region.slices], dtype=np.float32), *small.shape[:2])
        return PreviewResult(original, small, small_mask, region, scale)


def load_runtime(
    settings: EngineSettings, encoder: SentenceEncoder | None = None, progress: PrepareProgress | None = None
) -> Runtime:
    """Load the model the settings name (the bundled one by default) onto the chosen device and
    backend; ``progress`` hears about a first-time export for ONNX Runtime."""
    store = ModelStore()
    forced: StoredModel | None = None
    if settings.weights:
        spec = spec_from_files(settings.weights, settings.text_head)
    elif settings.model_folder and Path(settings.model_folder).is_dir():
        spec = spec_from_folder(settings.model_folder)
    else:
        spec = default_model_spec()
        if settings.model_folder:  # not a folder: a model from the store, by id or name
            try:
                forced = store.find(settings.model_folder)
            except KeyError as error:
                raise WeightsError(
                    f"{settings.model_folder}: neither a model folder nor a model in the store "
                    "(`instructir-desktop models list` shows them)"
                ) from error

    model = load_model(spec)
    if encoder is None:
        encoder = SentenceTransformerEncoder(settings.encoder or spec.encoder)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(device, settings.precision)
    return Runtime(
        model,
        encoder,
        device,
        dtype,
        settings.tile_size or None,
        backend=settings.backend,
        progress=progress,
        store=store,
        forced_model=forced,
    )


def load_interpreter(
    text_head: str | None = None, encoder_folder: str | None = None, encoder: SentenceEncoder | None = None
) -> Interpreter:
    """Only what reading instructions needs (encoder, text head and the bundled model's n-gram
    decision), without the image network. A ``text_head`` given by hand decides alone."""
    lexical = None
    if text_head:
        head, classes = load_text_head(text_head)
        default_encoder = None
    else:
        spec = default_model_spec()
        if spec.text_head is None:
            raise WeightsError(f"{spec.name}: no text head file; pass --text-head FILE")
        head, classes = load_text_head(spec.text_head, spec.classes)
        lexical = load_lexical(spec.lexical, classes)
        default_encoder = spec.encoder
    if encoder is None:
        encoder = SentenceTransformerEncoder(encoder_folder or default_encoder)
    return Interpreter(InstructionEncoder(encoder, head, lexical=lexical), classes)
