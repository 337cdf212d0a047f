"""Automation mode: drive the real window from the command line, for demos and end-to-end tests.

    instructir-desktop IMAGE --run "INSTRUCTION" [--run ...] --screenshot PNG --export OUT --quit

Each instruction goes through the chat panel exactly as if typed; the next is sent once the
previous one has ended. The exit code is 0 only when every instruction was restored and every
requested file was written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from instructir_desktop.editing.conversation import Run, RunState
from instructir_desktop.editing.events import RunEnded
from instructir_desktop.ui.main_window import MainWindow

MIN_SCREENSHOT = (1000, 650)
# Lets the chat panel lay out and paint its last message before the screenshot.
SETTLE_MS = 200


@dataclass
class Options:
    image: Path | None = None
    runs: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    export: Path | None = None
    quit: bool = False
    device: str | None = None  # None: the device chosen in Settings
    model: str | None = None
    timeout: float = 3600.0
    recover: bool = False  # restore work a crashed window autosaved (automation never asks)

    @property
    def automated(self) -> bool:
        return bool(self.runs or self.screenshot or self.export or self.quit)


def parse_options(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="instructir-desktop", description="Open the editor, optionally driving it from the command line."
    )
    parser.add_argument("image", nargs="?", type=Path, help="a photo or project to open")
    parser.add_argument("--run", action="append", default=[], metavar="INSTRUCTION", help="send this in the chat")
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="save a picture of the window at the end")
    parser.add_argument("--export", type=Path, metavar="OUT", help="export the result (keeps EXIF/ICC)")
    parser.add_argument("--quit", action="store_true", help="exit when done (exit code 1 if anything failed)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help="default: as chosen in Settings")
    parser.add_argument("--model", metavar="FOLDER", help="a model folder instead of the bundled model")
    parser.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS", help="give up after this long")
    parser.add_argument(
        "--recover", action="store_true", help="restore the work autosaved before a crash, without asking"
    )
    args = parser.parse_args(list(argv))
    for text in args.run:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # bytes from the terminal that are not UTF-8 (lone surrogates)
            parser.error("a --run instruction is not valid UTF-8 text; type it again (or set a UTF-8 locale)")
    return Options(
        args.image,
        args.run,
        args.screenshot,
        args.export,
        args.quit,
        args.device,
        args.model,
        args.timeout,
        args.recover,
    )


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Automation(QObject):
    finished = Signal(int)  # the exit code

    def __init__(self, window: MainWindow, options: Options) -> None:
        super().__init__(window)
        self.window = window
        self.options = options
        self.pending = list(options.runs)
        self.failures: list[str] = []
        self.exit_code: int | None = None
        # Position in the conversation of the run being waited for. Known before the message is
        # sent, because a follow-up or a command can end inside the send itself.
        self._awaited: int | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._timed_out)
        window.session.events.subscribe(RunEnded, lambda event: self._run_ended(event.run))

    def start(self) -> None:
        """Begin once the event loop runs (everything below is driven by it)."""
        self._timer.start(round(self.options.timeout * 1000))
        QTimer.singleShot(0, self._begin)

    def _begin(self) -> None:
        if self.window.opening:  # a large photo is read on the reader thread
            QTimer.singleShot(20, self._begin)
            return
        if self.options.image is not None and self.window.session.workspace.document is None:
            self._fail(f"could not open {self.options.image}: {self.window.statusBar().currentMessage()}")
            self._finish()
            return
        self._next()

    def _next(self) -> None:
        if self.failures or not self.pending:
            self._finish_when_shown()
            return
        text = self.pending.pop(0)
        say(f"› {text}")
        chat = self.window.chat
        # Through the input line, as a person would: type, press Enter.
        chat.input.setText(text)
        self._awaited = len(self.window.session.assistant.runs)
        chat.input.returnPressed.emit()

    def _finish_when_shown(self) -> None:
        """The result of a large photo reaches the canvas a moment after the run ends (its display
        image builds on another thread): the screenshot waits for it."""
        if self.window.canvas_up_to_date or self.exit_code is not None:
            QTimer.singleShot(SETTLE_MS, self._finish)
        else:
            QTimer.singleShot(20, self._finish_when_shown)

    def _run_ended(self, run: Run) -> None:
        runs = self.window.session.assistant.runs
        if self._awaited is None or self._awaited >= len(runs) or runs[self._awaited] is not run:
            return
        self._awaited = None
        summary = run.reply.status or run.reply.text
        if run.state is RunState.DONE:
            say(f"  {run.reply.text} {summary}")
        elif run.state is RunState.NOTHING:
            self._fail(f'"{run.text}": nothing to restore. {run.reply.text}')
        else:
            self._fail(f'"{run.text}": {run.state.value}: {run.error or summary}')
        self._next()

    def _timed_out(self) -> None:
        self._fail(f"timed out after {self.options.timeout:.0f} s")
        self.window.session.assistant.cancel_all()
        self._finish()

    def _fail(self, message: str) -> None:
        say(f"error: {message}")
        self.failures.append(message)

    def _finish(self) -> None:
        if self.exit_code is not None:
            return
        self._timer.stop()
        options = self.options
        if options.screenshot is not None:
            # Also after a failure: the picture shows what went wrong.
            picture = self.window.grab()
            if picture.width() < MIN_SCREENSHOT[0] or picture.height() < MIN_SCREENSHOT[1]:
                self._fail(f"the window is only {picture.width()}×{picture.height()}")
            if picture.save(str(options.screenshot), "PNG"):
                say(f"screenshot: {options.screenshot}")
            else:
                self._fail(f"could not write the screenshot {options.screenshot}")
        if options.export is not None and not self.failures:
            # In the foreground whatever the size: the result decides the exit code, now.
            if self.window.export_to(options.export, background=False):
                say(f"exported: {options.export}")
            else:
                self._fail(self.window.statusBar().currentMessage())
        self.exit_code = 1 if self.failures else 0
        self.finished.emit(self.exit_code)
