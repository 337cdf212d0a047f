"""A fake engine for editing and UI tests: the EngineInterface contract, no torch, instant and
scriptable, running jobs the way the real engine does (plugin actions through ``request.run`` with a
job context whose model is ``FakeRuntime``).

Events are emitted synchronously on the caller's thread (the engine client must still deliver them
later, in order) or, with ``threaded=True``, from a worker thread like the real engine. ``hold=True``
keeps restorations "running" after a first progress event until the test calls ``release`` (or
cancels); held jobs always run on a thread of their own. A restoration asked for a preview first
answers with a Preview event of the visible area at half resolution, as the real action does.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable

import numpy as np

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference.engine import JobCancelled
from instructir_desktop.inference.requests import (
    ActionRequest,
    CancelCheck,
    Cancelled,
    EngineEvent,
    EngineSettings,
    EngineStatus,
    Failed,
    Finished,
    InterpretRequest,
    Notice,
    Preview,
    PreviewResult,
    Progress,
    ProgressReport,
    Queued,
    Request,
    RestoreProgress,
    RestoreRequest,
    RestoreResult,
    Started,
)
from instructir_desktop.instructions.intent import DEFAULT_CONFIDENCE_THRESHOLD, gate
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


def fake_restore(request: RestoreRequest) -> np.ndarray:
    """Darkens to half, so a test can tell restored pixels apart; upscales by repeating pixels."""
    restored = np.array(request.pixels, dtype=np.float32) * 0.5
    for step in request.plan:
        if step.task == "upscale":
            factor = step.factor or 2
            restored = np.repeat(np.repeat(restored, factor, axis=0), factor, axis=1)
    return restored


class FakeRuntime:
    """The model as one job sees it: darkens to half (``engine.restore``), holds when asked."""

    device_description = "fake device"
    model_id = "fake-model"
    model_name = "Fake model"
    load_notices: tuple[str, ...] = ()

    def __init__(self, engine: FakeEngine, request_id: int) -> None:
        self._engine = engine
        self._request_id = request_id

    def interpret(
        self, text: str, image_size: tuple[int, int] | None = None, threshold: float = DEFAULT_CONFIDENCE_THRESHOLD
    ) -> Interpretation:
        return gate(self._engine.interpret(text), threshold)

    def restore(
        self,
        request: RestoreRequest,
        *,
        progress: ProgressReport | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> RestoreResult:
        engine = self._engine
        engine.restored_ids.append(self._request_id)
        if progress is not None:
            progress(RestoreProgress(0, 1, 0.5, 1, 2, 3.0))
        if engine.hold:
            engine._wait_while_held(self._request_id)
        if check_cancel is not None:
            check_cancel()
        if engine.fail_with is not None:
            message, engine.fail_with = engine.fail_with, None
            raise RuntimeError(message)
        restored = engine.restore(request)
        if progress is not None:
            progress(RestoreProgress(0, 1, 1.0, 2, 2, 0.0))
        scale = restored.shape[0] // request.pixels.shape[0]
        # The model each step names is the one that "ran" it ("": the default).
        step_models = tuple(step.model or "" for step in request.plan)
        model_id = "+".join(dict.fromkeys(model or self.model_id for model in step_models))  # as the real one
        return RestoreResult(restored, scale, 0.25, self.device_description, model_id, step_models=step_models)

    def preview(
        self,
        request: RestoreRequest,
        bounds: Bounds | None,
        mask: np.ndarray | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> PreviewResult:
        """What ``fake_restore`` will give for ``bounds``, at half resolution (scale 0.5)."""
        height, width = request.pixels.shape[:2]
        whole = Bounds.of_image(height, width)
        region = whole if bounds is None else bounds.intersect(whole)
        original = np.array(request.pixels[region.slices][::2, ::2], dtype=np.float32)
        small_mask = None if mask is None else np.asarray(mask[region.slices][::2, ::2], dtype=np.float32)
        return PreviewResult(original, original * 0.5, small_mask, region, 0.5)


class _FakeJobContext:
    def __init__(self, engine: FakeEngine, request_id: int) -> None:
        self._engine = engine
        self._request_id = request_id

    def progress(
        self,
        fraction: float,
        stage: str = "",
        *,
        tiles_done: int = 0,
        tiles_total: int = 0,
        eta_seconds: float | None = None,
    ) -> None:
        self._engine._emit(Progress(self._request_id, fraction, stage, tiles_done, tiles_total, eta_seconds))

    def preview(self, pixels: np.ndarray, bounds: Bounds, scale: float) -> None:
        preview = Preview(self._request_id, pixels, bounds, scale)
        self._engine.previews.append(preview)
        self._engine._emit(preview)

    def notice(self, message: str) -> None:
        self._engine._emit(Notice(self._request_id, message))

    def check_cancel(self) -> None:
        if self._request_id in self._engine.cancelled:
            raise JobCancelled()

    def log(self, message: str) -> None:
        pass

    def runtime(self) -> FakeRuntime:
        self._engine._status = EngineStatus("fake device", "fake-model", "Fake model")
        return FakeRuntime(self._engine, self._request_id)


class FakeEngine:
    def __init__(self, *, threaded: bool = False, hold: bool = False) -> None:
        self.threaded = threaded
        self.hold = hold
        self.listeners: list[Callable[[EngineEvent], None]] = []
        self.requests: dict[int, Request] = {}
        self.cancelled: set[int] = set()
        self.held: set[int] = set()
        self.restored_ids: list[int] = []  # jobs that ran the (fake) model, in order
        self.fail_with: str | None = None  # the next restoration fails with this message
        self.interpret: Callable[[str], Interpretation] = fake_interpret
        self.restore: Callable[[RestoreRequest], np.ndarray] = fake_restore
        self.previews: list[Preview] = []  # every Preview event sent
        self.configured: list[EngineSettings] = []
        self.closed = False
        self._settings = EngineSettings()
        self._status: EngineStatus | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._releases: dict[int, threading.Event] = {}
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ EngineInterface

    @property
    def settings(self) -> EngineSettings:
        return self._settings

    @property
    def status(self) -> EngineStatus | None:
        return self._status

    def add_listener(self, listener: Callable[[EngineEvent], None]) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: Callable[[EngineEvent], None]) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def submit(self, request: Request) -> int:
        request_id = next(self._ids)
        self.requests[request_id] = request
        self._emit(Queued(request_id, 0))
        if self.threaded or (self.hold and isinstance(request, ActionRequest)):
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
            for cancelled in ids:
                if cancelled in self._releases:
                    self._releases[cancelled].set()

    def configure(self, settings: EngineSettings) -> None:
        self._settings = settings
        self.configured.append(settings)

    def close(self, timeout: float | None = None) -> None:
        self.closed = True
        self.cancel()
        for thread in self._threads:
            thread.join(timeout)

    # ------------------------------------------------------------------ test controls

    def release(self, request_id: int) -> None:
        """Let a held restoration go on."""
        with self._lock:
            release = self._releases.get(request_id)
        if release is not None:
            release.set()

    def restore_ids(self) -> list[int]:
        """The jobs that asked the (fake) model to restore."""
        return list(self.restored_ids)

    def interpret_count(self) -> int:
        return sum(isinstance(request, InterpretRequest) for request in self.requests.values())

    # ------------------------------------------------------------------ "worker"

    def _wait_while_held(self, request_id: int) -> None:
        with self._lock:
            release = self._releases.setdefault(request_id, threading.Event())
            if request_id in self.cancelled:
                release.set()
            self.held.add(request_id)
        release.wait()
        with self._lock:
            self.held.discard(request_id)

    def _emit(self, event: EngineEvent) -> None:
        for listener in list(self.listeners):
            listener(event)

    def _run(self, request_id: int) -> None:
        request = self.requests[request_id]
        if request_id in self.cancelled:
            self._emit(Cancelled(request_id))
            return
        self._emit(Started(request_id, request.label))
        try:
            if isinstance(request, InterpretRequest):
                self._status = EngineStatus("fake device", "fake-model", "Fake model")
                # The real engine's interpreter decides at the request's threshold (``intent.gate``).
                decided = gate(self.interpret(request.text), request.confidence_threshold)
                self._emit(Finished(request_id, decided))
                return
            result = request.run(_FakeJobContext(self, request_id))
            if request_id in self.cancelled:
                raise JobCancelled()
            self._emit(Finished(request_id, result, request.revision))
        except JobCancelled:
            self._emit(Cancelled(request_id))
        except Exception as error:  # like the real engine: a failure is an event, not a crash
            self._emit(Failed(request_id, str(error).splitlines()[0] if str(error) else type(error).__name__))
