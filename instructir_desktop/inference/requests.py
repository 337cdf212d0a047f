"""What the GUI or command line hands the engine, and what comes back: frozen snapshots and typed
events. The engine returns pixels and metadata only; what a result does to a document (blending,
undo steps) is decided above it.

No torch here: this module is imported on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Protocol, TypeVar

import numpy as np

from instructir_desktop.core.compositing import blend, composite
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.instructions.intent import DEFAULT_CONFIDENCE_THRESHOLD
from instructir_desktop.instructions.interpret import Interpretation, PlanStep

ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)


def frozen_array(array: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """A read-only array the worker can read while the document changes: ``array`` itself when it
    already is one (say from ``Layer.freeze``), else a read-only copy."""
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


# ----------------------------------------------------------------------------- restoring


@dataclass(frozen=True, eq=False)
class RestoreRequest:
    """Restore ``pixels`` (H, W, 3 float32 in [0, 1]) following ``plan``, at full strength."""

    pixels: np.ndarray
    plan: tuple[PlanStep, ...]
    label: str = ""

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"pixels must be H×W×3, got {pixels.shape}")
        if not self.plan:
            raise ValueError("a restore request needs at least one step")
        object.__setattr__(self, "pixels", frozen_array(pixels))
        object.__setattr__(self, "plan", tuple(self.plan))


@dataclass(frozen=True, eq=False)
class RestoreResult:
    """The full-strength restoration of a request's pixels, and how it was made."""

    restored: np.ndarray  # (H * scale, W * scale, 3)
    scale: int  # total upscale factor (1 = same size)
    seconds: float
    device: str
    model_id: str
    step_seconds: tuple[float, ...] = ()
    notices: tuple[str, ...] = ()  # things the person should know (a smaller tile, a fallback to the CPU)
    # The store's model that ran each step of the plan ("": the bundled network).
    step_models: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class PreviewResult:
    """A quick, low-resolution restoration of part of a photo, shown before the full result."""

    original: np.ndarray  # the part at preview resolution
    restored: np.ndarray  # its full-strength restoration, same size
    mask: np.ndarray | None  # the selection under it, same size (None: everything)
    bounds: Bounds  # the part of the photo it shows
    scale: float  # preview pixels per photo pixel

    def blended(self, strength: float) -> np.ndarray:
        """What the preview shows at ``strength``, changed only through the selection."""
        return composite(self.original, blend(self.original, self.restored, strength), self.mask)


@dataclass(frozen=True)
class RestoreProgress:
    """How far a restoration is: the step of its plan, and the tiles of that step."""

    step_index: int
    step_count: int
    step_fraction: float  # of this step, 0..1
    tiles_done: int = 0
    tiles_total: int = 0
    step_eta_seconds: float | None = None  # left in this step

    @property
    def fraction(self) -> float:
        return (self.step_index + self.step_fraction) / max(1, self.step_count)

    @property
    def stage(self) -> str:
        return f"Step {self.step_index + 1} of {self.step_count}" if self.step_count > 1 else "Restoring"

    @property
    def eta_seconds(self) -> float | None:
        """Left in the whole plan: later steps take about as long as this one (the same number of
        pixels, unless upscaling)."""
        if self.step_eta_seconds is None:
            return None
        later = self.step_count - self.step_index - 1
        per_step = self.step_eta_seconds / max(1e-6, 1.0 - self.step_fraction)
        return float(self.step_eta_seconds + later * per_step)


CancelCheck = Callable[[], None]
ProgressReport = Callable[[RestoreProgress], None]


class RestorationRuntime(Protocol):
    """The loaded models as jobs use them: the real ``runtime.Runtime``, or a test's fake."""

    @property
    def device_description(self) -> str: ...

    @property
    def model_id(self) -> str: ...

    @property
    def model_name(self) -> str: ...

    @property
    def load_notices(self) -> Sequence[str]:
        """What preparing the model's backend had to tell the user (e.g. ONNX Runtime fell back to torch)."""
        ...

    def interpret(
        self, text: str, image_size: tuple[int, int] | None = None, threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    ) -> Interpretation: ...

    def restore(
        self,
        request: RestoreRequest,
        *,
        progress: ProgressReport | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> RestoreResult: ...

    def preview(
        self,
        request: RestoreRequest,
        bounds: Bounds | None,
        mask: np.ndarray | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> PreviewResult: ...


# ----------------------------------------------------------------------------- jobs


class JobContext(Protocol):
    """What a running job may use: report progress and previews, check for cancel, log, restore."""

    def progress(
        self,
        fraction: float,
        stage: str = "",
        *,
        tiles_done: int = 0,
        tiles_total: int = 0,
        eta_seconds: float | None = None,
    ) -> None: ...

    def preview(self, pixels: np.ndarray, bounds: Bounds, scale: float) -> None: ...

    def notice(self, message: str) -> None: ...

    def check_cancel(self) -> None: ...

    def log(self, message: str) -> None: ...

    def runtime(self) -> RestorationRuntime:
        """The loaded restoration model (loading it if needed)."""
        ...


@dataclass(frozen=True)
class InterpretRequest:
    """Read a message with the text model: the result is an ``Interpretation``."""

    text: str
    image_size: tuple[int, int] | None = None  # (height, width), for "upscale to 4K"
    # Guesses below this are offered, not planned (the chat's "ask below" preference).
    confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    label: str = "Reading your request"


@dataclass(frozen=True)
class ActionRequest(Generic[ResultT_co]):
    """Run ``run`` on the worker thread; its return value is the job's result."""

    run: Callable[[JobContext], ResultT_co]
    label: str = ""
    revision: int = 0


Request = InterpretRequest | ActionRequest[object]


class JobState(Enum):
    """Where a job is, as its events tell it."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        return self in (JobState.FINISHED, JobState.CANCELLED, JobState.FAILED)


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
    pixels: np.ndarray  # what the previewed part will look like
    bounds: Bounds  # where it goes in the photo
    scale: float  # preview pixels per photo pixel


@dataclass(frozen=True, eq=False)
class Finished(EngineEvent, Generic[ResultT_co]):
    result: ResultT_co  # an Interpretation, or what the action's ``run`` returned
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


JobEnd = Finished[ResultT] | Cancelled | Failed


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
    "JobEnd",
    "JobState",
    "Notice",
    "Preview",
    "PreviewResult",
    "Progress",
    "Queued",
    "Request",
    "RestorationRuntime",
    "RestoreProgress",
    "RestoreRequest",
    "RestoreResult",
    "Started",
    "frozen_array",
]
