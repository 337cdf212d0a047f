"""Shared fixtures."""

from __future__ import annotations

import os
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
    # Autosaves (crash recovery) too: never the user's AppDataLocation/recovery.
    from instructir_desktop.ui.preferences import RECOVERY_FOLDER_ENV

    previous = os.environ.get(RECOVERY_FOLDER_ENV)
    os.environ[RECOVERY_FOLDER_ENV] = str(tmp_path_factory.mktemp("recovery"))
    yield
    if previous is None:
        os.environ.pop(RECOVERY_FOLDER_ENV, None)
    else:
        os.environ[RECOVERY_FOLDER_ENV] = previous


@pytest.fixture(autouse=True, scope="session")
def isolated_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Models exported for ONNX Runtime go to a temporary cache folder, never the user's."""
    from instructir_desktop.inference.backends.onnx_cache import CACHE_FOLDER_ENV

    previous = os.environ.get(CACHE_FOLDER_ENV)
    os.environ[CACHE_FOLDER_ENV] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop(CACHE_FOLDER_ENV, None)
    else:
        os.environ[CACHE_FOLDER_ENV] = previous


@pytest.fixture(autouse=True, scope="session")
def isolated_log_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The log file (failures' tracebacks) goes under a temporary folder, never the user's."""
    from instructir_desktop.core.logs import LOG_FOLDER_ENV, stop_logging

    previous = os.environ.get(LOG_FOLDER_ENV)
    os.environ[LOG_FOLDER_ENV] = str(tmp_path_factory.mktemp("logs"))
    yield
    stop_logging()
    if previous is None:
        os.environ.pop(LOG_FOLDER_ENV, None)
    else:
        os.environ[LOG_FOLDER_ENV] = previous


@pytest.fixture
def prefs(tmp_path):
    """A private preferences file for one window (the person's own settings are never touched)."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "prefs.ini"), QSettings.Format.IniFormat)


@pytest.fixture(autouse=True, scope="session")
def isolated_model_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Models added by tests go to a temporary store, never the user's data folder."""
    from instructir_desktop.model.store import STORE_FOLDER_ENV

    previous = os.environ.get(STORE_FOLDER_ENV)
    os.environ[STORE_FOLDER_ENV] = str(tmp_path_factory.mktemp("models"))
    yield
    if previous is None:
        os.environ.pop(STORE_FOLDER_ENV, None)
    else:
        os.environ[STORE_FOLDER_ENV] = previous
