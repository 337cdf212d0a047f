"""The one event loop: Qt's, with asyncio on it through qasync.

The editing session schedules its callbacks and awaits its futures on this loop; qasync turns them
into Qt timer events, so they run whenever Qt processes events: in the application's ``exec``, in
a dialog's nested loop, or while a test waits on the window.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib

import qasync
from PySide6.QtWidgets import QApplication

_loops: dict[int, qasync.QEventLoop] = {}


@atexit.register
def _close_loops() -> None:
    """Close the loops while Qt still exists: one closed after the application is gone fails."""
    for loop in _loops.values():
        with contextlib.suppress(RuntimeError):
            if not loop.is_running():
                loop.close()
    _loops.clear()


def qt_event_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop running on the application's Qt loop (created on first use)."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        raise RuntimeError("create the QApplication first")
    key = id(app)
    loop = _loops.get(key)
    if loop is None or loop.is_closed():
        loop = qasync.QEventLoop(app)
        _loops[key] = loop
    return loop
