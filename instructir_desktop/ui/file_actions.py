"""The window's file commands: the Open, Save and Export dialogs, Open Recent, asking before work
is lost, autosave and crash recovery. The decisions (what to read or write, where, in which
thread, what counts as saved) are the editing session's ``Files``; this module asks the person
and remembers their choices."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QMainWindow, QMenu, QMessageBox

from instructir_desktop.core.logs import record_failure
from instructir_desktop.editing.files import OPENABLE
from instructir_desktop.editing.projects import PROJECT_SUFFIX, ExportChoices
from instructir_desktop.editing.session import EditingSession
from instructir_desktop.history import ProjectError
from instructir_desktop.io import read_filter
from instructir_desktop.ui.export_dialog import ExportDialog, default_suffix, format_of
from instructir_desktop.ui.preferences import Preferences
from instructir_desktop.ui.recovery import RecoveryStore

APP_NAME = "InstructIR Desktop"
IMAGE_FILTER = read_filter()
PROJECT_FILTER = f"InstructIR projects (*{PROJECT_SUFFIX})"
# The Open dialog's first (default) filter shows photos and projects together: a project must not
# hide behind a second filter the person has to find.
OPEN_FILTER = ";;".join(
    (
        f"Photos and projects ({' '.join('*' + ext for ext in sorted(OPENABLE))})",
        PROJECT_FILTER,
        IMAGE_FILTER,
        "All files (*)",
    )
)


class FileActions(QObject):
    def __init__(
        self,
        window: QMainWindow,
        session: EditingSession,
        preferences: Preferences,
        recovery: RecoveryStore,
        *,
        can_ask: Callable[[], bool],
        warn: Callable[[str], None],
    ) -> None:
        super().__init__(window)
        self._window = window
        self._session = session
        self._preferences = preferences
        self._can_ask_person = can_ask
        self._warn = warn
        self.files = session.files
        self.recovery = recovery
        self.export_dialog: ExportDialog | None = None
        self.recent_menu = QMenu("Open &Recent", window)
        self.recent_menu.aboutToShow.connect(self.prune_recent_files)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        self.files.confirm_discard = lambda: self.may_discard()
        self.rebuild_recent_menu()

    @property
    def _can_ask(self) -> bool:
        return self._can_ask_person()

    def _question(self, text: str, default_yes: bool = False) -> bool:
        buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
        default = QMessageBox.StandardButton.Yes if default_yes else QMessageBox.StandardButton.No
        return QMessageBox.question(self._window, APP_NAME, text, buttons, default) == QMessageBox.StandardButton.Yes

    # ------------------------------------------------------------------ opening

    def choose_file(self) -> None:
        if not self.may_discard():
            return
        name, _ = QFileDialog.getOpenFileName(self._window, "Open", str(self.files.folder()), OPEN_FILTER)
        if name:
            self.open_path(Path(name), ask=False)

    def open_path(self, path: Path, *, ask: bool = True, background: bool | None = None) -> bool:
        """Open a photo or a project (asking first when work would be lost); see ``Files.open``."""
        if ask and not self.may_discard():
            return False
        return self.files.open(path, background=background)

    def opening_changed(self, opening: bool) -> None:
        if opening:
            QApplication.setOverrideCursor(Qt.CursorShape.BusyCursor)  # busy, but still usable
        else:
            QApplication.restoreOverrideCursor()

    @staticmethod
    def dropped_path(event: QDragEnterEvent | QDropEvent) -> Path | None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                if path.suffix.lower() in OPENABLE:
                    return path
        return None

    # ------------------------------------------------------------------ recent files

    def rebuild_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        recent = self._preferences.recent_files()
        for number, path in enumerate(recent, 1):
            label = f"&{number} {path.name}" if number < 10 else f"1&0 {path.name}"
            action = menu.addAction(label)
            action.setData(str(path))
            action.setStatusTip(str(path))
            action.triggered.connect(lambda _checked=False, chosen=path: self.open_recent(chosen))
        if recent:
            menu.addSeparator()
        clear = menu.addAction("&Clear Recent Files")
        clear.setEnabled(bool(recent))
        clear.triggered.connect(self.clear_recent_files)
        menu.setEnabled(True)

    def remember(self, path: Path) -> None:
        self._preferences.add_recent(path)
        self.rebuild_recent_menu()

    def recent_actions(self) -> list[QAction]:
        return [action for action in self.recent_menu.actions() if action.data()]

    def prune_recent_files(self) -> list[Path]:
        """Before the menu shows: drop the files that are gone, and say so."""
        missing = self._preferences.prune_recent()
        if missing:
            names = ", ".join(path.name for path in missing)
            self._window.statusBar().showMessage(f"Removed from Open Recent (no longer found): {names}", 8000)
        self.rebuild_recent_menu()
        return missing

    def open_recent(self, path: Path) -> bool:
        if not path.is_file():
            self._preferences.remove_recent(path)
            self.rebuild_recent_menu()
            self._warn(f"{path.name} no longer exists at {path.parent}; it was removed from Open Recent.")
            return False
        return self.open_path(path)

    def clear_recent_files(self) -> None:
        self._preferences.clear_recent()
        self.rebuild_recent_menu()

    # ------------------------------------------------------------------ saving and exporting

    def choose_export(self) -> ExportDialog | None:
        """The export dialog: file, format (from the extension), quality, bit depth, metadata, profile."""
        workspace = self._session.workspace
        if workspace.document is None:
            return None
        source = workspace.path
        writable = source is not None and format_of(source) is not None
        suggested = self.files.suggested_export(
            source.suffix if source is not None and writable else default_suffix(workspace.metadata)
        )
        if self.export_dialog is not None:
            self.export_dialog.deleteLater()
        dialog = ExportDialog(suggested, self._session.workspace.metadata, self._window)
        dialog.accepted.connect(lambda: self._export_chosen(dialog))
        self.export_dialog = dialog
        dialog.open()  # window-modal, without a nested event loop
        return dialog

    def _export_chosen(self, dialog: ExportDialog) -> None:
        options = dialog.options()
        target = options.path
        original = self.files.is_original(target)
        if (
            target.exists()
            and not original
            and self._can_ask
            and not self._question(f"{target.name} already exists. Replace it?")
        ):
            return
        replace_original = original and self._can_ask
        if replace_original:
            answer = QMessageBox.warning(
                self._window,
                APP_NAME,
                f"Replace the original photo {target.name}? It cannot be brought back.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        choices = ExportChoices(
            options.quality, options.bit_depth, options.keep_metadata, options.colour_profile == "srgb"
        )
        self.files.export(target, choices, replace_original=replace_original)

    def save_project(self) -> bool:
        project = self._session.workspace.project_path
        if project is None:
            return self.save_project_as()
        return self.files.save_project(project)

    def save_project_as(self) -> bool:
        workspace = self._session.workspace
        if workspace.document is None:
            return False
        stem = workspace.path.stem if workspace.path else "untitled"
        name, _ = QFileDialog.getSaveFileName(
            self._window, "Save project", str(self.files.folder() / f"{stem}{PROJECT_SUFFIX}"), PROJECT_FILTER
        )
        if not name:
            return False
        path = Path(name)
        if path.suffix.lower() != PROJECT_SUFFIX:
            path = path.with_name(path.name + PROJECT_SUFFIX)
        return self.files.save_project(path)

    def may_discard(self) -> bool:
        """True when no history or layers would be lost that no project holds (an export does not
        hold them), or the person agreed to lose them."""
        workspace = self._session.workspace
        if not workspace.unsaved_work or not self._can_ask:
            return True
        answer = QMessageBox.question(
            self._window,
            APP_NAME,
            f"{workspace.unsaved_summary()} Save a project before closing the photo?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Save:
            saved = self.save_project()
            self.files.wait_for_writes()
            return saved and not workspace.unsaved_work
        return answer == QMessageBox.StandardButton.Discard

    # ------------------------------------------------------------------ autosave and recovery

    def set_autosave_interval(self, seconds: int) -> None:
        """0 turns autosave off."""
        self.autosave_timer.stop()
        if seconds > 0:
            self.autosave_timer.start(seconds * 1000)

    def autosave(self) -> bool:
        return self.files.autosave(self.recovery, busy=self._session.assistant.busy)

    def offer_recovery(self, accept: bool | None = None) -> bool:
        """At start: offer the work a crashed window autosaved. True when it was restored.

        ``accept`` answers without asking (automation, tests); None asks the person, and does
        nothing when nobody can be asked (the file then waits for the next interactive start).
        """
        orphans = self.recovery.orphans()
        if not orphans:
            return False
        newest = orphans[0]
        status = self._window.statusBar()
        if accept is None:
            if not self._can_ask:
                return False
            when = time.strftime("%d %b %Y %H:%M", time.localtime(newest.stat().st_mtime))
            accept = self._question(
                f"{APP_NAME} did not close properly last time. Restore the work autosaved at {when}?", default_yes=True
            )
        if not accept:
            RecoveryStore.remove(newest)
            status.showMessage("The autosaved work was discarded", 8000)
            return False
        try:
            self.files.recover(newest)
        except Exception as error:  # a damaged autosave must not stop the window from starting
            if not isinstance(error, (ProjectError, OSError)):
                record_failure(f"restoring the autosave {newest} failed", error)
            # Set aside rather than offered again at every start.
            try:
                os.replace(newest, newest.with_suffix(".damaged"))
            except OSError:
                RecoveryStore.remove(newest)
            self._warn(f"The autosaved work could not be restored: {error}")
            return False
        try:
            self.recovery.adopt(newest)  # a second crash still leaves it behind
            self.files.mark_autosaved()
        except OSError:
            RecoveryStore.remove(newest)
        history = self._session.workspace.history
        steps = len(history) if history is not None else 0
        status.showMessage(f"Restored the autosaved work ({steps} steps). Save it to keep it.", 10000)
        return True
