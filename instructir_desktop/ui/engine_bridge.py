"""Carries the engine's events from its worker thread to the GUI thread.

The engine calls its listeners on the worker thread, where no widget may be touched. The bridge
re-posts every event through a queued signal, so the typed signals below always fire on the thread
the bridge lives on (the GUI thread), in the order the engine sent them.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal, Slot

from instructir_desktop.inference.engine import EngineInterface
from instructir_desktop.inference.requests import (
    Cancelled,
    EngineEvent,
    Failed,
    Finished,
    Notice,
    Preview,
    Progress,
    Queued,
    Request,
    Started,
)


class EngineBridge(QObject):
    """The GUI's one view of the engine: submit/cancel on the way in, typed signals on the way out."""

    # Internal: crosses threads. Everything else is emitted from ``_dispatch`` on the GUI thread.
    _posted = Signal(object)

    any_event = Signal(object)  # every event, after its typed signal below
    queued = Signal(object)
    started = Signal(object)
    progress = Signal(object)
    preview = Signal(object)
    finished = Signal(object)
    cancelled = Signal(object)
    failed = Signal(object)
    notice = Signal(object)

    def __init__(self, engine: EngineInterface, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self._closed = False
        # Queued even when the engine calls us on the GUI thread (a synchronous fake): the caller of
        # ``submit`` always gets its request id back before any event of that request is handled.
        self._posted.connect(self._dispatch, Qt.ConnectionType.QueuedConnection)
        engine.add_listener(self._on_engine_event)

    # ------------------------------------------------------------------ GUI → engine

    def submit(self, request: Request) -> int:
        return self.engine.submit(request)

    def cancel(self, request_id: int | None = None) -> None:
        self.engine.cancel(request_id)

    def close(self, timeout: float | None = 2.0) -> None:
        """Stop listening and shut the engine down (cancelling whatever runs)."""
        if self._closed:
            return
        self._closed = True
        self.engine.close(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ engine → GUI

    def _on_engine_event(self, event: EngineEvent) -> None:
        # Worker thread. The engine has no way to remove a listener, so a closed bridge just stops
        # forwarding; emitting on a deleted QObject would raise on the worker.
        if self._closed:
            return
        try:
            self._posted.emit(event)
        except RuntimeError:  # the C++ object is gone (window destroyed before the engine stopped)
            self._closed = True

    @Slot(object)
    def _dispatch(self, event: EngineEvent) -> None:
        if self._closed:
            return
        typed = {
            Queued: self.queued,
            Started: self.started,
            Progress: self.progress,
            Preview: self.preview,
            Finished: self.finished,
            Cancelled: self.cancelled,
            Failed: self.failed,
            Notice: self.notice,
        }.get(type(event))
        if typed is not None:
            typed.emit(event)
        self.any_event.emit(event)
