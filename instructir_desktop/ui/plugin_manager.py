"""The Plugin Manager: every plugin the host found, working or broken, and the persisted settings.

Which plugins are disabled and which user plugin folders are scanned live in QSettings
(``plugins/disabled`` and ``plugins/folders``, lists of strings); the window builds its
PluginHost from them at start and rebuilds it when a folder is added.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.plugins.host import PluginHost, PluginRecord

SETTINGS_ORGANIZATION = "InstructIR"
SETTINGS_APPLICATION = "InstructIR Desktop"
DISABLED_KEY = "plugins/disabled"
FOLDERS_KEY = "plugins/folders"
ERROR_COLOUR = QColor(200, 30, 30)
PLUGIN_ID_ROLE = Qt.ItemDataRole.UserRole


def _strings(value: object) -> list[str]:
    """A QSettings list as read back: None, one string, or a list, depending on the backend."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(item) for item in value if str(item)]
    return []


class PluginPreferences:
    """The plugin settings that outlive the session."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self.settings = settings if settings is not None else QSettings(SETTINGS_ORGANIZATION, SETTINGS_APPLICATION)

    def disabled(self) -> list[str]:
        return _strings(self.settings.value(DISABLED_KEY))

    def set_disabled(self, plugin_ids: Iterable[str]) -> None:
        self.settings.setValue(DISABLED_KEY, sorted(plugin_ids))
        self.settings.sync()

    def folders(self) -> list[str]:
        return _strings(self.settings.value(FOLDERS_KEY))

    def add_folder(self, folder: str | Path) -> bool:
        """False when the folder was already scanned."""
        path = str(Path(folder).expanduser().resolve())
        folders = self.folders()
        if path in folders:
            return False
        self.settings.setValue(FOLDERS_KEY, [*folders, path])
        self.settings.sync()
        return True

    def build_host(self) -> PluginHost:
        """Manifests only: no plugin code is imported until one of its actions runs."""
        return PluginHost(user_folders=self.folders(), disabled=self.disabled())


class PluginManagerDialog(QDialog):
    """Lists the plugins with their actions; a checkbox enables each, broken ones show their error."""

    enabled_changed = Signal(str, bool)
    folders_changed = Signal()  # the host must be rebuilt, then given back with set_host

    def __init__(self, host: PluginHost, preferences: PluginPreferences, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Plugins")
        self.resize(720, 440)
        self.host = host
        self.preferences = preferences
        layout = QVBoxLayout(self)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Plugin", "Version", "ID", "Source"])
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tree.itemChanged.connect(self._item_changed)
        layout.addWidget(self.tree, 1)
        self.folders_label = QLabel()
        self.folders_label.setWordWrap(True)
        self.folders_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.folders_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.add_folder_button = QPushButton("Add Plugin Folder…")
        self.add_folder_button.clicked.connect(self.choose_folder)
        buttons.addButton(self.add_folder_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.refresh()

    # ------------------------------------------------------------------ contents

    def set_host(self, host: PluginHost) -> None:
        self.host = host
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the list from the host (a plugin's error may have appeared on its first run)."""
        self.tree.blockSignals(True)
        try:
            self.tree.clear()
            for record in self.host.records:
                item = self._record_item(record)
                self.tree.addTopLevelItem(item)
                for index in range(item.childCount()):
                    child = item.child(index)
                    if child is not None and child.text(0).startswith("Error: "):
                        child.setFirstColumnSpanned(True)  # only takes effect once in the tree
            self.tree.expandAll()
        finally:
            self.tree.blockSignals(False)
        for column in range(1, self.tree.columnCount()):
            self.tree.resizeColumnToContents(column)
        folders = self.preferences.folders()
        self.folders_label.setText(
            "User plugin folders: " + ("; ".join(folders) if folders else "none (add one to load plugins from it)")
        )

    def _record_item(self, record: PluginRecord) -> QTreeWidgetItem:
        item = QTreeWidgetItem([record.name, record.version, record.id, record.source])
        item.setData(0, PLUGIN_ID_ROLE, record.id)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(0, Qt.CheckState.Checked if record.enabled else Qt.CheckState.Unchecked)
        item.setToolTip(0, "Enabled: its actions are in the Plugins menu" if record.enabled else "Disabled")
        if record.manifest is not None:
            if record.manifest.description:
                item.setToolTip(0, record.manifest.description)
            for action in record.manifest.actions:
                child = QTreeWidgetItem([action.title, "", action.id, "action"])
                child.setToolTip(0, action.description or action.id)
                item.addChild(child)
            for command in record.manifest.commands:
                arguments = " ".join(f"[{name}]" for name in command.arguments)
                child = QTreeWidgetItem([f"/{command.name} {arguments}".strip(), "", command.action, "chat command"])
                child.setToolTip(0, command.help or command.action)
                item.addChild(child)
        if record.error:
            red = QBrush(ERROR_COLOUR)
            item.setForeground(0, red)
            item.setToolTip(0, record.error)
            error = QTreeWidgetItem([f"Error: {record.error}"])
            error.setForeground(0, red)
            error.setToolTip(0, record.error)
            error.setData(0, PLUGIN_ID_ROLE, None)
            item.addChild(error)
        return item

    def item(self, plugin_id: str) -> QTreeWidgetItem:
        for index in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(index)
            if item is not None and item.data(0, PLUGIN_ID_ROLE) == plugin_id:
                return item
        raise KeyError(plugin_id)

    def error_text(self, plugin_id: str) -> str:
        """The red error line shown under a plugin ('' when it has none)."""
        item = self.item(plugin_id)
        for index in range(item.childCount()):
            child = item.child(index)
            if child is not None and child.text(0).startswith("Error: "):
                return child.text(0)
        return ""

    # ------------------------------------------------------------------ changes

    def _item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        plugin_id = item.data(0, PLUGIN_ID_ROLE)
        if column != 0 or item.parent() is not None or not plugin_id:
            return
        enabled = item.checkState(0) == Qt.CheckState.Checked
        if enabled != self.host.plugin(plugin_id).enabled:
            self.set_enabled(plugin_id, enabled)

    def set_enabled(self, plugin_id: str, enabled: bool) -> None:
        """Enable or disable a plugin now and for the next sessions."""
        self.host.set_enabled(plugin_id, enabled)
        self.preferences.set_disabled(self.host.disabled)
        item = self.item(plugin_id)
        self.tree.blockSignals(True)
        item.setCheckState(0, Qt.CheckState.Checked if enabled else Qt.CheckState.Unchecked)
        self.tree.blockSignals(False)
        self.enabled_changed.emit(plugin_id, enabled)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a plugin folder", str(Path.home()))
        if folder:
            self.add_folder(Path(folder))

    def add_folder(self, folder: str | Path) -> bool:
        """Scan ``folder`` (each sub-folder a plugin) from now on; the window rebuilds the host."""
        added = self.preferences.add_folder(folder)
        if added:
            self.folders_changed.emit()
        return added
