"""The one way work leaves the event loop's thread: lanes of worker threads whose results come
back as asyncio futures, resolved on the loop's thread.

A lane ("read", "write", "display", "prepare") is one worker thread, so work in it keeps its
order and never competes with itself. ``submit`` hands a ``done`` callback the outcome on the
loop's thread; ``finish`` blocks until a lane is idle and runs the callbacks still due at once, so
that closing a window (or a test) knows everything written has been accounted for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

ResultT = TypeVar("ResultT")
ResultT_co = TypeVar("ResultT_co", covariant=True)


@dataclass(frozen=True, eq=False)
class Outcome(Generic[ResultT_co]):
    """What background work came to: its value, or the exception it raised."""

    value: ResultT_co | None
    error: BaseException | None = None


class _Work(Generic[ResultT]):
    def __init__(self, future: concurrent.futures.Future[ResultT], done: Callable[[Outcome[ResultT]], None]) -> None:
        self.future = future
        self._done = done
        self._delivered = False

    def deliver(self) -> None:
        """Hand the outcome to ``done``, once (from the loop, or from ``finish``, whichever is first)."""
        if self._delivered or not self.future.done():
            return
        self._delivered = True
        if self.future.cancelled():
            return
        error = self.future.exception()
        self._done(Outcome(None, error) if error is not None else Outcome(self.future.result()))


class Background:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lanes: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._pending: dict[str, list[_Work[Any]]] = {}
        self._lock = threading.Lock()

    def _executor(self, lane: str) -> concurrent.futures.ThreadPoolExecutor:
        if lane not in self._lanes:
            self._lanes[lane] = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=lane)
        return self._lanes[lane]

    def submit(self, lane: str, work: Callable[[], ResultT], done: Callable[[Outcome[ResultT]], None]) -> None:
        """Run ``work`` in ``lane``; ``done`` gets its outcome on the loop's thread (or in ``finish``)."""
        entry: _Work[ResultT] = _Work(self._executor(lane).submit(work), done)
        with self._lock:
            self._pending.setdefault(lane, []).append(entry)

        def arrived(mirrored: asyncio.Future[ResultT]) -> None:
            if not mirrored.cancelled():
                mirrored.exception()  # read here: ``entry`` hands it over
            self._delivered(lane, entry)

        asyncio.wrap_future(entry.future, loop=self._loop).add_done_callback(arrived)

    def _delivered(self, lane: str, entry: _Work[Any]) -> None:
        entry.deliver()
        with self._lock:
            pending = self._pending.get(lane, [])
            if entry in pending:
                pending.remove(entry)

    def busy(self, lane: str) -> bool:
        """Work of ``lane`` is running or waiting, or its outcome has not been handed over yet."""
        with self._lock:
            return bool(self._pending.get(lane))

    def finish(self, lane: str, timeout: float | None = None) -> bool:
        """Wait for the work of ``lane`` submitted so far, and hand over its outcomes now.
        False when it did not end within ``timeout``."""
        with self._lock:
            entries = list(self._pending.get(lane, []))
        _, waiting = concurrent.futures.wait([entry.future for entry in entries], timeout=timeout)
        for entry in entries:
            if entry.future.done():
                self._delivered(lane, entry)
        return not waiting

    def shutdown(self) -> None:
        for executor in self._lanes.values():
            executor.shutdown(wait=True, cancel_futures=True)
        self._lanes.clear()
