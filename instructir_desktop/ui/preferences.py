"""The window's persisted preferences: recent files, engine settings, autosave interval, pixel limit.

Everything lives in one QSettings (the application's, or a temporary ini file in tests), read back
defensively: a backend may return a list as None, one string or a list, numbers as strings.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

from instructir_desktop.inference.backends import BACKENDS
from instructir_desktop.inference.requests import EngineSettings
from instructir_desktop.instructions.intent import DEFAULT_CONFIDENCE_THRESHOLD, usable_threshold
from instructir_desktop.io import DEFAULT_MAX_PIXELS

SETTINGS_ORGANIZATION = "InstructIR"
SETTINGS_APPLICATION = "InstructIR Desktop"
RECENT_KEY = "files/recent"
RECENT_LIMIT = 10
AUTOSAVE_KEY = "recovery/autosaveSeconds"
DEFAULT_AUTOSAVE_SECONDS = 60
MAX_PIXELS_KEY = "files/maxPixels"
ASK_BELOW_KEY = "chat/askBelowPercent"
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
# Overrides where autosaves go (tests, or a portable install); otherwise AppDataLocation/recovery.
RECOVERY_FOLDER_ENV = "INSTRUCTIR_DESKTOP_RECOVERY_DIR"


def app_settings() -> QSettings:
    return QSettings(SETTINGS_ORGANIZATION, SETTINGS_APPLICATION)


def default_recovery_folder() -> Path:
    override = os.environ.get(RECOVERY_FOLDER_ENV)
    if override:
        return Path(override)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".instructir-desktop") / "recovery"


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value if item]
    return []


def _int(value: object, default: int) -> int:
    try:
        return int(str(value)) if value is not None else default
    except ValueError:
        return default


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


class Preferences:
    def __init__(self, settings: QSettings | None = None) -> None:
        self.settings = settings if settings is not None else app_settings()

    # ------------------------------------------------------------------ recent files

    def recent_files(self) -> list[Path]:
        return [Path(name) for name in _strings(self.settings.value(RECENT_KEY))][:RECENT_LIMIT]

    def _set_recent(self, paths: list[Path]) -> None:
        self.settings.setValue(RECENT_KEY, [str(path) for path in paths[:RECENT_LIMIT]])
        self.settings.sync()

    def add_recent(self, path: Path) -> None:
        """Most recent first; the same file only once; at most ``RECENT_LIMIT``."""
        path = path.absolute()
        self._set_recent([path, *(p for p in self.recent_files() if p != path)])

    def remove_recent(self, path: Path) -> None:
        self._set_recent([p for p in self.recent_files() if p != path])

    def prune_recent(self) -> list[Path]:
        """Drop the files that no longer exist; returns them."""
        recent = self.recent_files()
        missing = [path for path in recent if not path.is_file()]
        if missing:
            self._set_recent([path for path in recent if path not in missing])
        return missing

    def clear_recent(self) -> None:
        self._set_recent([])

    # ------------------------------------------------------------------ engine and autosave

    def engine_settings(self) -> EngineSettings:
        value = self.settings.value
        device = str(value("engine/device", "auto"))
        precision = str(value("engine/precision", "auto"))
        backend = str(value("engine/backend", "auto"))
        return EngineSettings(
            device=device if device in DEVICES else "auto",
            precision=precision if precision in PRECISIONS else "auto",
            backend=backend if backend in BACKENDS else "auto",
            tile_size=max(0, _int(value("engine/tileSize", 0), 0)),
            model_folder=_text(value("engine/modelFolder")),
            encoder=_text(value("engine/encoder")),
        )

    def set_engine_settings(self, settings: EngineSettings) -> None:
        self.settings.setValue("engine/device", settings.device)
        self.settings.setValue("engine/precision", settings.precision)
        self.settings.setValue("engine/backend", settings.backend)
        self.settings.setValue("engine/tileSize", int(settings.tile_size))
        self.settings.setValue("engine/modelFolder", settings.model_folder or "")
        self.settings.setValue("engine/encoder", settings.encoder or "")
        self.settings.sync()

    def autosave_seconds(self) -> int:
        """0 turns autosave off."""
        return max(0, _int(self.settings.value(AUTOSAVE_KEY, DEFAULT_AUTOSAVE_SECONDS), DEFAULT_AUTOSAVE_SECONDS))

    def set_autosave_seconds(self, seconds: int) -> None:
        self.settings.setValue(AUTOSAVE_KEY, max(0, int(seconds)))
        self.settings.sync()

    def max_pixels(self) -> int:
        """The largest photo (width × height) the readers decode; bigger files are refused as possible bombs."""
        return max(1, _int(self.settings.value(MAX_PIXELS_KEY, DEFAULT_MAX_PIXELS), DEFAULT_MAX_PIXELS))

    def set_max_pixels(self, limit: int) -> None:
        self.settings.setValue(MAX_PIXELS_KEY, max(1, int(limit)))

    def ask_below(self) -> float:
        """The confidence (0..1) below which the assistant asks instead of acting."""
        default = round(DEFAULT_CONFIDENCE_THRESHOLD * 100)
        return usable_threshold(_int(self.settings.value(ASK_BELOW_KEY, default), default) / 100)

    def set_ask_below(self, threshold: float) -> None:
        self.settings.setValue(ASK_BELOW_KEY, round(usable_threshold(threshold) * 100))
        self.settings.sync()
