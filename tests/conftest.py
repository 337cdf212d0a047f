"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def single_torch_thread() -> Iterator[None]:
    """Run torch on one thread: on a small shared machine, two threads fighting a background job for
    two cores make tiny CPU workloads many times slower. Modules opt in with ``usefixtures``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def isolated_qt_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Windows created by tests read and write settings under a temporary folder, never the user's."""
    try:
        from PySide6.QtCore import QSettings
    except ImportError:  # a run without Qt installed has no settings to protect
        yield
        return
    folder = str(tmp_path_factory.mktemp("qt-settings"))
    for settings_format in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(settings_format, QSettings.Scope.UserScope, folder)
        QSettings.setPath(settings_format, QSettings.Scope.SystemScope, folder)
    yield


@pytest.fixture(autouse=True, scope="session")
def isolated_user_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Autosaves, ONNX exports, the log file and added models go to temporary folders, never the user's."""
    from instructir_desktop.core.logs import LOG_FOLDER_ENV, stop_logging
    from instructir_desktop.inference.backends.onnx_cache import CACHE_FOLDER_ENV
    from instructir_desktop.model.store import STORE_FOLDER_ENV

    folders = {CACHE_FOLDER_ENV: "cache", LOG_FOLDER_ENV: "logs", STORE_FOLDER_ENV: "models"}
    try:
        from instructir_desktop.ui.preferences import RECOVERY_FOLDER_ENV
    except ImportError:  # a run without Qt installed makes no autosaves
        pass
    else:
        folders[RECOVERY_FOLDER_ENV] = "recovery"
    with pytest.MonkeyPatch.context() as patch:
        for variable, name in folders.items():
            patch.setenv(variable, str(tmp_path_factory.mktemp(name)))
        yield
        stop_logging()


@pytest.fixture
def prefs(tmp_path):
    """A private preferences file for one window (the person's own settings are never touched)."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "prefs.ini"), QSettings.Format.IniFormat)
