"""A fake engine for the UI tests: the EngineInterface contract, no torch, instant and scriptable.

Events are emitted synchronously on the caller's thread (the bridge must still deliver them later,
queued) or, with ``threaded=True``, from a worker thread like the real engine. ``hold=True`` keeps
restores "running" after a first progress event until the test calls ``release`` (or cancels).
A restore asked for a preview (``RestoreRequest.preview``) first answers with a Preview event of
``preview_bounds`` at half resolution, as the real engine does in the same job.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable

import numpy as np

from instructir_desktop.core.compositing import blend, composite
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.history import Restoration, prepare_restoration
from instructir_desktop.inference.requests import (
    ActionRequest,
    Cancelled,
    EngineEvent,
    EngineSettings,
    EngineStatus,
    Failed,
    Finished,
    InterpretRequest,
    Preview,
    Progress,
    Queued,
    Request,
    RestoreRequest,
    RestoreResult,
    Started,
)
from instructir_desktop.instructions.interpret import (
    CAPABILITIES_REPLY,
    Interpretation,
    PlanStep,
    compose_reply,
    split_clauses,
)

KEYWORDS = (
    ("noise|grain", "denoise"),
    ("dark|bright", "lowlight"),
    ("rain", "derain"),
    ("blur|sharp", "deblur"),
    ("haze|fog", "dehaze"),
    ("colou?r|pop", "enhance"),
    ("upscale|larger", "upscale"),
)


def fake_interpret(text: str) -> Interpretation:
    steps: list[PlanStep] = []
    ignored = []
    for clause in split_clauses(text):
        for pattern, task in KEYWORDS:
            if re.search(pattern, clause, re.IGNORECASE):
                steps.append(PlanStep(task, 0.87, clause, 2 if task == "upscale" else None))
                break
        else:
            ignored.append(clause)
    reply = compose_reply(steps, ignored) if steps or ignored else CAPABILITIES_REPLY
    return Interpretation(text, tuple(steps), tuple(ignored), reply)


def fake_restore(request: RestoreRequest) -> RestoreResult:
    """Darkens to half, so a test can tell restored pixels apart; upscales by repeating pixels."""
    original = np.array(request.pixels, dtype=np.float32)
    scale = 1
    for step in request.plan:
        if step.task == "upscale":
            scale *= step.factor or 2
    if scale > 1:
        original = np.repeat(np.repeat(original, scale, axis=0), scale, axis=1)
    restored = original * 0.5
    pixels = blend(original, restored, request.strength)
    mask = None if request.mask is None else np.array(request.mask, dtype=np.float32)
    if mask is not None:
        pixels = composite(original, pixels, mask)
    alpha = request.alpha
    if alpha is not None and scale > 1:
        alpha = np.repeat(np.repeat(alpha, scale, axis=0), scale, axis=1)
    height, width = original.shape[:2]
    prepared = None
    if request.prepare_history and scale == 1:  # as the real runtime does
        prepared = prepare_restoration(request.pixels, Restoration(original, restored, mask, request.strength))
        pixels = prepared.pixels
    return RestoreResult(
        prepared=prepared,
        pixels=pixels,
        bounds=Bounds.of_image(height, width),
        original=original,
        restored=restored,
        mask=mask,
        alpha=None if alpha is None else np.array(alpha),
        scale=scale,
        seconds=0.25,
        device="fake device",
        model_id="fake-model",
    )


def fake_preview(request: RestoreRequest) -> Preview:
    """What ``fake_restore`` will give for ``preview_bounds``, at half resolution (scale 0.5)."""
    height, width = request.pixels.shape[:2]
    whole = Bounds.of_image(height, width)
    region = whole if request.preview_bounds is None else request.preview_bounds.intersect(whole)
    original = np.array(request.pixels[region.slices][::2, ::2], dtype=np.float32)
    pixels = blend(original, original * 0.5, request.strength)
    if request.mask is not None:
        pixels = composite(original, pixels, np.asarray(request.mask[region.slices][::2, ::2], dtype=np.float32))
    return Preview(0, pixels, region, 0.5)


class _FakeJobContext:
    def progress(self, fraction: float, message: str = "") -> None:
        pass

    def check_cancel(self) -> None:
        pass

    def log(self, message: str) -> None:
        pass


class FakeEngine:
    def __init__(self, *, threaded: bool = False, hold: bool = False) -> None:
        self.threaded = threaded
        self.hold = hold
        self.listeners: list[Callable[[EngineEvent], None]] = []
        self.requests: dict[int, Request] = {}
        self.cancelled: set[int] = set()
        self.held: set[int] = set()
        self.fail_with: str | None = None  # the next restore fails with this message
        self.interpret: Callable[[str], Interpretation] = fake_interpret
        self.restore: Callable[[RestoreRequest], RestoreResult] = fake_restore
        self.previews: list[Preview] = []  # every Preview event sent
        self.status: EngineStatus | None = None
        self.closed = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ EngineInterface

    def add_listener(self, listener: Callable[[EngineEvent], None]) -> None:
        self.listeners.append(listener)

    def submit(self, request: Request) -> int:
        request_id = next(self._ids)
        self.requests[request_id] = request
        self._emit(Queued(request_id, 0))
        if self.threaded:
            thread = threading.Thread(target=self._run, args=(request_id,), daemon=True)
            self._threads.append(thread)
            thread.start()
        else:
            self._run(request_id)
        return request_id

    def cancel(self, request_id: int | None = None) -> None:
        with self._lock:
            ids = list(self.requests) if request_id is None else [request_id]
            self.cancelled.update(ids)
            stopped = [i for i in ids if i in self.held]
            self.held.difference_update(stopped)
        for stopped_id in stopped:
            self._emit(Cancelled(stopped_id))

    def configure(self, settings: EngineSettings) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True
        self.cancel()
        for thread in self._threads:
            thread.join(timeout)

    # ------------------------------------------------------------------ test controls

    def release(self, request_id: int) -> None:
        """Let a held restore finish."""
        with self._lock:
            if request_id not in self.held:
                return
            self.held.discard(request_id)
        self._complete(request_id)

    def restore_ids(self) -> list[int]:
        return [i for i, r in self.requests.items() if isinstance(r, RestoreRequest)]

    # ------------------------------------------------------------------ "worker"

    def _emit(self, event: EngineEvent) -> None:
        for listener in list(self.listeners):
            listener(event)

    def _run(self, request_id: int) -> None:
        request = self.requests[request_id]
        if request_id in self.cancelled:
            self._emit(Cancelled(request_id))
            return
        self._emit(Started(request_id, type(request).__name__))
        if isinstance(request, InterpretRequest):
            self._emit(Finished(request_id, self.interpret(request.text)))
            return
        if isinstance(request, ActionRequest):  # plugin actions run as they would on the worker
            try:
                result = request.run(_FakeJobContext())
            except Exception as error:  # like the real engine: a failure is an event, not a crash
                self._emit(Failed(request_id, str(error).splitlines()[0] if str(error) else type(error).__name__))
                return
            self._emit(Finished(request_id, result, request.revision))
            return
        if isinstance(request, RestoreRequest) and request.preview:
            preview = fake_preview(request)
            preview = Preview(request_id, preview.pixels, preview.bounds, preview.scale)
            self.previews.append(preview)
            self._emit(preview)
        self._emit(Progress(request_id, 0.5, "Restoring", 1, 2, 3.0))
        if self.hold:
            with self._lock:
                self.held.add(request_id)
            return
        self._complete(request_id)

    def _complete(self, request_id: int) -> None:
        request = self.requests[request_id]
        assert isinstance(request, RestoreRequest)
        if self.fail_with is not None:
            message, self.fail_with = self.fail_with, None
            self._emit(Failed(request_id, message))
            return
        result = self.restore(request)
        self.status = EngineStatus("fake device", "fake-model", "Fake model")
        self._emit(Progress(request_id, 1.0, "Restoring", 2, 2, 0.0))
        self._emit(Finished(request_id, result, request.revision))
