"""The editor window: a shell that wires the panels to one editing session.

Canvas in the middle, chat and history on the right, menus and shortcuts. What a message means,
what a file holds and what happens next are the session's decisions (``instructir_desktop.editing``);
the window draws its events (``DocumentChanged``, ``RunChanged``, ``StatusMessage``…) and sends it
what the person does. Files, compare, layers and menus have modules of their own. Nothing here
waits on the engine.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QMessageBox, QVBoxLayout, QWidget

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.editing.assistant import when_done
from instructir_desktop.editing.events import (
    DocumentChanged,
    DocumentOpened,
    FileOpened,
    FileOpeningChanged,
    Level,
    PreviewCleared,
    PreviewShown,
    ProjectSaved,
    StatusMessage,
)
from instructir_desktop.editing.projects import ExportChoices
from instructir_desktop.editing.session import EditingSession
from instructir_desktop.history import HistoryError
from instructir_desktop.inference.engine import Engine, EngineInterface
from instructir_desktop.inference.requests import EngineSettings, Failed, Finished
from instructir_desktop.io import set_max_pixels as set_pixel_limit
from instructir_desktop.plugins.api import ActionInfo, PluginError
from instructir_desktop.plugins.host import PluginHost
from instructir_desktop.ui.action_dialog import ActionDialog
from instructir_desktop.ui.canvas import Canvas
from instructir_desktop.ui.chat_panel import ChatPanel
from instructir_desktop.ui.compare_view import CompareView
from instructir_desktop.ui.dialogs import AboutDialog, SettingsDialog
from instructir_desktop.ui.display import DocumentDisplay
from instructir_desktop.ui.event_loop import qt_event_loop
from instructir_desktop.ui.file_actions import APP_NAME, FileActions
from instructir_desktop.ui.help_dialog import HelpDialog
from instructir_desktop.ui.history_panel import HistoryPanel, describe_history_step
from instructir_desktop.ui.layers_panel import LayersPanel
from instructir_desktop.ui.menus import WindowMenus, WindowParts
from instructir_desktop.ui.models_window import ModelsWindow
from instructir_desktop.ui.plugin_manager import PluginManagerDialog, PluginPreferences
from instructir_desktop.ui.preferences import Preferences, default_recovery_folder
from instructir_desktop.ui.qimages import MipImage, flattened_pixmap
from instructir_desktop.ui.recipe_actions import RecipeActions
from instructir_desktop.ui.recovery import RecoveryStore
from instructir_desktop.ui.selection_tools import SelectionTools
from instructir_desktop.ui.typing_router import TypingRouter

__all__ = ["APP_NAME", "MainWindow"]


class MainWindow(QMainWindow):
    closed = Signal()  # the window closed for good (its session is closed)

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
        # Ctrl-C in the terminal: close without asking, the unsaved work kept for recovery.
        self.interrupted = False
        self.preferences = Preferences(preferences)
        # What the engine runs with: given, else the engine's own, else the persisted settings.
        if settings is not None:
            self.engine_settings = settings
        elif engine is not None:
            self.engine_settings = engine.settings
        else:
            self.engine_settings = self.preferences.engine_settings()
        set_pixel_limit(self.preferences.max_pixels())
        # Manifests only: no plugin code is imported until one of its actions runs.
        self.plugin_preferences = PluginPreferences(preferences)
        # The engine only starts its worker thread here; the model loads there on first use.
        self.session = EditingSession(
            engine if engine is not None else Engine(self.engine_settings),
            self.plugin_preferences.build_host(),
            qt_event_loop(),
        )
        events = self.session.events
        self.plugin_manager: PluginManagerDialog | None = None
        self.action_dialog: ActionDialog | None = None
        self.settings_dialog: SettingsDialog | None = None
        self.models_window: ModelsWindow | None = None
        self.about_dialog: AboutDialog | None = None
        self.help_dialog: HelpDialog | None = None

        self.canvas = Canvas()
        self.chat = ChatPanel()
        self.chat.bind(self.session.assistant, events)
        self.chat.message_sent.connect(self.session.assistant.send)
        self.chat.greeting_suggestion_taken.connect(self.session.insight.take_greeting_suggestion)
        self.history_panel = HistoryPanel()
        self.history_panel.index_chosen.connect(self.show_history_index)
        self.history_panel.branch_chosen.connect(self.switch_branch)
        self.compare_view = CompareView(
            self.canvas, self.history_panel, self.session.workspace, self.session.background, self.warn
        )
        self.compare_view.ended.connect(self._show_document_again)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.canvas, 1)
        column.addWidget(self.compare_view)
        self.setCentralWidget(central)
        self.chat_dock = self._dock("Chat", self.chat)
        self.history_dock = self._dock("History", self.history_panel)
        self.layers_panel = LayersPanel(self.session.workspace, events, settings=preferences)
        self.layers_panel.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.layers_dock = self._dock("Layers", self.layers_panel)
        self.tabifyDockWidget(self.history_dock, self.layers_dock)
        self.history_dock.raise_()
        self.selection_tools = SelectionTools(self.canvas, self.session.workspace, events, self)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.selection_tools.toolbar)
        self.resizeDocks([self.chat_dock, self.history_dock], [380, 380], Qt.Orientation.Horizontal)
        self.resizeDocks([self.chat_dock, self.history_dock], [480, 300], Qt.Orientation.Vertical)

        recovery = RecoveryStore(recovery_folder if recovery_folder is not None else default_recovery_folder())
        self.file_actions = FileActions(
            self,
            self.session,
            self.preferences,
            recovery,
            can_ask=lambda: self.interactive and self.isVisible(),
            warn=self.warn,
        )
        self.file_actions.set_autosave_interval(self.preferences.autosave_seconds())
        parts = WindowParts(
            self.canvas,
            self.chat,
            self.history_panel,
            self.layers_panel,
            self.selection_tools,
            self.file_actions,
            self.open_settings,
            self.open_models,
            self.open_about,
            self.undo,
            self.redo,
            self.cancel_running,
            self.open_help,
        )
        self.menus = WindowMenus(self, parts)
        self.recipe_actions = RecipeActions(self, self.session, self.warn)
        # The chat box never claims the window's export and cancel keys; letters typed on the photo
        # while the box holds unsent text go to the box instead of switching tools.
        self.chat.input.window_shortcuts = [
            *self.menus.export_action.shortcuts(),
            *self.menus.cancel_action.shortcuts(),
        ]
        self.typing_router = TypingRouter(self.canvas, self.chat.input, self)
        self.menus.plugins_menu.action_chosen.connect(self.choose_plugin_action)
        self.menus.plugins_menu.manage_requested.connect(self.open_plugin_manager)
        self._rebuild_plugins_menu()
        self.menus.apply_icons()

        self.size_label = QLabel()
        self.zoom_label = QLabel()
        self.engine_label = QLabel("Model loads on first use")
        for label in (self.size_label, self.zoom_label, self.engine_label):
            self.statusBar().addPermanentWidget(label)
        self.statusBar().showMessage("Open a photo to begin")
        self.canvas.zoom_changed.connect(
            lambda zoom: self.zoom_label.setText(f"{zoom * 100:.0f}%" if self.canvas.has_image else "")
        )

        self._shown: Hashable = None  # (document id, revision) on the canvas
        self.display = DocumentDisplay(self.session.background, self._display_built)
        self.session.assistant.viewport = self._viewport
        self.session.previews.viewport = self._viewport
        self.session.assistant.confidence_threshold = self.preferences.ask_below()
        events.subscribe(DocumentChanged, lambda _event: self._document_changed())
        events.subscribe(DocumentOpened, lambda _event: self.chat.input.setFocus())
        events.subscribe(StatusMessage, self._status_message)
        events.subscribe(FileOpened, lambda event: self.file_actions.remember(event.path))
        events.subscribe(ProjectSaved, lambda event: self.file_actions.remember(event.path))
        events.subscribe(FileOpeningChanged, lambda event: self.file_actions.opening_changed(event.opening))
        events.subscribe(PreviewShown, lambda event: self.canvas.show_result_preview(event.pixels, event.bounds))
        events.subscribe(PreviewCleared, lambda _event: self.canvas.clear_result_preview())
        events.subscribe(Finished, lambda _event: self._update_engine_status())
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

    # The commands others reach the window by (automation, benchmarks, tests).

    @property
    def plugins(self) -> PluginHost | None:
        return self.session.plugins

    def open_path(self, path: Path, *, ask: bool = True, background: bool | None = None) -> bool:
        return self.file_actions.open_path(path, ask=ask, background=background)

    def export_to(self, path: Path, choices: ExportChoices | None = None, *, background: bool | None = None) -> bool:
        """Export (automation, tests); see ``Files.export``."""
        return self.session.files.export(path, choices, background=background)

    @property
    def opening(self) -> bool:
        return self.session.files.opening

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.ApplicationPaletteChange, QEvent.Type.PaletteChange):
            self.menus.apply_icons()  # light ↔ dark: retint
        super().changeEvent(event)

    # ------------------------------------------------------------------ what the session says

    def warn(self, message: str) -> None:
        self.statusBar().showMessage(message)
        if self.interactive and self.isVisible():
            QMessageBox.warning(self, APP_NAME, message)

    def _status_message(self, message: StatusMessage) -> None:
        if message.level is Level.WARNING:
            self.warn(message.text)
        else:
            self.statusBar().showMessage(message.text, 0 if message.seconds is None else round(message.seconds * 1000))

    def _document_changed(self) -> None:
        self.compare_view.document_changed()
        if self.canvas.comparing:
            self._shown = None
        self._refresh_canvas()
        workspace = self.session.workspace
        history, document = workspace.history, workspace.document
        self.history_panel.refresh(history, workspace.original_thumbnail)
        menus = self.menus
        for action in (menus.export_action, menus.save_project_action, menus.save_project_as_action):
            action.setEnabled(document is not None)
        menus.undo_action.setEnabled(history is not None and history.can_undo)
        menus.redo_action.setEnabled(history is not None and history.can_redo)
        latest = workspace.latest_step
        title = describe_history_step(latest).splitlines()[0] if latest is not None else ""
        menus.undo_action.setText(f"&Undo {title}" if title else "&Undo")
        name = workspace.path.name if workspace.path else ""
        unsaved = " •" if workspace.unsaved_work else ""
        exported = " (exported, not saved)" if unsaved and workspace.exported_path is not None else ""
        self.setWindowTitle(f"{name}{exported}{unsaved} — {APP_NAME}" if name else APP_NAME)
        self.size_label.setText(f"{document.width} × {document.height}" if document else "")

    def _viewport(self) -> Bounds | None:
        """The part of the photo on the canvas (None: none of it, or the canvas shows something else)."""
        document = self.session.workspace.document
        if document is None or self.canvas.image_size != (document.width, document.height):
            return None
        return self.canvas.visible_image_bounds()

    # ------------------------------------------------------------------ the canvas

    def _refresh_canvas(self) -> None:
        """Convert the document to a pixmap only when it changed (never per repaint)."""
        workspace = self.session.workspace
        document = workspace.document
        key = workspace.image_key  # not moved by a new selection or active layer
        if key == self._shown and not self.canvas.comparing:
            return
        self._shown = key
        if document is None:
            self._show_display_image(None)
            return
        image = self.display.build(key, document, lambda: self.session.workspace.image_key)
        if image is not None:
            self._show_display_image(image)
        # else: a large photo builds in the background and arrives through _display_built

    @property
    def canvas_up_to_date(self) -> bool:
        """The canvas shows the document as it is now (a large photo's image may still be building)."""
        return not self.display.busy and self._shown == self.session.workspace.image_key

    def _display_built(self, _key: Hashable, image: MipImage | None) -> None:
        document = self.session.workspace.document
        if document is None:
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

    def _show_document_again(self) -> None:
        self._shown = None
        self._refresh_canvas()

    # ------------------------------------------------------------------ history

    def undo(self) -> None:
        try:
            if self.session.workspace.undo():
                self.statusBar().showMessage("Undone", 3000)
        except HistoryError as error:  # a step whose stored pixels are damaged: said, nothing changes
            self.warn(str(error))

    def redo(self) -> None:
        try:
            if self.session.workspace.redo():
                self.statusBar().showMessage("Redone", 3000)
        except HistoryError as error:
            self.warn(str(error))

    def cancel_running(self) -> None:
        """Escape: stop the step that is running (the photo stays as it was)."""
        run = self.session.assistant.cancel_current()
        self.statusBar().showMessage("Cancelling…" if run is not None else "Nothing is running", 3000)

    def show_history_index(self, index: int) -> None:
        try:
            self.session.workspace.set_index(index)
        except HistoryError as error:
            self.warn(str(error))
            self.history_panel.refresh(self.session.workspace.history, self.session.workspace.original_thumbnail)

    def switch_branch(self, number: int) -> None:
        """Continue from an alternative of the history (the steps it replaces become one)."""
        try:
            self.session.workspace.switch_branch(number)
        except (HistoryError, IndexError) as error:
            self.warn(str(error))

    # ------------------------------------------------------------------ the engine

    def preload_model(self) -> int:
        """Load the model on the worker now, so the first instruction does not wait for it.
        Called just after the window shows; the load happens on the engine's thread."""
        self.engine_label.setText("Loading the model…")
        job = self.session.preload_model()

        def loaded(end: object) -> None:
            if isinstance(end, Failed):
                self.engine_label.setText("No model loaded")
                self.statusBar().showMessage(f"The restoration model could not be loaded: {end.message}")

        when_done(job.end, loaded)
        return job.request_id

    def _update_engine_status(self) -> None:
        status = self.session.engine.status
        if status is not None:
            self.engine_label.setText(f"{status.model_name} · {status.device}")

    def model_and_device(self) -> tuple[str, str]:
        status = self.session.engine.status
        if status is not None:
            return status.model_name, status.device
        settings = self.engine_settings
        model = settings.model_folder or "the bundled model"
        return f"{model} (loads on first use)", settings.device

    # ------------------------------------------------------------------ settings and about

    def open_models(self) -> ModelsWindow:
        """Settings → Models: the model store, and the model for each task."""
        if self.models_window is None:
            assistant = self.session.assistant
            self.models_window = ModelsWindow(assistant.models, self, assistant.client)
        else:
            self.models_window.refresh()
        self.models_window.open()
        return self.models_window

    def open_settings(self) -> SettingsDialog:
        if self.settings_dialog is not None:
            self.settings_dialog.deleteLater()
        dialog = SettingsDialog(
            self.engine_settings,
            self.preferences.autosave_seconds(),
            self.session.workspace.restore_into_new_layer,
            self,
            ask_below=self.session.assistant.confidence_threshold,
        )
        dialog.accepted.connect(
            lambda: self.apply_settings(dialog.engine_settings(), dialog.autosave_seconds(), dialog.new_layer())
        )
        dialog.accepted.connect(lambda: self.set_max_pixels(dialog.max_pixels()))
        dialog.accepted.connect(lambda: self.set_ask_below(dialog.ask_below()))
        dialog.models_button.clicked.connect(self.open_models)
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
            self.session.engine.configure(settings)
            model = Path(settings.model_folder).name if settings.model_folder else "bundled model"
            self.engine_label.setText(f"{model} · {settings.device} (loads on next use)")
        if autosave_seconds is not None:
            self.preferences.set_autosave_seconds(autosave_seconds)
            self.file_actions.set_autosave_interval(autosave_seconds)
        if new_layer is not None:
            self.layers_panel.new_layer_action.setChecked(new_layer)
        self.statusBar().showMessage("Settings saved", 4000)

    def set_ask_below(self, threshold: float) -> None:
        """Steps the model is less sure of than ``threshold`` (0..1) are offered, not run."""
        self.preferences.set_ask_below(threshold)
        self.session.assistant.confidence_threshold = self.preferences.ask_below()

    def set_max_pixels(self, limit: int) -> None:
        """The largest photo any reader opens (bigger ones are refused as possible decompression bombs)."""
        self.preferences.set_max_pixels(limit)
        set_pixel_limit(limit)

    def open_help(self, page: int = 0) -> HelpDialog:
        """Help: "What can I ask?" (page 0) and the keyboard shortcuts (page 1)."""
        if self.help_dialog is not None:
            self.help_dialog.deleteLater()
        commands = []
        host = self.session.plugins
        for command in (host.commands() if host is not None else {}).values():
            try:
                title = host.action(command.action).title if host is not None else ""
            except PluginError:
                continue
            commands.append((command.help or f"/{command.name}", title))
        self.help_dialog = HelpDialog([*self.actions(), *self.canvas.actions()], commands, self)
        self.help_dialog.show_page(page)
        self.help_dialog.show()
        return self.help_dialog

    def open_about(self) -> AboutDialog:
        if self.about_dialog is not None:
            self.about_dialog.deleteLater()
        self.about_dialog = AboutDialog(*self.model_and_device(), parent=self)  # with the log file
        self.about_dialog.open()
        return self.about_dialog

    # ------------------------------------------------------------------ plugins

    def choose_plugin_action(self, action: ActionInfo) -> None:
        """From the Plugins menu: ask for its parameters (if any), then run it like a slash command."""
        assistant = self.session.assistant
        if not action.parameters:
            assistant.run_action(action)
            return
        if self.action_dialog is not None:
            self.action_dialog.deleteLater()  # one at a time; the last one stays inspectable
        previews = self.session.previews
        dialog = ActionDialog(action, self, target=previews.target())
        # The photo shows what the values do while the dialog is open; closing takes it away.
        dialog.values_changed.connect(lambda: previews.show(action, dialog.values()))
        dialog.finished.connect(lambda _result: previews.end())
        dialog.accepted.connect(lambda: assistant.run_action(action, dialog.values()))
        self.action_dialog = dialog
        dialog.open()  # window-modal, without a nested event loop
        dialog.preview_note.setVisible(previews.show(action, dialog.values()))

    def open_plugin_manager(self) -> PluginManagerDialog:
        host = self.session.plugins
        assert host is not None
        if self.plugin_manager is None:
            self.plugin_manager = PluginManagerDialog(host, self.plugin_preferences, self)
            self.plugin_manager.enabled_changed.connect(lambda *_: self._rebuild_plugins_menu())
            self.plugin_manager.folders_changed.connect(self.reload_plugins)
        self.plugin_manager.set_host(host)  # shows errors found since it was last open
        self.plugin_manager.show()
        self.plugin_manager.raise_()
        return self.plugin_manager

    def _rebuild_plugins_menu(self) -> None:
        host = self.session.plugins
        if host is not None:
            self.menus.plugins_menu.rebuild(host)

    def reload_plugins(self) -> None:
        """Rescan every plugin source (a folder was added); a queued run finds its action in the new host."""
        self.session.plugins = self.plugin_preferences.build_host()
        self._rebuild_plugins_menu()
        if self.plugin_manager is not None and self.session.plugins is not None:
            self.plugin_manager.set_host(self.session.plugins)

    # ------------------------------------------------------------------ drag and drop, closing

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.file_actions.dropped_path(event) is not None or ModelsWindow.dropped_files(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self.file_actions.dropped_path(event)
        if path is not None:
            event.acceptProposedAction()
            self.open_path(path)
        elif models := ModelsWindow.dropped_files(event):  # a model file: the Models window adds it
            event.acceptProposedAction()
            self.open_models().add_files(models)

    def interrupt(self) -> None:
        """Ctrl-C in the terminal that started the window: close at once, without asking; unsaved
        work is written to the recovery file, which the next start offers to restore."""
        self.interrupted = True
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        files = self.session.files
        files.wait_for_writes()  # a save still being written decides whether anything is unsaved
        if not self.interrupted and not self.file_actions.may_discard():
            event.ignore()
            return
        files.end_pending_open()  # a file still being read is dropped when it arrives
        self.file_actions.autosave_timer.stop()
        files.wait_for_writes()
        if self.interrupted and self.session.workspace.modified:
            self.session.assistant.cancel_all()
            files.autosave(self.file_actions.recovery, busy=False)
            files.wait_for_writes()  # kept: the next start offers it
        else:
            # The clean-close path: nothing to recover at the next start.
            self.file_actions.recovery.discard()
        self.session.close()
        super().closeEvent(event)
        self.closed.emit()
