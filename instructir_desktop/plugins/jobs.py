"""Where an action's context comes from: the editor's engine worker, or the command line's process.

Both hand ``PluginHost.execute`` the same services; only where progress goes and where the model
lives differ. ``action_request`` wraps one ``execute`` call as an engine job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference.engine import JobCancelled
from instructir_desktop.inference.requests import (
    ActionRequest,
    CancelCheck,
    JobContext,
    PreviewResult,
    RestorationRuntime,
    RestoreProgress,
    RestoreRequest,
    RestoreResult,
)
from instructir_desktop.instructions.interpret import Interpretation, PlanStep
from instructir_desktop.plugins.api import ActionCancelled, PluginError
from instructir_desktop.plugins.host import PluginHost
from instructir_desktop.plugins.outcome import ActionInput, ActionOutcome

ThenT = TypeVar("ThenT")


def _checked_plan(plan: Sequence[PlanStep]) -> tuple[PlanStep, ...]:
    if not plan:
        raise PluginError("a plan needs at least one step")
    return tuple(plan)


class RuntimeServices:
    """Services backed by a loaded runtime, for running actions in this process (the command line).

    The runtime is loaded when an action first asks for the model; progress goes to ``report`` as
    (fraction, seconds left or None).
    """

    def __init__(
        self,
        load_runtime: Callable[[], RestorationRuntime],
        report: Callable[[float, float | None], None] | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> None:
        self._load_runtime = load_runtime
        self._runtime: RestorationRuntime | None = None
        self._report = report
        self._check_cancel = check_cancel
        self.messages: list[str] = []
        self.notices: list[str] = []

    def runtime(self) -> RestorationRuntime:
        if self._runtime is None:
            self._runtime = self._load_runtime()
        return self._runtime

    def progress(
        self,
        fraction: float,
        message: str = "",
        *,
        tiles_done: int = 0,
        tiles_total: int = 0,
        eta_seconds: float | None = None,
    ) -> None:
        if self._report is not None:
            self._report(fraction, eta_seconds)

    def show_preview(self, pixels: np.ndarray, bounds: Bounds, scale: float) -> None:
        return None  # nobody is looking

    def notice(self, message: str) -> None:
        self.notices.append(message)

    def check_cancel(self) -> None:
        if self._check_cancel is not None:
            self._check_cancel()

    def log(self, message: str) -> None:
        self.messages.append(message)

    def interpret(self, instruction: str, image_size: tuple[int, int] | None = None) -> Interpretation:
        return self.runtime().interpret(instruction, image_size)

    def restore_plan(self, image: np.ndarray, plan: Sequence[PlanStep]) -> RestoreResult:
        report = self._report
        result = self.runtime().restore(
            RestoreRequest(image, _checked_plan(plan)),
            progress=None if report is None else (lambda progress: report(progress.fraction, progress.eta_seconds)),
            check_cancel=self._check_cancel,
        )
        self.notices.extend(result.notices)  # which model ran a step, a smaller tile: the terminal says so
        return result

    def preview_plan(
        self, image: np.ndarray, plan: Sequence[PlanStep], bounds: Bounds | None, mask: np.ndarray | None = None
    ) -> PreviewResult:
        return self.runtime().preview(RestoreRequest(image, _checked_plan(plan)), bounds, mask, self._check_cancel)


class EngineServices:
    """Services of a job on the engine's worker: progress, previews and notices become engine
    events, cancel is the job's, and the model is the engine's."""

    def __init__(self, job: JobContext) -> None:
        self._job = job

    def progress(
        self,
        fraction: float,
        message: str = "",
        *,
        tiles_done: int = 0,
        tiles_total: int = 0,
        eta_seconds: float | None = None,
    ) -> None:
        self._job.progress(fraction, message, tiles_done=tiles_done, tiles_total=tiles_total, eta_seconds=eta_seconds)

    def show_preview(self, pixels: np.ndarray, bounds: Bounds, scale: float) -> None:
        self._job.preview(pixels, bounds, scale)

    def notice(self, message: str) -> None:
        self._job.notice(message)

    def check_cancel(self) -> None:
        try:
            self._job.check_cancel()
        except JobCancelled:
            raise ActionCancelled() from None

    def log(self, message: str) -> None:
        self._job.log(message)

    def interpret(self, instruction: str, image_size: tuple[int, int] | None = None) -> Interpretation:
        return self._job.runtime().interpret(instruction, image_size)

    def restore_plan(self, image: np.ndarray, plan: Sequence[PlanStep]) -> RestoreResult:
        def report(progress: RestoreProgress) -> None:
            self.progress(
                progress.fraction,
                progress.stage,
                tiles_done=progress.tiles_done,
                tiles_total=progress.tiles_total,
                eta_seconds=progress.eta_seconds,
            )

        result = self._job.runtime().restore(
            RestoreRequest(image, _checked_plan(plan)), progress=report, check_cancel=self.check_cancel
        )
        for notice in result.notices:
            self.notice(notice)
        return result

    def preview_plan(
        self, image: np.ndarray, plan: Sequence[PlanStep], bounds: Bounds | None, mask: np.ndarray | None = None
    ) -> PreviewResult:
        self.progress(0.0, "Preview…")
        return self._job.runtime().preview(RestoreRequest(image, _checked_plan(plan)), bounds, mask, self.check_cancel)


def action_request(
    host: PluginHost,
    action_id: str,
    given: ActionInput,
    params: Mapping[str, object] | None = None,
    *,
    then: Callable[[ActionOutcome], ThenT],
    label: str = "",
    revision: int = 0,
) -> ActionRequest[ThenT]:
    """One ``host.execute`` call as an engine job, followed on the worker by ``then`` (say, making
    the undo step ready), whose value is the job's result.

    The parameters are checked now, on the caller's thread, so a typo is reported at once; the
    input is used as given (a frozen layer is shared with the worker, not copied).
    """
    action = host.action(action_id)
    values = action.resolve_params(params or {})

    def run(job: JobContext) -> ThenT:
        try:
            outcome = host.execute(action_id, given, values, EngineServices(job))
            job.check_cancel()
            return then(outcome)
        except ActionCancelled:
            raise JobCancelled() from None

    return ActionRequest(run=run, label=label or action.title, revision=revision)
