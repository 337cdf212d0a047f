"""Plugin actions as engine jobs: they run on the worker thread with progress and cancel."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from instructir_desktop.inference.engine import JobCancelled
from instructir_desktop.inference.requests import ActionRequest, JobContext
from instructir_desktop.plugins.api import ActionCancelled, PluginError
from instructir_desktop.plugins.host import PluginHost

if TYPE_CHECKING:
    from instructir_desktop.inference.runtime import Runtime


def restore_with_runtime(
    runtime: Runtime,
    image: np.ndarray,
    instruction: str,
    mask: np.ndarray | None,
    progress: Callable[[float, str], None],
    check_cancel: Callable[[], None],
) -> np.ndarray:
    """The full-strength restoration of ``image`` (only the selected area is computed when masked).

    The result is not composited through the mask: the host does that once for every action.
    """
    from instructir_desktop.inference.requests import RestoreRequest

    interpretation = runtime.interpret(instruction, image.shape[:2])
    if not interpretation.steps:
        raise PluginError(interpretation.reply)
    if any(step.task == "upscale" for step in interpretation.steps):
        raise PluginError("upscaling changes the photo's size; ask for it in the chat or use `restore --scale`")
    request = RestoreRequest(image, interpretation.steps, mask=mask, label=instruction)
    result = runtime.restore(request, progress=lambda p: progress(p.fraction, "Restoring"), check_cancel=check_cancel)
    restored = np.array(image, dtype=np.float32, copy=True)
    restored[result.bounds.slices] = result.restored
    return restored


class _PluginContext:
    """The engine's job context in the plugin API's terms (its own cancel exception)."""

    def __init__(self, job: JobContext) -> None:
        self._job = job

    def progress(self, fraction: float, message: str = "") -> None:
        self._job.progress(fraction, message)

    def check_cancel(self) -> None:
        try:
            self._job.check_cancel()
        except JobCancelled:
            raise ActionCancelled() from None

    def log(self, message: str) -> None:
        self._job.log(message)

    def restore(self, image: np.ndarray, instruction: str, mask: np.ndarray | None = None) -> np.ndarray:
        try:
            return restore_with_runtime(
                self._job.runtime(), image, instruction, mask, self._job.progress, self.check_cancel
            )
        except JobCancelled:
            raise ActionCancelled() from None


class StandaloneContext:
    """A context outside the engine (the command line): the runtime is loaded on first restore."""

    def __init__(self, load_runtime: Callable[[], Runtime], report: Callable[[float, str], None] | None = None):
        self._load_runtime = load_runtime
        self._runtime: Runtime | None = None
        self._report = report
        self.messages: list[str] = []

    def progress(self, fraction: float, message: str = "") -> None:
        if self._report is not None:
            self._report(fraction, message)

    def check_cancel(self) -> None:
        return None

    def log(self, message: str) -> None:
        self.messages.append(message)

    def restore(self, image: np.ndarray, instruction: str, mask: np.ndarray | None = None) -> np.ndarray:
        if self._runtime is None:
            self._runtime = self._load_runtime()
        return restore_with_runtime(self._runtime, image, instruction, mask, self.progress, self.check_cancel)


def plugin_request(
    host: PluginHost,
    action_id: str,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    params: Mapping[str, Any] | None = None,
    revision: int = 0,
) -> ActionRequest:
    """A snapshot job: the pixels are copied now, so later edits of the document cannot leak in.

    Parameters are checked here, on the caller's thread, so a typo is reported at once.
    """
    action = host.action(action_id)
    values = action.resolve_params(params or {})
    pixels = np.array(image, dtype=np.float32, copy=True)
    selection = None if mask is None else np.array(mask, dtype=np.float32, copy=True)

    def run(job: JobContext) -> np.ndarray:
        try:
            return host.run(action_id, pixels, selection, values, _PluginContext(job))
        except ActionCancelled:
            raise JobCancelled() from None

    return ActionRequest(run=run, label=action.title, revision=revision)
