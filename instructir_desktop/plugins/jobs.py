"""Plugin actions as engine jobs: they run on the worker thread with progress and cancel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from instructir_desktop.inference.engine import JobCancelled
from instructir_desktop.inference.requests import ActionRequest, JobContext
from instructir_desktop.plugins.api import ActionCancelled
from instructir_desktop.plugins.host import PluginHost


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
