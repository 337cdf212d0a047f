"""Application start-up: parse the window's options, create the window, run the event loop."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from instructir_desktop.inference.engine import EngineInterface
from instructir_desktop.ui import boundary
from instructir_desktop.ui.automation import Automation, Options, parse_options, say
from instructir_desktop.ui.event_loop import qt_event_loop
from instructir_desktop.ui.main_window import APP_NAME, MainWindow
from instructir_desktop.ui.platform_check import platform_problem
from instructir_desktop.ui.preferences import Preferences
from instructir_desktop.ui.theme import follow_system_theme

__all__ = ["APP_NAME", "DESKTOP_FILE_NAME", "MainWindow", "run_application"]

DESKTOP_FILE_NAME = "instructir-desktop"
EXIT_INTERRUPTED = 130  # as the command line's (the shell's convention for Ctrl-C)
# The exit code when the window cannot open on this system (a missing X11 library).
NO_DISPLAY_EXIT = 3


def run_application(argv: Sequence[str], engine: EngineInterface | None = None) -> int:
    """Open the editor (``engine``: a substitute for tests). Returns the process exit code."""
    options = parse_options(argv)
    if options.automated and options.quit:
        # Runs to completion by itself: no screen is needed, and none may be available (CI, ssh).
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    existing = QApplication.instance()
    if not isinstance(existing, QApplication):
        # Qt aborts the process when its platform plugin cannot load: say why first, in words.
        problem = platform_problem()
        if problem:
            print(problem, file=sys.stderr)
            return NO_DISPLAY_EXIT
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0]])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("InstructIR")
    # Matches packaging/linux/instructir-desktop.desktop: the desktop shell shows its icon and name.
    app.setDesktopFileName(DESKTOP_FILE_NAME)
    follow_system_theme(app)
    # The persisted settings (Edit → Settings…), with what the command line names on top.
    settings = Preferences().engine_settings()
    if options.device is not None:
        settings = dataclasses.replace(settings, device=options.device)
    if options.model is not None:
        settings = dataclasses.replace(settings, model_folder=options.model, weights=None, text_head=None)
    window = MainWindow(engine, settings)
    uninstall = boundary.install(window, qt_event_loop())
    try:
        code = _run(window, engine, options)
    finally:
        uninstall()
    if window.interrupted:
        say("interrupted" + ("; the unsaved work was kept for recovery" if window.session.workspace.modified else ""))
        return EXIT_INTERRUPTED
    return code


def _run(window: MainWindow, engine: EngineInterface | None, options: Options) -> int:
    automation: Automation | None = None
    if options.automated:
        window.interactive = False
        automation = Automation(window, options)
    window.show()
    if engine is None:
        # The real engine: load torch and the model on the worker while the person opens a photo.
        QTimer.singleShot(200, window.preload_model)
    # Work left by a crash: asked about interactively; automation restores it only with --recover.
    recovered = window.file_actions.offer_recovery(accept=True if options.recover else None)
    if options.image is not None and not recovered:
        window.open_path(options.image, ask=False)
    if automation is None:
        # Qt's loop, with asyncio on it: the session's futures and callbacks run in it.
        qt_event_loop().run_forever()
        return 0
    automation.start()
    if not options.quit:
        qt_event_loop().run_forever()
        return automation.exit_code if automation.exit_code is not None else 1
    # A local loop rather than app.exec()/app.exit(): QCoreApplication.exit() leaves Qt's "quit now"
    # flag set, which makes every later nested event loop in the process return at once (a test
    # suite, or a host that embeds the window).
    loop = QEventLoop()
    automation.finished.connect(loop.exit)
    window.closed.connect(loop.exit)  # Ctrl-C closed it first
    loop.exec()
    window.close()
    return automation.exit_code if automation.exit_code is not None else 1
