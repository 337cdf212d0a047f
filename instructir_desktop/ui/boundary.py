"""The window's boundary for failures: Ctrl-C in the terminal, and exceptions nobody caught.

Qt calls Python slots from C++, where an exception can only be printed; asyncio callbacks go to the
loop's exception handler, which prints too. Both come here instead: the traceback goes to the log
file, the person reads one sentence in the status bar, and the window keeps running. Ctrl-C closes
the window without asking, keeping unsaved work for recovery (``MainWindow.interrupt``).

A Python signal handler only runs when the interpreter runs; while Qt's loop waits in C++ it does
not. ``signal.set_wakeup_fd`` writes a byte into a socket the loop watches, which wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from PySide6.QtCore import QSocketNotifier

from instructir_desktop.core.logs import details_hint, one_line, record_failure
from instructir_desktop.ui.main_window import MainWindow


def report_unhandled(window: MainWindow, error: BaseException) -> str:
    """Log ``error`` and tell the person in one sentence; the sentence said."""
    if isinstance(error, KeyboardInterrupt):
        window.interrupt()
        return "interrupted"
    record_failure("unhandled error in the window", error)
    message = (
        f"Something went wrong ({type(error).__name__}: {one_line(error, 160)}); "
        f"the window keeps running; {details_hint()}"
    )
    window.statusBar().showMessage(message)
    return message


def install(window: MainWindow, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Route Ctrl-C and uncaught exceptions of ``window`` through the boundary; the returned
    function puts back what was there before (tests run several windows in one process)."""
    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], error: BaseException, trace: TracebackType | None) -> None:
        report_unhandled(window, error)

    def loop_failure(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, BaseException):
            report_unhandled(window, error)
        else:
            record_failure(f"event loop: {context.get('message', context)}")

    sys.excepthook = excepthook
    previous_loop_handler = loop.get_exception_handler()
    loop.set_exception_handler(loop_failure)

    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Type.Read, window)

    def drain() -> None:  # running any Python here lets the pending signal handler run
        with contextlib.suppress(OSError):
            reader.recv(64)

    notifier.activated.connect(drain)

    def on_interrupt(_number: int, _frame: object) -> None:
        # A second Ctrl-C, should closing take long, interrupts for good.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        loop.call_soon_threadsafe(window.interrupt)

    try:
        previous_fd = signal.set_wakeup_fd(writer.fileno())
        previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread: no signals to handle here
        previous_fd, previous_handler = None, None

    def uninstall() -> None:
        sys.excepthook = previous_hook
        if not loop.is_closed():
            loop.set_exception_handler(previous_loop_handler)
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
            signal.set_wakeup_fd(previous_fd if previous_fd is not None else -1)
        notifier.setEnabled(False)
        reader.close()
        writer.close()

    return uninstall
