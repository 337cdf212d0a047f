"""Builds the canvas's display image of the document away from the GUI thread.

Flattening a 12 MP document, converting it to 8 bits and building its mip pyramid takes a few
hundred milliseconds: on the GUI thread that freezes the window each time a result lands or a
step is undone. Small documents are still built at once (a few milliseconds, and the canvas is
up to date the moment the call returns); larger ones on one background thread, the canvas
keeping the previous image until the new one is ready.

Only the newest request matters: a request made while a build runs replaces any request still
waiting, and a finished build whose document has moved on since (another revision, another
photo) is dropped. The build reads the layers' arrays while the GUI thread may write into them
(an undo of a local patch); such a torn image always belongs to an old revision, so it is
never shown.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, Signal, Slot

from instructir_desktop.core.document import Document
from instructir_desktop.ui.qimages import MipImage, flattened_pixmap

# Up to this many pixels the image is built on the GUI thread (about 10-20 ms).
SYNCHRONOUS_PIXELS = 1_000_000


@dataclass(frozen=True)
class _Outcome:
    key: Hashable
    result: object  # None: the job failed


class DisplayBuilder(QObject):
    """Turns documents into ``MipImage``s (or runs other display jobs, ``submit``); ``built(key,
    result)`` brings back what ran in the background."""

    # key, result (a MipImage for ``build``); or key, None when the job failed (the caller then
    # does the work itself, where the error shows as it would have without this class).
    built = Signal(object, object)
    # Internal, crosses threads: one non-None object through a queued connection to a declared
    # slot, the one form PySide handles safely from a foreign thread (None arguments are not).
    _finished = Signal(object)

    def __init__(self, parent: QObject | None = None, synchronous_pixels: int | None = None) -> None:
        super().__init__(parent)
        self.synchronous_pixels = SYNCHRONOUS_PIXELS if synchronous_pixels is None else synchronous_pixels
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._running = False
        self._waiting: tuple[Hashable, Callable[[], object]] | None = None
        self._wanted: Hashable | None = None
        self._current: Callable[[], Hashable] = lambda: None
        self._finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)

    @property
    def busy(self) -> bool:
        """A build is running or waiting."""
        return self._running or self._waiting is not None

    def build(self, key: Hashable, document: Document, current: Callable[[], Hashable]) -> MipImage | None:
        """The display image of ``document`` now (small documents), or None and ``built`` later.

        ``current`` tells, when a background build finishes, which key the window shows now: a
        build for any other key is dropped.
        """
        if document.height * document.width <= self.synchronous_pixels:
            self.forget()
            return flattened_pixmap(document.flatten())
        # Not frozen: freezing would make the next local edit copy a whole layer. A torn read
        # belongs to an old revision and is dropped (see the module's docstring).
        shared = document.shared_copy()
        self.submit(key, lambda: flattened_pixmap(shared.flatten()), current)
        return None

    def submit(self, key: Hashable, job: Callable[[], object], current: Callable[[], Hashable]) -> None:
        """Run ``job`` on the builder's thread; ``built(key, its result)`` follows unless stale by then."""
        self._current = current
        self._wanted = key
        with self._lock:
            self._waiting = (key, job)
            if self._running:
                return
            self._running = True
        self._start_next()

    def forget(self) -> None:
        """Whatever is waiting or running is no longer wanted (the caller showed something newer)."""
        self._wanted = None
        with self._lock:
            self._waiting = None

    def _start_next(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, None
            if waiting is None:
                self._running = False
                return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="display-builder")
        key, job = waiting
        self._executor.submit(self._run, key, job)

    def _run(self, key: Hashable, job: Callable[[], object]) -> None:
        try:
            outcome = _Outcome(key, job())
        except Exception:  # a torn read, or a real fault: the GUI thread decides
            outcome = _Outcome(key, None)
        with contextlib.suppress(RuntimeError):  # the builder's C++ object is gone: the window closed
            self._finished.emit(outcome)

    @Slot(object)
    def _on_finished(self, outcome: _Outcome) -> None:
        key, result = outcome.key, outcome.result
        self._start_next()
        if key != self._wanted or key != self._current():
            return  # the document moved on; a newer build is (or was) on its way
        self.built.emit(key, result)

    def shutdown(self) -> None:
        with self._lock:
            self._waiting = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
