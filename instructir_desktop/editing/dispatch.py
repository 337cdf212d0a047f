"""One dispatcher of typed events on the event loop's thread.

The engine's events (progress, previews, notices) and the session's (the document changed, a run
moved on) all go through it. A handler subscribes to an event class and receives that class and
its subclasses, in the order handlers subscribed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

EventT = TypeVar("EventT")


class Dispatcher:
    def __init__(self) -> None:
        self._handlers: list[tuple[type, Callable[[object], None]]] = []

    def subscribe(self, kind: type[EventT], handler: Callable[[EventT], None]) -> Callable[[], None]:
        """Call ``handler`` with every event that is a ``kind``; returns what unsubscribes it."""

        def deliver(event: object) -> None:
            if isinstance(event, kind):
                handler(event)

        entry = (kind, deliver)
        self._handlers.append(entry)

        def unsubscribe() -> None:
            if entry in self._handlers:
                self._handlers.remove(entry)

        return unsubscribe

    def emit(self, event: object) -> None:
        for kind, deliver in list(self._handlers):
            if isinstance(event, kind):
                deliver(event)
