"""The Qt binding itself must be safe for a long editing session."""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal


class _Emitter(QObject):
    fired = Signal(object)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12: nothing to count")
def test_slots_returning_none_do_not_eat_references_to_none(qtbot):
    """PySide6 6.12.0 dropped a reference to None on every slot call that returned None; every
    slot in the app returns None, so after enough timer ticks and signals Python aborted with
    "deallocating None". Found by the 12 MP walkthrough, pinned out in pyproject.toml."""
    calls: list[object] = []
    emitter = _Emitter()
    emitter.fired.connect(lambda value: calls.append(value))
    for _ in range(200):
        emitter.fired.emit(1)
    timer = QTimer()
    timer.setInterval(0)
    timer.timeout.connect(lambda: calls.append(None))
    before = sys.getrefcount(None)
    timer.start()
    deadline = time.monotonic() + 10
    while calls.count(None) < 500 and time.monotonic() < deadline:
        QCoreApplication.processEvents()
    timer.stop()
    added = calls.count(None)
    assert added >= 500
    # Each None in the list is one more reference; the bug took one away per tick.
    assert sys.getrefcount(None) - before >= added - 20
