"""The editor window: canvas in the middle, chat and history on the right, menus and shortcuts.

The window owns the pieces and wires them; the logic of a message lives in ``Conversation``,
the document and history in ``Session``. Nothing here waits on the engine.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QSettings, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QSlider,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.history import HistoryError, ProjectError, SavedState
from instructir_desktop.inference.engine import Engine, EngineInterface
from instructir_desktop.inference.requests import ActionRequest, EngineSettings, Failed, JobContext
from instructir_desktop.io import READ_EXTENSIONS, ImageReadError, ImageWriteError, read_filter, read_image_header
from instructir_desktop.io import set_max_pixels as set_pixel_limit
from instructir_desktop.plugins.api import ActionInfo
from instructir_desktop.ui import icons
from instructir_desktop.ui.action_dialog import ActionDialog, PluginsMenu
from instructir_desktop.ui.canvas import Canvas
from instructir_desktop.ui.chat_panel import ChatPanel
from instructir_desktop.ui.conversation import Conversation
from instructir_desktop.ui.dialogs import AboutDialog, SettingsDialog
from instructir_desktop.ui.display_builder import DisplayBuilder
from instructir_desktop.ui.engine_bridge import EngineBridge
from instructir_desktop.ui.export_dialog import ExportDialog, default_suffix, format_of
from instructir_desktop.ui.history_panel import HistoryPanel, describe_history_step
from instructir_desktop.ui.layers_panel import LayersPanel
from instructir_desktop.ui.plugin_manager import PluginManagerDialog, PluginPreferences
from instructir_desktop.ui.preferences import Preferences, default_recovery_folder
from instructir_desktop.ui.qimages import MipImage, flattened_pixmap
from instructir_desktop.ui.recovery import RecoveryStore
from instructir_desktop.ui.selection_tools import SelectionTools
from instructir_desktop.ui.session import PROJECT_SUFFIX, OpenedFile, PendingSave, Session, load_file

APP_NAME = "InstructIR Desktop"
IMAGE_FILTER = read_filter()
PROJECT_FILTER = f"InstructIR projects (*{PROJECT_SUFFIX})"
OPENABLE = frozenset(READ_EXTENSIONS | {PROJECT_SUFFIX})


Shortcut = QKeySequence | QKeySequence.StandardKey | str


@dataclass(frozen=True, eq=False)
class _PendingOpen:
    """A file being read on the reader thread, and what was open when it was asked for."""

    path: Path
    history: object  # the session's history then (compared by identity)
    state: SavedState | None


@dataclass(frozen=True)
class _ReadOutcome:
    pending: _PendingOpen
    result: OpenedFile | str  # the file, or why it could not be read


def _about(path: Path, error: BaseException | str) -> str:
    """An error message that names the file, once."""
    return str(error) if path.name in str(error) else f"{path.name}: {error}"


def _action(parent: QObject, text: str, slot: object, shortcuts: tuple[Shortcut, ...] = (), tip: str = "") -> QAction:
    action = QAction(text, parent)
    action.setShortcuts([QKeySequence(s) for s in shortcuts])
    action.triggered.connect(slot)
    if tip:
        action.setStatusTip(tip)
    return action


class MainWindow(QMainWindow):
    # From the writer thread: (what to call on the GUI thread, error message or ""), as one object
    # through a queued connection.
    _written = Signal(object)
    # From the reader thread: a _ReadOutcome.
    _read = Signal(object)

    def __init__(
        self,
        engine: EngineInterface | None = None,
        settings: EngineSettings | None = None,
        *,
        preferences: QSettings | None = None,  # where settings persist (tests: a temporary ini file)
        recovery_folder: Path | None = None,  # where autosaves go (None: AppDataLocation/recovery)
    ) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.resize(1280, 800)
        # False in tests and automation: no modal dialogs (they would wait for a person forever).
        self.interactive = True
        self.preferences = Preferences(preferences)
        self.session = Session(self)
        # What the engine runs with: given, else the engine's own, else the persisted settings.
        engine_settings = settings if settings is not None else getattr(engine, "settings", None)
        self.engine_settings: EngineSettings = (
            engine_settings if isinstance(engine_settings, EngineSettings) else self.preferences.engine_settings()
        )
        # The engine only starts its worker thread here; the model loads there on first use.
        self.bridge = EngineBridge(engine if engine is not None else Engine(self.engine_settings), self)
        self.recovery = RecoveryStore(recovery_folder if recovery_folder is not None else default_recovery_folder())
        self._autosaved: tuple[int, int, int, int] | None = None  # what the autosave holds (see ``autosave``)
        self._writer_pool: ThreadPoolExecutor | None = None
        self._writing: concurrent.futures.Future[None] | None = None
        self._written.connect(self._on_written, Qt.ConnectionType.QueuedConnection)
        self._reader_pool: ThreadPoolExecutor | None = None
        self._pending_open: _PendingOpen | None = None  # a file being read on the reader thread
        self._read.connect(self._on_read, Qt.ConnectionType.QueuedConnection)
        # Photos larger than this are opened, saved and exported on background threads, and so
        # are projects whose file is larger than large_project_bytes.
        self.large_photo_pixels = 1_000_000
        self.large_project_bytes = 4_000_000
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        self.set_autosave_interval(self.preferences.autosave_seconds())
        set_pixel_limit(self.preferences.max_pixels())
        self.export_dialog: ExportDialog | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.about_dialog: AboutDialog | None = None

        self.canvas = Canvas()
        self.compare_bar = QWidget()
        bar = QHBoxLayout(self.compare_bar)
        bar.setContentsMargins(8, 2, 8, 2)
        self.compare_left_label = QLabel()
        self.compare_right_label = QLabel()
        self.split_slider = QSlider(Qt.Orientation.Horizontal)
        self.split_slider.setRange(0, 1000)
        self.split_slider.setValue(500)
        self.split_slider.valueChanged.connect(lambda value: self.canvas.set_split(value / 1000))
        close_compare = QPushButton("Close compare")
        close_compare.clicked.connect(self.end_compare)
        bar.addWidget(self.compare_left_label)
        bar.addWidget(self.split_slider, 1)
        bar.addWidget(self.compare_right_label)
        bar.addWidget(close_compare)
        self.compare_bar.setVisible(False)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.canvas, 1)
        column.addWidget(self.compare_bar)
        self.setCentralWidget(central)

        self.chat = ChatPanel()
        self.history_panel = HistoryPanel()
        self.chat_dock = self._dock("Chat", self.chat)
        self.history_dock = self._dock("History", self.history_panel)
        self.layers_panel = LayersPanel(self.session, settings=preferences)
        self.layers_dock = self._dock("Layers", self.layers_panel)
        self.tabifyDockWidget(self.history_dock, self.layers_dock)
        self.history_dock.raise_()
        self.selection_tools = SelectionTools(self.canvas, self.session, self)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.selection_tools.toolbar)
        self.resizeDocks([self.chat_dock, self.history_dock], [380, 380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.chat_dock, self.history_dock], [480, 300], Qt.Orientation.Vertical)
        # Manifests only: no plugin code is imported until one of its commands runs.
        self.plugin_preferences = PluginPreferences(preferences)
        self.plugins = self.plugin_preferences.build_host()
        self.plugin_manager: PluginManagerDialog | None = None
        self.action_dialog: ActionDialog | None = None
        self.conversation = Conversation(
            self.session, self.bridge, self.chat, self, plugins=self.plugins, canvas=self.canvas
        )

        self._build_menus()
        self._build_select_and_layer_menus()
        self._build_plugins_menu()
        self.menuBar().addMenu(self.help_menu)
        self._build_main_toolbar()
        self.apply_icons()
        self.size_label = QLabel()
        self.zoom_label = QLabel()
        self.engine_label = QLabel("Model loads on first use")
        for label in (self.size_label, self.zoom_label, self.engine_label):
            self.statusBar().addPermanentWidget(label)
        self.statusBar().showMessage("Open a photo to begin")

        self.canvas.zoom_changed.connect(
            lambda zoom: self.zoom_label.setText(f"{zoom * 100:.0f}%" if self.canvas.has_image else "")
        )
        self.session.changed.connect(self._document_changed)
        self.session.opened.connect(self._document_opened)
        self.history_panel.index_chosen.connect(self.show_history_index)
        self.history_panel.compare_requested.connect(self.compare)
        self.history_panel.compare_closed.connect(self.end_compare)
        self.bridge.finished.connect(self._update_engine_status)
        self.bridge.failed.connect(self._on_preload_failed)
        self._shown: tuple[int, int] | None = None  # (document id, revision) on the canvas
        self.display_builder = DisplayBuilder(self)
        self.display_builder.built.connect(self._display_built)
        self.compare_builder = DisplayBuilder(self)
        self.compare_builder.built.connect(self._compare_built)
        self._compare_choice: tuple[int, int] = (0, 0)
        self.setAcceptDrops(True)
        self._document_changed()

    def _dock(self, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{title.lower()}Dock")
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        dock.setMinimumWidth(320)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        return dock

    def _build_menus(self) -> None:
        self.open_action = _action(self, "&Open…", self.choose_file, (QKeySequence.StandardKey.Open,))
        self.export_action = _action(self, "&Export As…", self.choose_export, ("Ctrl+Shift+E",))
        self.save_project_action = _action(self, "&Save Project", self.save_project, (QKeySequence.StandardKey.Save,))
        self.save_project_as_action = _action(self, "Save Project &As…", self.save_project_as, ("Ctrl+Shift+S",))
        quit_action = _action(self, "&Quit", self.close, (QKeySequence.StandardKey.Quit,))
        self.settings_action = _action(self, "&Settings…", self.open_settings, ("Ctrl+,",))
        self.about_action = _action(self, "&About InstructIR Desktop", self.open_about)
        self.undo_action = _action(self, "&Undo", self.undo, ("Ctrl+Z",))
        self.redo_action = _action(self, "&Redo", self.redo, ("Ctrl+Shift+Z", "Ctrl+Y"))
        self.zoom_in_action = _action(self, "Zoom &In", self.canvas.zoom_in, ("Ctrl+=", "Ctrl++"))
        self.zoom_out_action = _action(self, "Zoom &Out", self.canvas.zoom_out, ("Ctrl+-",))
        self.fit_action = _action(self, "&Fit to Window", self.canvas.fit, ("Ctrl+0",))
        self.actual_size_action = _action(self, "&Actual Size (100%)", self.canvas.actual_size, ("Ctrl+1",))
        focus_chat = _action(self, "&Type an Instruction", self.chat.input.setFocus, ("Ctrl+L",))
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.open_action)
        self.recent_menu = QMenu("Open &Recent", self)
        self.recent_menu.aboutToShow.connect(self.prune_recent_files)
        file_menu.addMenu(self.recent_menu)
        for action in (self.save_project_action, self.save_project_as_action, self.export_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        edit_menu = self.menuBar().addMenu("&Edit")
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        edit_menu.addSeparator()
        edit_menu.addAction(focus_chat)
        edit_menu.addSeparator()
        edit_menu.addAction(self.settings_action)
        view_menu = self.menuBar().addMenu("&View")
        for action in (self.zoom_in_action, self.zoom_out_action, self.fit_action, self.actual_size_action):
            view_menu.addAction(action)
        self.help_menu = QMenu("&Help", self)
        self.help_menu.addAction(self.about_action)
        self._rebuild_recent_menu()
        # Window-wide: the shortcuts work whichever panel has the focus.
        for action in self.findChildren(QAction):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            self.addAction(action)

    def _build_main_toolbar(self) -> None:
        self.main_toolbar = QToolBar("Main")
        self.main_toolbar.setObjectName("mainToolbar")
        for group in (
            (self.open_action, self.save_project_action, self.export_action),
            (self.undo_action, self.redo_action),
            (self.zoom_in_action, self.zoom_out_action, self.fit_action, self.actual_size_action),
        ):
            for action in group:
                self.main_toolbar.addAction(action)
            self.main_toolbar.addSeparator()
        # Before the selection tools, on the same row.
        self.insertToolBar(self.selection_tools.toolbar, self.main_toolbar)

    def apply_icons(self) -> None:
        """Give actions and buttons their icons, tinted for the current palette (again after a theme change)."""
        tools, layers = self.selection_tools, self.layers_panel
        named: tuple[tuple[QAction, str], ...] = (
            (self.open_action, "open"),
            (self.save_project_action, "save"),
            (self.export_action, "export"),
            (self.undo_action, "undo"),
            (self.redo_action, "redo"),
            (self.zoom_in_action, "zoom-in"),
            (self.zoom_out_action, "zoom-out"),
            (self.fit_action, "zoom-fit"),
            (self.actual_size_action, "zoom-actual"),
            (self.settings_action, "settings"),
            (self.about_action, "about"),
            (tools.hand_action, "hand"),
            (tools.rectangle_action, "select-rectangle"),
            (tools.brush_action, "select-brush"),
            (tools.select_all_action, "select-all"),
            (tools.deselect_action, "deselect"),
            (tools.invert_action, "select-invert"),
            (layers.duplicate_action, "layer-duplicate"),
            (layers.delete_action, "layer-delete"),
            (layers.move_up_action, "layer-up"),
            (layers.move_down_action, "layer-down"),
            (layers.merge_down_action, "layer-merge"),
            (self.plugins_menu.manage_action, "plugins"),
        )
        for action, name in named:
            action.setIcon(icons.icon(name))
        self.chat.send_button.setIcon(icons.icon("send"))
        self.history_panel.compare_button.setIcon(icons.icon("compare"))
        self.setWindowIcon(icons.app_icon())

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.ApplicationPaletteChange, QEvent.Type.PaletteChange):
            self.apply_icons()  # light ↔ dark: retint
        super().changeEvent(event)

    def _build_select_and_layer_menus(self) -> None:
        tools, layers = self.selection_tools, self.layers_panel
        select_menu = self.menuBar().addMenu("&Select")
        for action in tools.actions:
            select_menu.addAction(action)
            if action is tools.brush_action:
                select_menu.addSeparator()
        layer_menu = self.menuBar().addMenu("&Layer")
        layer_menu.addAction(layers.new_layer_action)
        layer_menu.addSeparator()
        for action in layers.actions_for_menu:
            layer_menu.addAction(action)
        for action in (*tools.actions, layers.new_layer_action, *layers.actions_for_menu):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            self.addAction(action)
        layers.message.connect(lambda text: self.statusBar().showMessage(text, 8000))

    # ------------------------------------------------------------------ files

    @property
    def path(self) -> Path | None:
        return self.session.path

    def choose_file(self) -> None:
        if not self._may_discard():
            return
        name, _ = QFileDialog.getOpenFileName(
            self, "Open", str(self._folder()), f"{IMAGE_FILTER};;{PROJECT_FILTER};;All files (*)"
        )
        if name:
            self.open_path(Path(name), ask=False)

    def open_path(self, path: Path, *, ask: bool = True, background: bool | None = None) -> bool:
        """Open a photo or a project; on failure say why and keep what is open.

        ``background`` None reads large files (``large_photo_pixels``, ``large_project_bytes``) on
        the reader thread: True then means the file is being opened (``opening``); the status bar
        says when it shows, or why it could not be opened. A newer open supersedes it.
        """
        if ask and not self._may_discard():
            return False
        if background is None:
            background = self._is_large_file(path)
        self._end_pending_open()
        if not background:
            try:
                opened = load_file(path)
            except (ImageReadError, ProjectError, OSError) as error:
                self._warn(_about(path, error))
                return False
            self._show_opened(path, opened)
            return True
        if self._reader_pool is None:
            self._reader_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-reader")
        pending = _PendingOpen(path, self.session.history, self._current_state())
        self._pending_open = pending
        QApplication.setOverrideCursor(Qt.CursorShape.BusyCursor)  # busy, but still usable

        def read() -> None:
            result: OpenedFile | str
            try:
                result = load_file(path)
            except (ImageReadError, ProjectError, OSError) as error:
                result = _about(path, error)
            except MemoryError:
                result = f"{path.name}: there is not enough memory to open it"
            with contextlib.suppress(RuntimeError):  # the window is gone
                self._read.emit(_ReadOutcome(pending, result))

        self._reader_pool.submit(read)
        self.statusBar().showMessage(f"Opening {path.name}…")
        return True

    @property
    def opening(self) -> bool:
        """A file is being read on the reader thread and has not been shown yet."""
        return self._pending_open is not None

    def _is_large_file(self, path: Path) -> bool:
        try:
            if path.suffix.lower() == PROJECT_SUFFIX:
                return path.stat().st_size > self.large_project_bytes
            header = read_image_header(path)
        except (ImageReadError, OSError):
            return False  # read in the foreground, which says what is wrong with it
        return header.width * header.height > self.large_photo_pixels

    def _current_state(self) -> SavedState | None:
        history = self.session.history
        return None if history is None else history.saved_state()

    def _end_pending_open(self) -> None:
        if self._pending_open is not None:
            self._pending_open = None
            QApplication.restoreOverrideCursor()

    @Slot(object)
    def _on_read(self, outcome: _ReadOutcome) -> None:
        pending = outcome.pending
        if pending is not self._pending_open:
            return  # superseded by a newer open, or the window is closing
        self._end_pending_open()
        if isinstance(outcome.result, str):
            self._warn(outcome.result)
            return
        # Work done on the open photo while the file was read was not part of the "discard?"
        # answer: ask again before it goes.
        changed = self.session.history is not pending.history or self._current_state() != pending.state
        if changed and self.session.modified and not self._may_discard():
            self.statusBar().showMessage(f"Did not open {pending.path.name}", 8000)
            return
        self._show_opened(pending.path, outcome.result)

    def _show_opened(self, path: Path, opened: OpenedFile) -> None:
        self.session.adopt(opened)
        # Work on the previous photo can no longer be applied (it would be stale): stop it.
        self.conversation.cancel_all()
        self._autosaved = None
        self.preferences.add_recent(path)
        self._rebuild_recent_menu()
        document = self.session.document
        assert document is not None
        self.statusBar().showMessage(f"Opened {path.name}: {document.width} × {document.height}", 8000)
        for notice in opened.notices:  # what reading dropped or changed: said once, in the chat
            self.chat.add_message("assistant", f"{path.name}: {notice}")

    # ------------------------------------------------------------------ recent files

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.preferences.recent_files()
        for number, path in enumerate(recent, 1):
            label = f"&{number} {path.name}" if number < 10 else f"1&0 {path.name}"
            action = self.recent_menu.addAction(label)
            action.setData(str(path))
            action.setStatusTip(str(path))
            action.triggered.connect(lambda _checked=False, chosen=path: self.open_recent(chosen))
        if recent:
            self.recent_menu.addSeparator()
        clear = self.recent_menu.addAction("&Clear Recent Files")
        clear.setEnabled(bool(recent))
        clear.triggered.connect(self.clear_recent_files)
        self.recent_menu.setEnabled(True)

    def recent_actions(self) -> list[QAction]:
        return [action for action in self.recent_menu.actions() if action.data()]

    def prune_recent_files(self) -> list[Path]:
        """Before the menu shows: drop the files that are gone, and say so."""
        missing = self.preferences.prune_recent()
        if missing:
            names = ", ".join(path.name for path in missing)
            self.statusBar().showMessage(f"Removed from Open Recent (no longer found): {names}", 8000)
        self._rebuild_recent_menu()
        return missing

    def open_recent(self, path: Path) -> bool:
        if not path.is_file():
            self.preferences.remove_recent(path)
            self._rebuild_recent_menu()
            self._warn(f"{path.name} no longer exists at {path.parent}; it was removed from Open Recent.")
            return False
        return self.open_path(path)

    def clear_recent_files(self) -> None:
        self.preferences.clear_recent()
        self._rebuild_recent_menu()

    def choose_export(self) -> ExportDialog | None:
        """The export dialog: file, format (from the extension), JPEG/WebP quality, 8 or 16 bits (PNG/TIFF)."""
        if self.session.document is None:
            return None
        source = self.session.path
        metadata = self.session.metadata
        writable = source is not None and format_of(source) is not None
        suffix = source.suffix if source is not None and writable else default_suffix(metadata)
        stem = source.stem if source is not None else "untitled"
        suggested = self._folder() / f"{stem}-restored{suffix}"
        if self.export_dialog is not None:
            self.export_dialog.deleteLater()
        dialog = ExportDialog(suggested, metadata, self)
        dialog.accepted.connect(lambda: self._export_chosen(dialog))
        self.export_dialog = dialog
        dialog.open()  # window-modal, without a nested event loop
        return dialog

    def _export_chosen(self, dialog: ExportDialog) -> None:
        options = dialog.options()
        target = options.path
        if target.exists() and not self._is_original(target) and self.interactive and self.isVisible():
            answer = QMessageBox.question(
                self,
                APP_NAME,
                f"{target.name} already exists. Replace it?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        replace_original = self._is_original(target) and self.interactive and self.isVisible()
        if replace_original:
            answer = QMessageBox.warning(
                self,
                APP_NAME,
                f"Replace the original photo {target.name}? It cannot be brought back.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.export_to(
            target,
            replace_original=replace_original,
            quality=options.quality,
            bit_depth=options.bit_depth,
            keep_metadata=options.keep_metadata,
            colour_profile=options.colour_profile,
        )

    def export_to(
        self,
        path: Path,
        *,
        replace_original: bool = False,
        quality: int = 95,
        bit_depth: int | None = None,
        background: bool | None = None,
        keep_metadata: bool = True,
        colour_profile: str = "original",
    ) -> bool:
        """Write the current image with the source's metadata. Never the original, unless asked explicitly.

        ``bit_depth`` None keeps the source's where the format can hold it. ``background`` None
        writes photos over ``large_photo_pixels`` on the writer thread: True then means the
        export started, and the status bar says "Exported" (or why not) when it is written.
        """
        if self.session.document is None:
            return False
        if self._is_original(path) and not replace_original:
            self._warn(f"{path.name} is the original photo; choose another name to export to.")
            return False
        job, pending = self.session.export_job(
            path, quality=quality, bit_depth=bit_depth, keep_metadata=keep_metadata, colour_profile=colour_profile
        )
        return self._write(
            job,
            lambda error: self._export_finished(path, pending, error),
            background=self._large_document() if background is None else background,
            busy_message=f"Exporting {path.name}…",
        )

    def _export_finished(self, path: Path, pending: PendingSave, error: str) -> None:
        if error:
            self._warn(_about(path, error))
            return
        self.session.exported(pending)
        self.statusBar().showMessage(f"Exported {path.name}", 8000)

    def save_project(self) -> bool:
        if self.session.project_path is None:
            return self.save_project_as()
        return self.save_project_to(self.session.project_path)

    def save_project_as(self) -> bool:
        if self.session.document is None:
            return False
        folder = self._folder()
        stem = self.session.path.stem if self.session.path else "untitled"
        name, _ = QFileDialog.getSaveFileName(
            self, "Save project", str(folder / f"{stem}{PROJECT_SUFFIX}"), PROJECT_FILTER
        )
        if not name:
            return False
        path = Path(name)
        if path.suffix.lower() != PROJECT_SUFFIX:
            path = path.with_name(path.name + PROJECT_SUFFIX)
        return self.save_project_to(path)

    def save_project_to(self, path: Path) -> bool:
        """Save the project (True: saved, or for a large photo, being saved on the writer thread)."""
        if self.session.document is None:
            return False
        job, pending = self.session.save_project_job(path)
        # A large photo's project takes seconds to compress and write; the job works from a
        # copy-on-write snapshot, and the work counts as saved once the file is complete.
        return self._write(
            job,
            lambda error: self._save_finished(path, pending, error),
            background=self._large_document(),
            busy_message=f"Saving {path.name}…",
        )

    def _large_document(self) -> bool:
        """The open photo is large enough to save and export on the writer thread."""
        document = self.session.document
        return document is not None and document.height * document.width > self.large_photo_pixels

    def _write(
        self, job: Callable[[], object], done: Callable[[str], None], *, background: bool, busy_message: str
    ) -> bool:
        """Run a save or export ``job``, then ``done`` with its error ("" for none). In the
        background: True means it started, and ``busy_message`` shows meanwhile."""
        if self.writing:
            self.wait_for_writes()  # one writer at a time; an autosave is short
        if background:
            self.statusBar().showMessage(busy_message)
            self._write_in_background(job, done)
            return True
        try:
            job()
        except (ImageWriteError, OSError) as error:
            done(str(error))
            return False
        done("")
        return True

    def _save_finished(self, path: Path, pending: PendingSave, error: str) -> None:
        if error:
            self._warn(_about(path, error))
            return
        self.session.saved(path, pending)
        self.preferences.add_recent(path)
        self._rebuild_recent_menu()
        self.statusBar().showMessage(f"Saved {path.name}", 8000)

    def _write_in_background(self, job: Callable[[], object], done: Callable[[str], None]) -> None:
        """Run ``job`` on the writer thread, then ``done`` with its error message ("" for none) on
        the GUI thread; ``done`` is posted before the job counts as finished (``wait_for_writes``)."""
        if self._writer_pool is None:
            self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="project-writer")

        def write() -> None:
            try:
                job()
            except Exception as error:  # reported to the person on the GUI thread
                message = str(error) or type(error).__name__
            else:
                message = ""
            with contextlib.suppress(RuntimeError):  # the window is gone
                self._written.emit((done, message))

        self._writing = self._writer_pool.submit(write)

    @Slot(object)
    def _on_written(self, outcome: tuple[Callable[[str], None], str]) -> None:
        done, error = outcome
        done(error)

    def _is_original(self, path: Path) -> bool:
        source = self.session.path
        return source is not None and source.suffix.lower() != PROJECT_SUFFIX and path.resolve() == source.resolve()

    def _folder(self) -> Path:
        return self.session.path.parent if self.session.path else Path.home()

    def _warn(self, message: str) -> None:
        self.statusBar().showMessage(message)
        if self.interactive and self.isVisible():
            QMessageBox.warning(self, APP_NAME, message)

    # ------------------------------------------------------------------ drag and drop

    @staticmethod
    def _dropped_path(event: QDragEnterEvent | QDropEvent) -> Path | None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                if path.suffix.lower() in OPENABLE:
                    return path
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_path(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_path(event)
        if path is not None:
            event.acceptProposedAction()
            self.open_path(path)

    # ------------------------------------------------------------------ history and compare

    def undo(self) -> None:
        if self.session.undo():
            self.statusBar().showMessage("Undone", 3000)

    def redo(self) -> None:
        if self.session.redo():
            self.statusBar().showMessage("Redone", 3000)

    def show_history_index(self, index: int) -> None:
        try:
            self.session.set_index(index)
        except HistoryError as error:
            self._warn(str(error))
            self.history_panel.refresh(self.session.history, self.session.original_thumbnail)

    def compare(self, left: int, right: int) -> bool:
        """Show two states of the history with a split line between them (same zoom and scroll)."""
        history = self.session.history
        document = self.session.document
        if history is None or document is None:
            return False
        try:
            for index in (left, right):
                history.check_reachable(index)
        except (HistoryError, IndexError) as error:
            self._warn(str(error))
            self.history_panel.set_comparing(False)
            return False
        self._compare_choice = (left, right)
        self.compare_left_label.setText(f"◀ {self._state_name(left)}")
        self.compare_right_label.setText(f"{self._state_name(right)} ▶")
        self.compare_bar.setVisible(True)
        self.history_panel.set_comparing(True)
        if document.height * document.width <= self.compare_builder.synchronous_pixels:
            self._show_compare(flattened_pixmap(history.image_at(left)), flattened_pixmap(history.image_at(right)))
            return True
        # Rebuilding two states of a large photo takes a second: on the display thread, from a
        # copy-on-write snapshot, while the canvas keeps showing the photo.
        snapshot = history.snapshot()

        def build() -> tuple[MipImage, MipImage]:
            return flattened_pixmap(snapshot.image_at(left)), flattened_pixmap(snapshot.image_at(right))

        key = (self._compare_key(), left, right)
        self.compare_builder.submit(key, build, lambda: (self._compare_key(), *self._compare_choice))
        self.statusBar().showMessage("Preparing the comparison…", 3000)
        return True

    def _compare_key(self) -> tuple[int, int, int, int] | None:
        return self._history_key() if self.history_panel.comparing else None

    def _compare_built(self, _key: object, images: tuple[MipImage, MipImage] | None) -> None:
        if images is None:  # the background build failed: do it here, where the error surfaces
            history = self.session.history
            if history is None:
                return
            left, right = self._compare_choice
            images = (flattened_pixmap(history.image_at(left)), flattened_pixmap(history.image_at(right)))
        self._show_compare(*images)

    def _show_compare(self, left: MipImage, right: MipImage) -> None:
        self.canvas.set_compare(left, right)
        self.canvas.set_split(self.split_slider.value() / 1000)

    def end_compare(self) -> None:
        self.compare_builder.forget()
        if not self.canvas.comparing:
            return
        self.compare_bar.setVisible(False)
        self.history_panel.set_comparing(False)
        self._shown = None
        self._refresh_canvas()

    def _state_name(self, index: int) -> str:
        history = self.session.history
        if history is None or index == 0:
            return "Original"
        return f"{index}. {history.steps[index - 1].label}"

    # ------------------------------------------------------------------ refreshing

    def _document_opened(self) -> None:
        self.chat.input.setFocus()

    def _document_changed(self) -> None:
        if self.canvas.comparing:
            self.compare_bar.setVisible(False)
            self.history_panel.set_comparing(False)
            self._shown = None
        self._refresh_canvas()
        history = self.session.history
        self.history_panel.refresh(history, self.session.original_thumbnail)
        document = self.session.document
        has_document = document is not None
        for action in (self.export_action, self.save_project_action, self.save_project_as_action):
            action.setEnabled(has_document)
        self.undo_action.setEnabled(history is not None and history.can_undo)
        self.redo_action.setEnabled(history is not None and history.can_redo)
        if history is not None and history.can_undo:
            self.undo_action.setText(f"&Undo {describe_history_step(history.steps[history.index - 1]).splitlines()[0]}")
        else:
            self.undo_action.setText("&Undo")
        name = self.session.path.name if self.session.path else ""
        title = f"{name}{' •' if self.session.modified else ''} — {APP_NAME}" if name else APP_NAME
        self.setWindowTitle(title)
        self.size_label.setText(f"{document.width} × {document.height}" if document else "")

    def _refresh_canvas(self) -> None:
        """Convert the document to a pixmap only when it changed (never per repaint)."""
        document = self.session.document
        key = self.session.image_key  # not moved by a new selection or active layer
        if key == self._shown and not self.canvas.comparing:
            return
        self._shown = key
        if document is None:
            self._show_display_image(None)
            return
        image = self.display_builder.build(key, document, lambda: self.session.image_key)
        if image is not None:
            self._show_display_image(image)
        # else: a large photo builds on the display thread and arrives through _display_built

    @property
    def canvas_up_to_date(self) -> bool:
        """The canvas shows the document as it is now (a large photo's image may still be building)."""
        return not self.display_builder.busy and self._shown == self.session.image_key

    def _display_built(self, key: object, image: MipImage | None) -> None:
        document = self.session.document
        if key != self.session.image_key or document is None:
            return
        if self.history_panel.comparing:
            self._shown = None  # two history states are on the canvas; ending the compare rebuilds
            return
        if image is None:  # the background build failed: build here, where an error surfaces
            image = flattened_pixmap(document.flatten())
        self._show_display_image(image)

    def _show_display_image(self, image: MipImage | None) -> None:
        if self.canvas.comparing:
            self.canvas.end_compare(image)
        else:
            self.canvas.set_pixmap(image)

    def preload_model(self) -> int:
        """Load the model on the worker now, so the first instruction does not wait for it.

        Called just after the window shows; the load happens on the engine's thread.
        """
        self.engine_label.setText("Loading the model…")

        def load(job: JobContext) -> None:
            job.runtime()

        self._preload_id = self.bridge.submit(ActionRequest(run=load, label="Loading the model"))
        return self._preload_id

    def _on_preload_failed(self, event: Failed) -> None:
        if event.request_id == getattr(self, "_preload_id", None):
            self.engine_label.setText("No model loaded")
            self.statusBar().showMessage(f"The restoration model could not be loaded: {event.message}")

    def _update_engine_status(self) -> None:
        status = getattr(self.bridge.engine, "status", None)
        if status is not None:
            self.engine_label.setText(f"{status.model_name} · {status.device}")

    # ------------------------------------------------------------------ settings and about

    def open_settings(self) -> SettingsDialog:
        if self.settings_dialog is not None:
            self.settings_dialog.deleteLater()
        dialog = SettingsDialog(
            self.engine_settings, self.preferences.autosave_seconds(), self.session.restore_into_new_layer, self
        )
        dialog.accepted.connect(
            lambda: self.apply_settings(dialog.engine_settings(), dialog.autosave_seconds(), dialog.new_layer())
        )
        dialog.accepted.connect(lambda: self.set_max_pixels(dialog.max_pixels()))
        self.settings_dialog = dialog
        dialog.open()
        return dialog

    def apply_settings(
        self, settings: EngineSettings, autosave_seconds: int | None = None, new_layer: bool | None = None
    ) -> None:
        """Persist and apply: the engine reloads its model from the next job when the settings changed it."""
        self.preferences.set_engine_settings(settings)
        if settings != self.engine_settings:
            self.engine_settings = settings
            self.bridge.engine.configure(settings)
            model = Path(settings.model_folder).name if settings.model_folder else "bundled model"
            self.engine_label.setText(f"{model} · {settings.device} (loads on next use)")
        if autosave_seconds is not None:
            self.preferences.set_autosave_seconds(autosave_seconds)
            self.set_autosave_interval(autosave_seconds)
        if new_layer is not None:
            self.layers_panel.new_layer_action.setChecked(new_layer)
        self.statusBar().showMessage("Settings saved", 4000)

    def set_max_pixels(self, limit: int) -> None:
        """The largest photo any reader opens (bigger ones are refused as possible decompression bombs)."""
        self.preferences.set_max_pixels(limit)
        set_pixel_limit(limit)

    def model_and_device(self) -> tuple[str, str]:
        status = getattr(self.bridge.engine, "status", None)
        if status is not None:
            return status.model_name, status.device
        settings = self.engine_settings
        model = settings.model_folder or "the bundled model"
        return f"{model} (loads on first use)", settings.device

    def open_about(self) -> AboutDialog:
        if self.about_dialog is not None:
            self.about_dialog.deleteLater()
        self.about_dialog = AboutDialog(*self.model_and_device(), parent=self)
        self.about_dialog.open()
        return self.about_dialog

    # ------------------------------------------------------------------ autosave and recovery

    def set_autosave_interval(self, seconds: int) -> None:
        """0 turns autosave off."""
        self.autosave_timer.stop()
        if seconds > 0:
            self.autosave_timer.start(seconds * 1000)

    def _history_key(self) -> tuple[int, int, int, int] | None:
        """Moves whenever the history or the pixels move (autosave and compare are keyed on it)."""
        history = self.session.history
        if history is None:
            return None
        return (id(history), history.index, len(history), history.document.revision)

    def autosave(self) -> bool:
        """Write the recovery file if there is unsaved work that changed since the last autosave.

        Skipped while a restoration runs (the GUI thread stays free for it; the next tick catches up).
        A document with nothing unsaved needs no recovery file: it is deleted.
        """
        if not self.session.modified:
            self.wait_for_writes()  # or a write still running would bring the file back
            if self.recovery.path is not None:
                self.recovery.discard()
            self._autosaved = None
            return False
        if self.conversation.busy or self.writing:
            return False
        key = self._history_key()
        if key == self._autosaved and (self.recovery.path is not None or self.writing):
            return False
        try:
            job = self.session.autosave_job(self.recovery.target())
        except (OSError, ValueError) as error:
            self.statusBar().showMessage(f"Autosave failed: {error}", 8000)
            return False
        # Compressing and writing a 24 MP project takes seconds: that happens on another thread,
        # from a snapshot that shares the pixels copy-on-write, so the window never waits for it.
        self._autosaved = key
        self._write_in_background(job, lambda error: self._autosave_finished(key, error))
        return True

    @property
    def writing(self) -> bool:
        """An autosave or a project save is being written on the writer thread."""
        return self._writing is not None and not self._writing.done()

    def wait_for_writes(self, timeout: float | None = 120.0) -> None:
        """Block until a running autosave or save has been written (before closing, deleting, tests)."""
        if self._writing is not None:
            concurrent.futures.wait([self._writing], timeout=timeout)
        QCoreApplication.sendPostedEvents(self)  # deliver its "finished" now

    def _autosave_finished(self, key: object, error: str) -> None:
        if not error:
            return
        if self._autosaved == key:
            self._autosaved = None  # try again at the next tick
        self.statusBar().showMessage(f"Autosave failed: {error}", 8000)

    def offer_recovery(self, accept: bool | None = None) -> bool:
        """At start: offer the work a crashed window autosaved. True when it was restored.

        ``accept`` answers without asking (automation, tests); None asks the person, and does
        nothing when nobody can be asked (the file then waits for the next interactive start).
        """
        orphans = self.recovery.orphans()
        if not orphans:
            return False
        newest = orphans[0]
        if accept is None:
            if not (self.interactive and self.isVisible()):
                return False
            when = time.strftime("%d %b %Y %H:%M", time.localtime(newest.stat().st_mtime))
            answer = QMessageBox.question(
                self,
                APP_NAME,
                f"{APP_NAME} did not close properly last time. Restore the work autosaved at {when}?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.Yes,
            )
            accept = answer == QMessageBox.StandardButton.Yes
        if not accept:
            RecoveryStore.remove(newest)
            self.statusBar().showMessage("The autosaved work was discarded", 8000)
            return False
        try:
            self.session.open_recovered(newest)
        except (ProjectError, OSError) as error:
            # Set aside rather than offered again at every start.
            try:
                os.replace(newest, newest.with_suffix(".damaged"))
            except OSError:
                RecoveryStore.remove(newest)
            self._warn(f"The autosaved work could not be restored: {error}")
            return False
        self.conversation.cancel_all()
        try:
            self.recovery.adopt(newest)  # a second crash still leaves it behind
            self._autosaved = self._history_key()
        except OSError:
            RecoveryStore.remove(newest)
            self._autosaved = None
        history = self.session.history
        steps = len(history) if history is not None else 0
        self.statusBar().showMessage(f"Restored the autosaved work ({steps} steps). Save it to keep it.", 10000)
        return True

    # ------------------------------------------------------------------ plugins

    def _build_plugins_menu(self) -> None:
        self.plugins_menu = PluginsMenu(self)
        self.plugins_menu.action_chosen.connect(self.choose_plugin_action)
        self.plugins_menu.manage_requested.connect(self.open_plugin_manager)
        self.menuBar().addMenu(self.plugins_menu)
        self.plugins_menu.rebuild(self.plugins)

    def choose_plugin_action(self, action: ActionInfo) -> None:
        """From the Plugins menu: ask for its parameters (if any), then run it like a slash command."""
        if not action.parameters:
            self.conversation.run_action(action)
            return
        if self.action_dialog is not None:
            self.action_dialog.deleteLater()  # one at a time; the last one stays inspectable
        dialog = ActionDialog(action, self)
        dialog.accepted.connect(lambda: self.conversation.run_action(action, dialog.values()))
        self.action_dialog = dialog
        dialog.open()  # window-modal, without a nested event loop

    def open_plugin_manager(self) -> PluginManagerDialog:
        if self.plugin_manager is None:
            self.plugin_manager = PluginManagerDialog(self.plugins, self.plugin_preferences, self)
            self.plugin_manager.enabled_changed.connect(lambda *_: self.plugins_menu.rebuild(self.plugins))
            self.plugin_manager.folders_changed.connect(self.reload_plugins)
        self.plugin_manager.set_host(self.plugins)  # shows errors found since it was last open
        self.plugin_manager.show()
        self.plugin_manager.raise_()
        return self.plugin_manager

    def reload_plugins(self) -> None:
        """Rescan every plugin source (a folder was added); a queued run finds its action in the new host."""
        self.plugins = self.plugin_preferences.build_host()
        self.conversation.plugins = self.plugins
        self.plugins_menu.rebuild(self.plugins)
        if self.plugin_manager is not None:
            self.plugin_manager.set_host(self.plugins)

    # ------------------------------------------------------------------ closing

    def _may_discard(self) -> bool:
        """True when nothing unsaved would be lost, or the person agreed to lose it."""
        if not self.session.modified or not (self.interactive and self.isVisible()):
            return True
        answer = QMessageBox.question(
            self,
            APP_NAME,
            "The photo has changes that were not exported or saved as a project. Discard them?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Save:
            saved = self.save_project()
            self.wait_for_writes()
            return saved and not self.session.modified
        return answer == QMessageBox.StandardButton.Discard

    def closeEvent(self, event: QCloseEvent) -> None:
        self.wait_for_writes()  # a save still being written decides whether anything is unsaved
        if not self._may_discard():
            event.ignore()
            return
        self._end_pending_open()  # a file still being read is dropped when it arrives
        # The clean-close path: nothing to recover at the next start.
        self.autosave_timer.stop()
        self.wait_for_writes()
        self.recovery.discard()
        self.conversation.cancel_all()
        self.bridge.close()
        self.display_builder.shutdown()
        self.compare_builder.shutdown()
        super().closeEvent(event)
