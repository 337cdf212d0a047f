"""The window's menus, main toolbar and icons: which command sits where, with which shortcut.

Every action calls a method of the window or of one of its panels; nothing is decided here.

Shortcuts work wherever the focus is in the window, the chat box included (the box keeps Ctrl+Z
only while it holds text not sent: ``ChatInput``). The tool letters (H, M, B) belong to the canvas:
they act only when the photo has the focus, so typing never switches tools.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QToolBar

from instructir_desktop.ui import icons
from instructir_desktop.ui.action_dialog import PluginsMenu
from instructir_desktop.ui.canvas import Canvas
from instructir_desktop.ui.chat_panel import ChatPanel
from instructir_desktop.ui.file_actions import FileActions
from instructir_desktop.ui.history_panel import HistoryPanel
from instructir_desktop.ui.layers_panel import LayersPanel
from instructir_desktop.ui.selection_tools import SelectionTools

Shortcut = QKeySequence | QKeySequence.StandardKey | str


def make_action(
    parent: QObject, text: str, slot: Callable[[], object], shortcuts: tuple[Shortcut, ...] = (), tip: str = ""
) -> QAction:
    action = QAction(text, parent)
    action.setShortcuts([QKeySequence(s) for s in shortcuts])
    action.triggered.connect(slot)
    if tip:
        action.setStatusTip(tip)
    return action


@dataclass(frozen=True)
class WindowParts:
    """What the menus reach: the window's panels and its own commands."""

    canvas: Canvas
    chat: ChatPanel
    history_panel: HistoryPanel
    layers_panel: LayersPanel
    selection_tools: SelectionTools
    file_actions: FileActions
    open_settings: Callable[[], object]
    open_models: Callable[[], object]
    open_about: Callable[[], object]
    undo: Callable[[], object]
    redo: Callable[[], object]
    cancel: Callable[[], object]
    open_help: Callable[[int], object]  # the page: 0 "What can I ask?", 1 the shortcuts


