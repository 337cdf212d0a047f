"""The restoration engine: one worker thread that owns the loaded models and runs jobs in order.

The GUI (or command line) submits frozen requests and listens to one stream of typed events.
Events are delivered on the worker thread; the editor's engine client hands them to its event loop.
torch is imported only by the worker, so creating an Engine costs nothing on the GUI thread.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, overload

import numpy as np

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.logs import record_failure
from instructir_desktop.inference.requests import (
    ActionRequest,
    Cancelled,
    EngineEvent,
    EngineSettings,
    EngineStatus,
    Failed,
    Finished,
    InterpretRequest,
    Notice,
    Preview,
    Progress,
    Queued,
    Request,
    RestorationRuntime,
    ResultT,
    Started,
)
from instructir_desktop.instructions.interpret import Interpretation

Listener = Callable[[EngineEvent], None]
RuntimeLoader = Callable[[EngineSettings], RestorationRuntime]

# Progress events are rate-limited so a fast job cannot flood the GUI's event loop.
PROGRESS_INTERVAL = 0.1


class JobCancelled(Exception):
    """Raised inside a job at the next check after its cancel was requested."""


class EngineInterface(Protocol):
    """What the editor needs from an engine; tests substitute a fake."""

    @property
    def settings(self) -> EngineSettings: ...

    @property
    def status(self) -> EngineStatus | None:
        """The loaded model and device (None until a job has loaded them)."""
        ...

    def submit(self, request: Request) -> int: ...

    def cancel(self, request_id: int | None = None) -> None: ...

    def configure(self, settings: EngineSettings) -> None: ...

    def add_listener(self, listener: Listener) -> None: ...

    def remove_listener(self, listener: Listener) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


@dataclass
class _Job:
    request_id: int
    request: Request
    cancel: threading.Event = field(default_factory=threading.Event)


class _Context:
    """The JobContext given to a job: progress, previews, notices, cancel and log, tied to one job."""

    def __init__(self, engine: Engine, job: _Job) -> None:
        self._engine = engine
        self._job = job
        self.messages: list[str] = []

    def progress(
        self,
        fraction: float,
        stage: str = "",
        *,
        tiles_done: int = 0,
        tiles_total: int = 0,
        eta_seconds: float | None = None,
    ) -> None:
        clamped = max(0.0, min(1.0, fraction))
        event = Progress(self._job.request_id, clamped, stage, tiles_done, tiles_total, eta_seconds)
        self._engine._emit_progress(event)

    def preview(self, pixels: np.ndarray, bounds: Bounds, scale: float) -> None:
        self._engine._emit(Preview(self._job.request_id, pixels, bounds, scale))

    def notice(self, message: str) -> None:
        self._engine._emit(Notice(self._job.request_id, message))

    def check_cancel(self) -> None:
        if self._job.cancel.is_set():
            raise JobCancelled()

    def log(self, message: str) -> None:
        self.messages.append(message)

    def runtime(self) -> RestorationRuntime:
        """The restoration runtime, loaded on first use (this runs on the worker thread)."""
        return self._engine._ensure_runtime(self._job)


class Engine:
    def __init__(
        self,
        settings: EngineSettings | None = None,
        listener: Listener | None = None,
        runtime_loader: RuntimeLoader | None = None,
    ) -> None:
        self._settings = settings or EngineSettings()
        self._loaded_settings: EngineSettings | None = None
        self._listeners: list[Listener] = [listener] if listener else []
        self._runtime_loader = runtime_loader
        self._runtime: RestorationRuntime | None = None
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._last_progress = 0.0
        self._closed = False
        self._status: EngineStatus | None = None
        self._thread = threading.Thread(target=self._work, name="instructir-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public API (any thread)

    @property
    def status(self) -> EngineStatus | None:
        return self._status

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def submit(self, request: Request) -> int:
        return self._submit(request, next(self._ids))

    def _submit(self, request: Request, request_id: int) -> int:
        if self._closed:
            raise RuntimeError("the engine is closed")
        job = _Job(request_id, request)
        with self._lock:
            self._jobs[request_id] = job
            position = len(self._jobs) - 1
        self._emit(Queued(request_id, position))
        self._queue.put(job)
        return request_id

    def cancel(self, request_id: int | None = None) -> None:
        """Cancel one job (or all): queued jobs never start, a running one stops at its next check."""
        with self._lock:
            jobs = (
                list(self._jobs.values())
                if request_id is None
                else [self._jobs[request_id]]
                if request_id in self._jobs
                else []
            )
        for job in jobs:
            job.cancel.set()

    def configure(self, settings: EngineSettings) -> None:
        """New settings apply from the next job; the model is reloaded only if they changed it."""
        self._settings = settings

    @property
    def settings(self) -> EngineSettings:
        return self._settings

    def close(self, timeout: float | None = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self.cancel()
        self._queue.put(None)
        self._thread.join(timeout)

    @overload
    def run(
        self, request: InterpretRequest, listener: Listener | None = None, timeout: float | None = None
    ) -> Interpretation: ...

    @overload
    def run(
        self, request: ActionRequest[ResultT], listener: Listener | None = None, timeout: float | None = None
    ) -> ResultT: ...

    def run(
        self,
        request: InterpretRequest | ActionRequest[ResultT],
        listener: Listener | None = None,
        timeout: float | None = None,
    ) -> Interpretation | ResultT:
        """Submit and wait: for scripts and tests. Raises on failure or cancel."""
        done = threading.Event()
        ended: list[EngineEvent] = []
        # The id is taken before submitting: Queued is emitted inside submit, and a quick job can
        # end on the worker before submit returns; ``watch`` must recognise both.
        request_id = next(self._ids)

        def watch(event: EngineEvent) -> None:
            if event.request_id != request_id:
                return
            if listener is not None:
                listener(event)
            if isinstance(event, (Finished, Failed, Cancelled)):
                ended.append(event)
                done.set()

        self.add_listener(watch)
        try:
            self._submit(request, request_id)
            if not done.wait(timeout):
                self.cancel(request_id)
                raise TimeoutError("the engine did not finish in time")
        finally:
            self.remove_listener(watch)
        event = ended[0]
        if isinstance(event, Failed):
            raise RuntimeError(event.message)
        if isinstance(event, Cancelled):
            raise JobCancelled()
        assert isinstance(event, Finished)
        result: Interpretation | ResultT = event.result
        return result

    # ------------------------------------------------------------------ worker thread

    def _emit(self, event: EngineEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as error:  # a broken listener must not kill the worker
                record_failure(f"an engine event listener failed on {type(event).__name__}", error)

    def _emit_progress(self, event: Progress, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress >= PROGRESS_INTERVAL or event.fraction >= 1.0:
            self._last_progress = now
            self._emit(event)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                break
            try:
                self._run_job(job)
            finally:
                with self._lock:
                    self._jobs.pop(job.request_id, None)

    def _ensure_runtime(self, job: _Job) -> RestorationRuntime:
        settings = self._settings
        if self._runtime is None or settings != self._loaded_settings:
            self._emit_progress(Progress(job.request_id, 0.0, "Loading the restoration model…"), force=True)
            self._runtime = None
            if self._runtime_loader is not None:
                runtime = self._runtime_loader(settings)
            else:
                from instructir_desktop.inference.runtime import load_runtime

                def preparing(_: float, message: str) -> None:
                    self._emit_progress(Progress(job.request_id, 0.0, message), force=True)

                runtime = load_runtime(settings, progress=preparing)
            self._runtime = runtime
            self._loaded_settings = settings
            notices = tuple(runtime.load_notices)
            for notice in notices:
                self._emit(Notice(job.request_id, notice))
            self._status = EngineStatus(runtime.device_description, runtime.model_id, runtime.model_name, notices)
        return self._runtime

    def _run_job(self, job: _Job) -> None:
        request_id = job.request_id
        if job.cancel.is_set():
            self._emit(Cancelled(request_id))
            return
        request = job.request
        self._emit(Started(request_id, request.label or type(request).__name__))
        try:
            if isinstance(request, ActionRequest):
                result = request.run(_Context(self, job))
                if job.cancel.is_set():
                    raise JobCancelled()
                self._emit(Finished(request_id, result, request.revision))
                return
            runtime = self._ensure_runtime(job)
            if job.cancel.is_set():
                raise JobCancelled()
            planned = runtime.interpret(request.text, request.image_size, request.confidence_threshold)
            self._emit(Finished(request_id, planned))
        except JobCancelled:
            self._emit(Cancelled(request_id))
        except Exception as error:  # every failure becomes an event, never a dead worker
            record_failure(f"{request.label or type(request).__name__} failed", error)
            self._emit(Failed(request_id, describe_error(error)))


def describe_error(error: BaseException) -> str:
    """One line a person can act on, whatever went wrong."""
    if isinstance(error, MemoryError):
        return str(error) or "not enough memory for this photo"
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return first if len(first) < 300 else first[:297] + "…"
