"""Crash recovery: each running window autosaves into its own slot in the recovery folder.

A slot is ``autosave-<id>.irproject`` plus ``autosave-<id>.lock``, a QLockFile the window holds
while it runs. A clean close deletes both. A project whose lock is not held (its process died: the
lock is stale) was left by a crash and is offered at the next start; the slots of other running
windows are left alone.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from PySide6.QtCore import QLockFile

RECOVERY_SUFFIX = ".irproject"
PREFIX = "autosave-"


def _lock_for(path: Path) -> QLockFile:
    lock = QLockFile(str(path.with_suffix(".lock")))
    lock.setStaleLockTime(0)  # stale only when its process is gone, however old
    return lock


class RecoveryStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._path: Path | None = None
        self._lock: QLockFile | None = None

    @property
    def path(self) -> Path | None:
        """This window's autosave, when it has written one."""
        return self._path if self._path is not None and self._path.exists() else None

    def _claim(self) -> Path:
        if self._path is None or self._lock is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{PREFIX}{uuid.uuid4().hex[:12]}{RECOVERY_SUFFIX}"
            lock = _lock_for(path)
            if not lock.tryLock(0):
                raise OSError(f"cannot lock {path.with_suffix('.lock')} ({lock.error()})")
            self._path, self._lock = path, lock
        return self._path

    def target(self) -> Path:
        """Where the next autosave goes (claims the slot on first use)."""
        return self._claim()

    def discard(self) -> None:
        """The clean-close path: the autosave is no longer needed."""
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.unlock()
        self._path = self._lock = None

    def abandon(self) -> None:
        """Let go of the slot as a crash would: the file stays, the lock is released (tests, benchmarks)."""
        if self._lock is not None:
            self._lock.unlock()
        self._path = self._lock = None

    def orphans(self) -> list[Path]:
        """Autosaves left by windows that are no longer running, newest first."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.glob(f"{PREFIX}*{RECOVERY_SUFFIX}"):
            if path == self._path or not path.is_file():
                continue
            probe = _lock_for(path)
            if probe.tryLock(0):  # nobody holds it: its window is gone
                probe.unlock()
                found.append(path)
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def adopt(self, orphan: Path) -> Path:
        """Make a recovered autosave this window's own, so a second crash still leaves it behind."""
        target = self._claim()
        os.replace(orphan, target)
        return target

    @staticmethod
    def remove(orphan: Path) -> None:
        with contextlib.suppress(OSError):
            orphan.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            orphan.with_suffix(".lock").unlink(missing_ok=True)
