"""The engine as the editor's event loop sees it: jobs whose ends are asyncio futures, and every
engine event handed to the one dispatcher on the loop's thread.

The engine calls its listeners on its worker thread. The client queues each event and asks the
loop to take the queue in one go, in order, so that progress, a preview and the result always
arrive as the engine sent them, and never before ``submit`` has returned the job.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.inference.engine import EngineInterface
from instructir_desktop.inference.requests import (
    ActionRequest,
    Cancelled,
    EngineEvent,
    EngineSettings,
    EngineStatus,
    Failed,
    Finished,
    InterpretRequest,
    JobEnd,
    JobState,
    Request,
    Started,
)
from instructir_desktop.instructions.interpret import Interpretation

ResultT = TypeVar("ResultT")


@dataclass(eq=False)
class EngineJob(Generic[ResultT]):
    """A job given to the engine: its id, where it is, and how it ended (``end``)."""

    request_id: int
    label: str
    end: asyncio.Future[JobEnd[ResultT]]
    state: JobState = field(default=JobState.QUEUED)


class EngineClient:
    def __init__(self, engine: EngineInterface, dispatcher: Dispatcher, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self._dispatcher = dispatcher
        self._loop = loop
        self._jobs: dict[int, EngineJob[Any]] = {}  # each job's result type is its request's
        self._arrived: collections.deque[EngineEvent] = collections.deque()
        self._lock = threading.Lock()
        self._draining = False
        self._closed = False
        engine.add_listener(self._on_engine_event)

    @property
    def status(self) -> EngineStatus | None:
        return self.engine.status

    @property
    def settings(self) -> EngineSettings:
        return self.engine.settings

    def configure(self, settings: EngineSettings) -> None:
        self.engine.configure(settings)

    # ------------------------------------------------------------------ loop → engine

    def submit(self, request: ActionRequest[ResultT]) -> EngineJob[ResultT]:
        return self._submit(request)

    def interpret(self, request: InterpretRequest) -> EngineJob[Interpretation]:
        return self._submit(request)

    def _submit(self, request: Request) -> EngineJob[ResultT]:
        end: asyncio.Future[JobEnd[ResultT]] = self._loop.create_future()
        request_id = self.engine.submit(request)
        job: EngineJob[ResultT] = EngineJob(request_id, request.label, end)
        self._jobs[request_id] = job
        return job

    def cancel(self, job: EngineJob[Any]) -> None:
        """Cooperative: the engine stops at its next check; ``job.end`` then says Cancelled (or,
        when the job ended first, how it ended)."""
        if not job.state.ended:
            self.engine.cancel(job.request_id)

    def close(self, timeout: float | None = 2.0) -> None:
        """Stop listening and shut the engine down (cancelling whatever runs)."""
        if self._closed:
            return
        self._closed = True
        self.engine.remove_listener(self._on_engine_event)
        self.engine.close(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ engine → loop

    def _on_engine_event(self, event: EngineEvent) -> None:
        # Any thread (the worker, or the caller's for a synchronous fake).
        with self._lock:
            self._arrived.append(event)
            if self._draining:
                return
            self._draining = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._closed = True

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._arrived:
                    self._draining = False
                    return
                event = self._arrived.popleft()
            if not self._closed:
                self._deliver(event)

    def _deliver(self, event: EngineEvent) -> None:
        job = self._jobs.get(event.request_id)
        ended: Finished[Any] | Cancelled | Failed | None = None
        if job is not None:
            if isinstance(event, Started):
                job.state = JobState.RUNNING
            elif isinstance(event, (Finished, Cancelled, Failed)):
                ended = event
                job.state = _END_STATES[type(event)]
                del self._jobs[event.request_id]
        self._dispatcher.emit(event)
        if job is not None and ended is not None and not job.end.done():
            job.end.set_result(ended)


_END_STATES: dict[type, JobState] = {
    Finished: JobState.FINISHED,
    Cancelled: JobState.CANCELLED,
    Failed: JobState.FAILED,
}