class WindowMenus:
    """Builds the menu bar and the main toolbar of ``window`` and keeps their actions."""

    def __init__(self, window: QMainWindow, parts: WindowParts) -> None:
        self._window = window
        self._parts = parts
        canvas, files = parts.canvas, parts.file_actions
        self.open_action = make_action(window, "&Open…", files.choose_file, (QKeySequence.StandardKey.Open,))
        self.export_action = make_action(window, "&Export As…", files.choose_export, ("Ctrl+E", "Ctrl+Shift+E"))
        self.save_project_action = make_action(
            window, "&Save Project", files.save_project, (QKeySequence.StandardKey.Save,)
        )
        self.save_project_as_action = make_action(window, "Save Project &As…", files.save_project_as, ("Ctrl+Shift+S",))
        self.quit_action = make_action(window, "&Quit", window.close, (QKeySequence.StandardKey.Quit,))
        self.settings_action = make_action(window, "&Settings…", parts.open_settings, ("Ctrl+,",))
        self.models_action = make_action(
            window, "&Models…", parts.open_models, tip="Add restoration networks and choose the one for each task"
        )
        self.about_action = make_action(window, "&About InstructIR Desktop", parts.open_about)
        self.undo_action = make_action(window, "&Undo", parts.undo, ("Ctrl+Z",))
        self.redo_action = make_action(window, "&Redo", parts.redo, ("Ctrl+Shift+Z", "Ctrl+Y"))
        self.cancel_action = make_action(
            window, "&Cancel the Running Step", parts.cancel, ("Esc",), tip="Stop the restoration that is running"
        )
        self.zoom_in_action = make_action(window, "Zoom &In", canvas.zoom_in, ("Ctrl+=", "Ctrl++"))
        self.zoom_out_action = make_action(window, "Zoom &Out", canvas.zoom_out, ("Ctrl+-",))
        self.fit_action = make_action(window, "&Fit to Window", canvas.fit, ("Ctrl+0",))
        self.actual_size_action = make_action(window, "&Actual Size (100%)", canvas.actual_size, ("Ctrl+1",))
        self.focus_chat_action = make_action(window, "&Type an Instruction", parts.chat.input.setFocus, ("Ctrl+L",))
        self.help_menu = QMenu("&Help", window)
        self.ask_help_action = make_action(window, "&What Can I Ask?", lambda: parts.open_help(0), ("F1",))
        self.shortcuts_help_action = make_action(window, "&Keyboard Shortcuts", lambda: parts.open_help(1))
        self.plugins_menu = PluginsMenu(window)
        self._build_file_edit_view()
        self._build_select_and_layer()
        window.menuBar().addMenu(self.plugins_menu)
        window.menuBar().addMenu(self.help_menu)
        self.main_toolbar = self._build_main_toolbar()

    def _build_file_edit_view(self) -> None:
        window = self._window
        bar = window.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.open_action)
        file_menu.addMenu(self._parts.file_actions.recent_menu)
        for action in (self.save_project_action, self.save_project_as_action, self.export_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = bar.addMenu("&Edit")
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        edit_menu.addAction(self.cancel_action)
        edit_menu.addSeparator()
        edit_menu.addAction(self.focus_chat_action)
        edit_menu.addSeparator()
        edit_menu.addAction(self.settings_action)
        edit_menu.addAction(self.models_action)
        view_menu = bar.addMenu("&View")
        for action in (self.zoom_in_action, self.zoom_out_action, self.fit_action, self.actual_size_action):
            view_menu.addAction(action)
        self.help_menu.addAction(self.ask_help_action)
        self.help_menu.addAction(self.shortcuts_help_action)
        self.help_menu.addSeparator()
        self.help_menu.addAction(self.about_action)
        # Window-wide: the shortcuts work whichever panel has the focus.
        for action in window.findChildren(QAction):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            window.addAction(action)

    def _build_select_and_layer(self) -> None:
        window = self._window
        tools, layers = self._parts.selection_tools, self._parts.layers_panel
        select_menu = window.menuBar().addMenu("&Select")
        for action in tools.actions:
            select_menu.addAction(action)
            if action is tools.brush_action:
                select_menu.addSeparator()
        layer_menu = window.menuBar().addMenu("&Layer")
        layer_menu.addAction(layers.new_layer_action)
        layer_menu.addSeparator()
        for action in layers.actions_for_menu:
            layer_menu.addAction(action)
        tool_letters = (tools.hand_action, tools.rectangle_action, tools.brush_action)
        for action in (*tools.actions, layers.new_layer_action, *layers.actions_for_menu):
            if action in tool_letters:
                continue
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            window.addAction(action)
        # A plain letter is typing anywhere else: the tools take theirs only on the canvas.
        for action in tool_letters:
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            action.setProperty("shortcutWhere", "with the photo focused")
            self._parts.canvas.addAction(action)

    def _build_main_toolbar(self) -> QToolBar:
        window = self._window
        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        for group in (
            (self.open_action, self.save_project_action, self.export_action),
            (self.undo_action, self.redo_action),
            (self.zoom_in_action, self.zoom_out_action, self.fit_action, self.actual_size_action),
        ):
            for action in group:
                toolbar.addAction(action)
            toolbar.addSeparator()
        # Before the selection tools, on the same row.
        window.insertToolBar(self._parts.selection_tools.toolbar, toolbar)
        return toolbar

    def apply_icons(self) -> None:
        """Give actions and buttons their icons, tinted for the current palette (again after a theme change)."""
        window, parts = self._window, self._parts
        tools, layers = parts.selection_tools, parts.layers_panel
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
        parts.chat.send_button.setIcon(icons.icon("send"))
        parts.history_panel.compare_button.setIcon(icons.icon("compare"))
        window.setWindowIcon(icons.app_icon())
