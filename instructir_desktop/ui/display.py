"""Builds the canvas's display images of the document away from the GUI thread.

Flattening a 12 MP document, converting it to 8 bits and building its mip pyramid takes a few
hundred milliseconds: on the GUI thread that freezes the window each time a result lands or a
step is undone. Small documents are still built at once (a few milliseconds, and the canvas is
up to date the moment the call returns); larger ones in the session's "display" lane, the canvas
keeping the previous image until the new one is ready.

Only the newest request matters: a request made while a build runs replaces any request still
waiting, and a finished build whose document has moved on since (another revision, another
photo) is dropped. The build reads the layers' arrays while the GUI thread may write into them
(an undo of a local patch); such a torn image always belongs to an old revision, so it is
never shown.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from instructir_desktop.core.document import Document
from instructir_desktop.editing.background import Background, Outcome
from instructir_desktop.ui.qimages import MipImage, flattened_pixmap

# Up to this many pixels the image is built on the GUI thread (about 10-20 ms).
SYNCHRONOUS_PIXELS = 1_000_000

BuiltT = TypeVar("BuiltT")


class DisplayBuilds(Generic[BuiltT]):
    """Runs display jobs in the background, newest first; ``shown(key, result)`` gets what was
    built for the key still wanted, or ``key, None`` when the job failed (the caller then does
    the work itself, where the error shows as it would have without this class)."""

    def __init__(
        self,
        background: Background,
        shown: Callable[[Hashable, BuiltT | None], None],
        lane: str = "display",
        synchronous_pixels: int | None = None,
    ) -> None:
        self._background = background
        self._shown = shown
        self._lane = lane
        self.synchronous_pixels = SYNCHRONOUS_PIXELS if synchronous_pixels is None else synchronous_pixels
        self._running = False
        self._waiting: tuple[Hashable, Callable[[], BuiltT]] | None = None
        self._wanted: Hashable | None = None
        self._current: Callable[[], Hashable] = lambda: None

    @property
    def busy(self) -> bool:
        """A build is running or waiting."""
        return self._running or self._waiting is not None

    def submit(self, key: Hashable, job: Callable[[], BuiltT], current: Callable[[], Hashable]) -> None:
        """Run ``job`` in the background; ``shown(key, its result)`` follows unless ``current()``
        has moved on from ``key`` by then."""
        self._current = current
        self._wanted = key
        self._waiting = (key, job)
        if not self._running:
            self._start_next()

    def forget(self) -> None:
        """Whatever is waiting or running is no longer wanted (the caller showed something newer)."""
        self._wanted = None
        self._waiting = None

    def _start_next(self) -> None:
        waiting, self._waiting = self._waiting, None
        self._running = waiting is not None
        if waiting is not None:
            key, job = waiting
            self._background.submit(self._lane, job, lambda outcome: self._built(key, outcome))

    def _built(self, key: Hashable, outcome: Outcome[BuiltT]) -> None:
        self._start_next()
        if key != self._wanted or key != self._current():
            return  # the document moved on; a newer build is (or was) on its way
        self._shown(key, outcome.value if outcome.error is None else None)


class DocumentDisplay(DisplayBuilds[MipImage]):
    """``DisplayBuilds`` of whole documents."""

    def build(self, key: Hashable, document: Document, current: Callable[[], Hashable]) -> MipImage | None:
        """The display image of ``document`` now (small documents), or None and ``shown`` later."""
        if document.height * document.width <= self.synchronous_pixels:
            self.forget()
            return flattened_pixmap(document.flatten())
        # Not frozen: freezing would make the next local edit copy a whole layer. A torn read
        # belongs to an old revision and is dropped (see the module's docstring).
        shared = document.shared_copy()
        self.submit(key, lambda: flattened_pixmap(shared.flatten()), current)
        return None
