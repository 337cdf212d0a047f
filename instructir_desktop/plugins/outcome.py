"""What goes into ``PluginHost.execute`` and what comes out, for every action alike (the built-in
restore action included), and the context an action sees while it runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from instructir_desktop.core.compositing import blend, composite
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference.requests import PreviewResult, RestoreResult
from instructir_desktop.instructions.interpret import Interpretation, PlanStep
from instructir_desktop.plugins.api import HostServices, NothingToDo, Plan, PluginError


@dataclass(frozen=True, eq=False)
class ActionInput:
    """The image an action runs on, as the caller snapshot it."""

    image: np.ndarray  # (H, W, 3) float32 in [0, 1]; read-only arrays are used as they are
    mask: np.ndarray | None = None  # (H, W) feathered selection; None: the whole image
    alpha: np.ndarray | None = None  # (H, W), enlarged with the image when the action enlarges it
    # The part of the image the person is looking at, when a quick preview of it is wanted first.
    preview_bounds: Bounds | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.image)
        if len(shape) != 3 or shape[2] != 3:
            raise PluginError(f"the image must be H×W×3, got {shape}")
        for name, plane in (("mask", self.mask), ("alpha", self.alpha)):
            if plane is not None and np.shape(plane) != shape[:2]:
                raise PluginError(f"the {name} must have the image's height and width")


@dataclass(frozen=True, eq=False)
class ActionOutcome:
    """What an action did to ``bounds`` of its image: enough to show it, write it, or keep it as an
    undo step that can be re-blended at another strength later."""

    action_id: str
    bounds: Bounds  # the part of the image that may change (image coordinates, before enlarging)
    original: np.ndarray  # the image under ``bounds`` (enlarged when ``scale`` > 1)
    result: np.ndarray  # the action's full-strength output there, same shape
    mask: np.ndarray | None  # the selection under ``bounds`` (None: all of it)
    strength: float
    scale: int  # the enlargement (1: same size)
    alpha: np.ndarray | None  # the whole image's alpha, enlarged when ``scale`` > 1
    seconds: float
    tasks: tuple[str, ...] = ()
    plan: Plan = ()
    model_id: str = ""
    device: str = ""
    notices: tuple[str, ...] = ()

    @property
    def output_bounds(self) -> Bounds:
        """``bounds`` in the output image (which is larger when the action enlarged it)."""
        return self.bounds.scaled(self.scale)

    @cached_property
    def pixels(self) -> np.ndarray:
        """What ``output_bounds`` shows: the output at ``strength``, through the selection."""
        return composite(self.original, blend(self.original, self.result, self.strength), self.mask)

    def applied_to(self, image: np.ndarray) -> np.ndarray:
        """The whole output image, given the image the action ran on."""
        if self.scale != 1 or self.bounds == Bounds.of_image(*np.shape(image)[:2]):
            return self.pixels
        output = np.array(image, dtype=np.float32, copy=True)
        output[self.bounds.slices] = self.pixels
        return output


def shifted(bounds: Bounds, by: Bounds) -> Bounds:
    """``bounds`` given relative to ``by``'s corner, in the coordinates ``by`` is given in."""
    return Bounds(bounds.x + by.x, bounds.y + by.y, bounds.width, bounds.height)


class HostContext:
    """The ``ActionContext`` an action gets: the caller's services, seen from the part of the image
    the action was given (``region``: the selection and its surroundings, or everything)."""

    def __init__(self, services: HostServices, region: Bounds, preview_bounds: Bounds | None) -> None:
        self._services = services
        self._region = region
        visible = None if preview_bounds is None else preview_bounds.intersect(region)
        self._preview_bounds = None if visible is None or visible.empty else visible.relative_to(region)

    @property
    def preview_bounds(self) -> Bounds | None:
        return self._preview_bounds

    def progress(
        self,
        fraction: float,
        message: str = "",
        *,
        tiles_done: int = 0,
        tiles_total: int = 0,
        eta_seconds: float | None = None,
    ) -> None:
        self._services.progress(
            fraction, message, tiles_done=tiles_done, tiles_total=tiles_total, eta_seconds=eta_seconds
        )

    def show_preview(self, pixels: np.ndarray, bounds: Bounds, scale: float) -> None:
        self._services.show_preview(pixels, shifted(bounds, self._region), scale)

    def notice(self, message: str) -> None:
        self._services.notice(message)

    def check_cancel(self) -> None:
        self._services.check_cancel()

    def log(self, message: str) -> None:
        self._services.log(message)

    def interpret(self, instruction: str, image_size: tuple[int, int] | None = None) -> Interpretation:
        return self._services.interpret(instruction, image_size)

    def restore_plan(self, image: np.ndarray, plan: Sequence[PlanStep]) -> RestoreResult:
        return self._services.restore_plan(image, plan)

    def preview_plan(
        self, image: np.ndarray, plan: Sequence[PlanStep], bounds: Bounds | None, mask: np.ndarray | None = None
    ) -> PreviewResult:
        return self._services.preview_plan(image, plan, bounds, mask)

    def restore(self, image: np.ndarray, instruction: str, mask: np.ndarray | None = None) -> np.ndarray:
        plan = self.interpret(instruction, image.shape[:2])
        if not plan.steps:
            raise NothingToDo(plan.reply)
        if any(step.task == "upscale" for step in plan.steps):
            raise PluginError("upscaling changes the photo's size; run it with restore_plan (or `restore --scale`)")
        return self.restore_plan(image, plan.steps).restored
