"""Progress on the terminal: a status line, or occasional plain lines when output is a file or pipe."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """One status line on a terminal; occasional plain lines when the output is a file or pipe."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.interactive = enabled and stream.isatty()
        self._last_line = 0.0
        self._last_length = 0

    def update(self, label: str, fraction: float, eta_seconds: float | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.interactive:
            if now - self._last_line < 0.1 and fraction < 1:
                return
            width = 28
            filled = round(width * min(1.0, fraction))
            eta = f" ETA {format_seconds(eta_seconds)}" if eta_seconds is not None and fraction < 1 else ""
            line = f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%{eta}"
            self.stream.write(line + " " * max(0, self._last_length - len(line)))
            self._last_length = len(line)
        else:
            if now - self._last_line < 5 and fraction < 1:
                return
            self.stream.write(f"{label}: {fraction * 100:.0f}%\n")
        self._last_line = now
        self.stream.flush()

    def finish(self) -> None:
        if self.interactive and self._last_length:
            self.stream.write("\n")
            self.stream.flush()
        self._last_length = 0


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
