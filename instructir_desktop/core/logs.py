"""The log file that holds the details of every failure, and the one line a person reads instead.

Each entry point (the command line, the window, plugin discovery and actions, model loading) turns
an exception into one sentence that names the file and what to do, and writes the traceback here,
so the sentence can stay short without the details being lost. Help → About opens the file.

The folder is the platform's user log folder (platformdirs), or ``$INSTRUCTIR_DESKTOP_LOG_DIR``.
Nothing is written until an entry point calls :func:`configure_logging`; a library user of the
package gets no file and no output (the package's logger has a NullHandler).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import threading
from pathlib import Path

LOG_FOLDER_ENV = "INSTRUCTIR_DESKTOP_LOG_DIR"
LOG_NAME = "instructir-desktop.log"
LOGGER_NAME = "instructir_desktop"
# A few runs' worth of tracebacks, never an ever-growing file.
_MAX_BYTES = 1_000_000
_BACKUPS = 2
_MAX_LINE = 300

_package_logger = logging.getLogger(LOGGER_NAME)
_package_logger.addHandler(logging.NullHandler())  # no "last resort" printing of our tracebacks
_configured: dict[str, logging.Handler] = {}
_lock = threading.Lock()


def log_folder() -> Path:
    override = os.environ.get(LOG_FOLDER_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_log_dir("instructir-desktop", "InstructIR"))


def log_file() -> Path:
    """Where the details of failures are written (the file may not exist yet)."""
    return log_folder() / LOG_NAME


def configure_logging() -> Path | None:
    """Send the package's log records (INFO and above) to the log file; the file, or None when it
    cannot be written (a read-only home: the application still runs, only without the details)."""
    path = log_file()
    with _lock:
        existing = _configured.get(str(path))
        if existing is not None:
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=_MAX_BYTES, backupCount=_BACKUPS, encoding="utf-8", delay=True
            )
        except OSError:
            return None
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"))
        handler.setLevel(logging.INFO)
        _package_logger.addHandler(handler)
        # Libraries' warnings (Pillow's "Corrupt EXIF data", torch's notes) are details too: into the
        # log, not onto the terminal; what matters to the person is said in our own sentences.
        logging.captureWarnings(True)
        library_warnings = logging.getLogger("py.warnings")
        library_warnings.addHandler(handler)
        library_warnings.propagate = False
        if _package_logger.level == logging.NOTSET or _package_logger.level > logging.INFO:
            _package_logger.setLevel(logging.INFO)
        _configured[str(path)] = handler
        return path


def stop_logging() -> None:
    """Detach the log files (tests that point the folder elsewhere)."""
    with _lock:
        for handler in _configured.values():
            _package_logger.removeHandler(handler)
            logging.getLogger("py.warnings").removeHandler(handler)
            handler.close()
        if _configured:
            logging.captureWarnings(False)
        _configured.clear()


def one_line(error: BaseException | str, limit: int = _MAX_LINE) -> str:
    """A message as one line of at most ``limit`` characters; an exception with no text gives its name."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record_failure(summary: str, error: BaseException | None = None, *, logger: str = LOGGER_NAME) -> None:
    """Write ``summary`` and, when given, the traceback of ``error`` to the log."""
    target = logging.getLogger(logger)
    if error is None:
        target.error(summary)
    else:
        target.error(summary, exc_info=(type(error), error, error.__traceback__))


def details_hint() -> str:
    """The clause the one-line messages end with when the traceback went to the log."""
    return f"the details are in {log_file()}"
