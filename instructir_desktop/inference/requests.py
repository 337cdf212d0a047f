"""What the GUI or command line hands the engine, and what comes back: frozen snapshots and events.

No torch here: this module is imported on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.history import PreparedRestoration
from instructir_desktop.instructions.interpret import Interpretation, PlanStep

if TYPE_CHECKING:
    from instructir_desktop.inference.runtime import Runtime


def _frozen(array: np.ndarray | None, dtype: type = np.float32) -> np.ndarray | None:
    """A read-only array the worker can read while the document changes: ``array`` itself when
    it already is one (say from ``Layer.freeze``), else a read-only copy."""
    if array is None:
        return None
    if (
        isinstance(array, np.ndarray)
        and array.dtype == dtype
        and array.flags.c_contiguous
        and array.flags.owndata
        and not array.flags.writeable
    ):
        return array
    copy: np.ndarray = np.array(array, dtype=dtype, copy=True, order="C")
    copy.setflags(write=False)
    return copy


@dataclass(frozen=True)
class EngineSettings:
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp32 | fp16 | bf16
    backend: str = "auto"  # auto (ONNX Runtime on the CPU, torch on a GPU) | torch | onnxruntime
    tile_size: int = 0  # 0 = chosen per device
    model_folder: str | None = None  # None = the bundled model
    weights: str | None = None  # an image-weights file (overrides model_folder)
    text_head: str | None = None
    encoder: str | None = None  # sentence-transformers folder; None = the model's own or the default


@dataclass(frozen=True, eq=False)
class RestoreRequest:
    """Restore ``pixels`` (H, W, 3 float32 in [0, 1]) following ``plan``.

    ``mask`` (H, W) limits the change to a region (feathered values blend); ``preview`` asks for
    a quick low-resolution result of ``preview_bounds`` (or the whole image) before the full one.
    """

    pixels: np.ndarray
    plan: tuple[PlanStep, ...]
    strength: float = 1.0
    mask: np.ndarray | None = None
    alpha: np.ndarray | None = None
    preview: bool = False
    preview_bounds: Bounds | None = None
    revision: int = 0
    label: str = ""
    # Also make the undo step's data (snapped, blended, compressed) on the worker, so that the
    # editor's GUI thread only swaps the result in (see ``history.prepare_restoration``).
    prepare_history: bool = False

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"pixels must be H×W×3, got {pixels.shape}")
        if not self.plan:
            raise ValueError("a restore request needs at least one step")
        if self.mask is not None and np.asarray(self.mask).shape != pixels.shape[:2]:
            raise ValueError("the mask must have the image's height and width")
        if self.mask is not None and any(step.task == "upscale" for step in self.plan):
            raise ValueError("upscaling changes the photo's size, so it applies to the whole photo, not a selection")
        object.__setattr__(self, "pixels", _frozen(pixels))
        object.__setattr__(self, "mask", _frozen(self.mask))
        object.__setattr__(self, "alpha", _frozen(self.alpha))
        object.__setattr__(self, "plan", tuple(self.plan))


@dataclass(frozen=True)
class InterpretRequest:
    text: str
    image_size: tuple[int, int] | None = None  # (height, width), for "upscale to 4K"


class JobContext(Protocol):
    """What a running job may use: report progress, check for cancel, log."""

    def progress(self, fraction: float, message: str = "") -> None: ...

    def check_cancel(self) -> None: ...

    def log(self, message: str) -> None: ...

    def runtime(self) -> Runtime:
        """The loaded restoration model (loading it if needed), for actions that restore."""
        ...


@dataclass(frozen=True)
class ActionRequest:
    """Run any callable on the worker thread (plugin actions); its return value is the result."""

    run: Callable[[JobContext], Any]
    label: str = ""
    revision: int = 0


Request = RestoreRequest | InterpretRequest | ActionRequest


@dataclass
class RestoreResult:
    pixels: np.ndarray  # the blended result for ``bounds`` (the whole image unless masked)
    bounds: Bounds  # where ``pixels`` goes in the (possibly upscaled) image
    original: np.ndarray  # the input under ``bounds`` (resized when upscaled), for re-blending
    restored: np.ndarray  # the full-strength restoration under ``bounds``
    mask: np.ndarray | None  # the mask under ``bounds``
    alpha: np.ndarray | None  # the alpha channel, resized when upscaled
    scale: int  # total upscale factor (1 = same size)
    seconds: float
    device: str
    model_id: str
    step_seconds: tuple[float, ...] = ()
    notices: tuple[str, ...] = ()
    # With ``RestoreRequest.prepare_history`` and no size change: the step ready for
    # ``History.push_prepared``; ``pixels`` is then its array.
    prepared: PreparedRestoration | None = None


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class EngineEvent:
    request_id: int


@dataclass(frozen=True)
class Queued(EngineEvent):
    position: int


@dataclass(frozen=True)
class Started(EngineEvent):
    label: str


@dataclass(frozen=True)
class Progress(EngineEvent):
    fraction: float
    stage: str
    tiles_done: int = 0
    tiles_total: int = 0
    eta_seconds: float | None = None


@dataclass(frozen=True, eq=False)
class Preview(EngineEvent):
    pixels: np.ndarray
    bounds: Bounds
    scale: float  # preview pixels per source pixel


@dataclass(frozen=True, eq=False)
class Finished(EngineEvent):
    result: Any  # RestoreResult | Interpretation | the action's value
    revision: int = 0


@dataclass(frozen=True)
class Cancelled(EngineEvent):
    pass


@dataclass(frozen=True)
class Failed(EngineEvent):
    message: str


@dataclass(frozen=True)
class Notice(EngineEvent):
    message: str


@dataclass(frozen=True)
class EngineStatus:
    device: str
    model_id: str
    model_name: str
    notices: tuple[str, ...] = field(default_factory=tuple)


__all__ = [
    "ActionRequest",
    "Cancelled",
    "EngineEvent",
    "EngineSettings",
    "EngineStatus",
    "Failed",
    "Finished",
    "InterpretRequest",
    "Interpretation",
    "JobContext",
    "Notice",
    "Preview",
    "Progress",
    "Queued",
    "Request",
    "RestoreRequest",
    "RestoreResult",
    "Started",
]
