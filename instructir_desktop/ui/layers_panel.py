"""The layers panel: the stack top first, each layer with a thumbnail, visibility and opacity.

Every change (show or hide, opacity, duplicate, delete, move, merge down) is one undoable step
through ``Workspace.edit_layers``; choosing a row makes that layer the active one, the one the next
restoration works on. "Restore into a new layer" (remembered between runs) makes a finished
restoration land as a new layer above the active one instead of replacing its pixels.

Rows are widgets reused from one refresh to the next, so a change made from a row's own checkbox
or slider never deletes the widget that sent it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QSettings, QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.core.document import Document, Layer
from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.editing.events import ActiveLayerChanged, DocumentChanged
from instructir_desktop.editing.workspace import Workspace
from instructir_desktop.ui.qimages import rgba_to_qimage

THUMBNAIL_SIDE = 40
SETTINGS_ORGANIZATION = "InstructIR"
SETTINGS_APPLICATION = "InstructIR Desktop"
NEW_LAYER_KEY = "restore/intoNewLayer"


def app_settings() -> QSettings:
    return QSettings(SETTINGS_ORGANIZATION, SETTINGS_APPLICATION)


def layer_thumbnail(layer: Layer, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """A small RGBA picture of one layer on its own (shown even when the layer is hidden)."""
    alone = Layer(layer.pixels, layer.alpha, id=layer.id)  # the same arrays, no copy
    return Document(layer.height, layer.width, [alone]).thumbnail(side)


def _show_icon_of(action: QAction, button: QToolButton) -> None:
    """The button shows its action's icon alone (the dock stays narrow; the name is in the
    tooltip), or its short name while the action has no icon."""
    button.setIcon(action.icon())
    icon_only = not action.icon().isNull()
    button.setToolButtonStyle(
        Qt.ToolButtonStyle.ToolButtonIconOnly if icon_only else Qt.ToolButtonStyle.ToolButtonTextOnly
    )


class LayerRow(QWidget):
    """One layer: [visible] [thumbnail] name / opacity slider and value."""

    visibility_chosen = Signal(str, bool)  # layer id, visible
    opacity_chosen = Signal(str, float)  # layer id, opacity in [0, 1]

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layer_id = ""
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        self.visible_box = QCheckBox()
        self.visible_box.setToolTip("Show or hide this layer")
        self.visible_box.toggled.connect(lambda on: self.visibility_chosen.emit(self.layer_id, bool(on)))
        self.thumbnail = QLabel()
        self.thumbnail.setFixedSize(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        column = QVBoxLayout()
        column.setSpacing(0)
        self.name_label = QLabel()
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setTracking(False)  # one step when released, not one per pixel dragged
        self.opacity_slider.setToolTip("Opacity")
        self.opacity_spin = QSpinBox()
        self.opacity_spin.setRange(0, 100)
        self.opacity_spin.setSuffix(" %")
        self.opacity_spin.setKeyboardTracking(False)
        self.opacity_spin.setToolTip("Opacity")
        self.opacity_slider.sliderMoved.connect(self._show_dragged_value)
        self.opacity_slider.valueChanged.connect(self._opacity_set)
        self.opacity_spin.valueChanged.connect(self._opacity_set)
        opacity = QHBoxLayout()
        opacity.addWidget(self.opacity_slider, 1)
        opacity.addWidget(self.opacity_spin)
        column.addWidget(self.name_label)
        column.addLayout(opacity)
        layout.addWidget(self.visible_box)
        layout.addWidget(self.thumbnail)
        layout.addLayout(column, 1)

    def show_layer(self, layer: Layer, thumbnail: QPixmap) -> None:
        self.layer_id = layer.id
        percent = round(layer.opacity * 100)
        for widget, value in (
            (self.visible_box, layer.visible),
            (self.opacity_slider, percent),
            (self.opacity_spin, percent),
        ):
            widget.blockSignals(True)
            if isinstance(widget, QCheckBox):
                widget.setChecked(bool(value))
            else:
                widget.setValue(int(value))
            widget.blockSignals(False)
        self.name_label.setText(layer.name)
        self.name_label.setToolTip(layer.name)
        self.thumbnail.setPixmap(thumbnail)

    def _show_dragged_value(self, value: int) -> None:
        self.opacity_spin.blockSignals(True)
        self.opacity_spin.setValue(value)
        self.opacity_spin.blockSignals(False)

    def _opacity_set(self, value: int) -> None:
        self.opacity_chosen.emit(self.layer_id, value / 100)


class LayersPanel(QWidget):
    """Rows are top layer first: row ``r`` shows layer ``len(document) - 1 - r``."""

    message = Signal(str)  # why a command could not be done, for the status bar

    def __init__(
        self, workspace: Workspace, events: Dispatcher, parent: QWidget | None = None, settings: QSettings | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("layersPanel")
        self.workspace = workspace
        self.settings = settings if settings is not None else app_settings()
        self.rows: list[LayerRow] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.currentRowChanged.connect(self._row_chosen)
        layout.addWidget(self.list, 1)

        self.duplicate_action = self._action("&Duplicate Layer", self.duplicate, "Ctrl+J")
        self.delete_action = self._action("De&lete Layer", self.delete)
        self.move_up_action = self._action("Move Layer &Up", self.move_up, "Ctrl+]")
        self.move_down_action = self._action("Move Layer Do&wn", self.move_down, "Ctrl+[")
        self.merge_down_action = self._action("&Merge Down", self.merge_down, "Ctrl+Shift+M")
        buttons = QHBoxLayout()
        self.buttons: dict[str, QToolButton] = {}
        for key, action, text in (
            ("duplicate", self.duplicate_action, "Duplicate"),
            ("delete", self.delete_action, "Delete"),
            ("up", self.move_up_action, "Up"),
            ("down", self.move_down_action, "Down"),
            ("merge", self.merge_down_action, "Merge"),
        ):
            # A short name on the button (the dock stays narrow), the full one in the menu and the tooltip.
            button = QToolButton()
            button.setText(text)
            button.setAccessibleName(action.text().replace("&", ""))
            shortcut = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            button.setToolTip(action.text().replace("&", "") + (f" ({shortcut})" if shortcut else ""))
            button.clicked.connect(action.trigger)
            action.enabledChanged.connect(button.setEnabled)
            action.changed.connect(lambda button=button, action=action: _show_icon_of(action, button))
            buttons.addWidget(button)
            self.buttons[key] = button
        buttons.addStretch(1)
        layout.addLayout(buttons)

        self.new_layer_action = QAction("Restore into a &New Layer", self)
        self.new_layer_action.setCheckable(True)
        self.new_layer_action.setStatusTip("Each restoration lands as a new layer above the active one")
        self.new_layer_box = QCheckBox("Restore into a new layer")
        self.new_layer_box.setToolTip(self.new_layer_action.statusTip())
        self.new_layer_action.toggled.connect(self._new_layer_toggled)
        self.new_layer_box.toggled.connect(self.new_layer_action.setChecked)
        layout.addWidget(self.new_layer_box)
        self.new_layer_action.setChecked(self._stored_new_layer())
        self._new_layer_toggled(self.new_layer_action.isChecked())

        events.subscribe(DocumentChanged, lambda _event: self.refresh())
        events.subscribe(ActiveLayerChanged, lambda _event: self.refresh())
        self.refresh()

    def _action(self, text: str, slot: Callable[[], object], shortcut: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: slot())
        return action

    @property
    def actions_for_menu(self) -> tuple[QAction, ...]:
        return (
            self.duplicate_action,
            self.delete_action,
            self.move_up_action,
            self.move_down_action,
            self.merge_down_action,
        )

    # ------------------------------------------------------------------ the setting

    def _stored_new_layer(self) -> bool:
        value = self.settings.value(NEW_LAYER_KEY, False)
        return value is True or str(value).lower() in ("true", "1")

    def _new_layer_toggled(self, on: bool) -> None:
        self.workspace.restore_into_new_layer = bool(on)
        if self.new_layer_box.isChecked() != on:
            self.new_layer_box.setChecked(on)
        if self._stored_new_layer() != on:
            self.settings.setValue(NEW_LAYER_KEY, bool(on))

    # ------------------------------------------------------------------ showing the stack

    def row_of(self, index: int) -> int:
        document = self.workspace.document
        return -1 if document is None else len(document) - 1 - index

    def refresh(self) -> None:
        document = self.workspace.document
        layers = () if document is None else document.layers
        while len(self.rows) < len(layers):
            row = LayerRow()
            row.visibility_chosen.connect(self._visibility_chosen)
            row.opacity_chosen.connect(self._opacity_chosen)
            item = QListWidgetItem()
            self.list.addItem(item)
            self.list.setItemWidget(item, row)
            self.rows.append(row)
        while len(self.rows) > len(layers):
            self.rows.pop()
            self.list.blockSignals(True)
            self.list.takeItem(self.list.count() - 1)  # the view deletes its widget later, not now
            self.list.blockSignals(False)
        for position, layer in enumerate(reversed(layers)):
            pixmap = QPixmap.fromImage(rgba_to_qimage(layer_thumbnail(layer)))
            self.rows[position].show_layer(layer, pixmap)
            item = self.list.item(position)
            hint = self.rows[position].sizeHint()
            item.setSizeHint(QSize(hint.width(), max(hint.height(), THUMBNAIL_SIDE + 8)))
        self.list.blockSignals(True)
        self.list.setCurrentRow(-1 if document is None else self.row_of(document.active_index))
        self.list.blockSignals(False)
        self._update_actions()

    def _update_actions(self) -> None:
        document = self.workspace.document
        count = 0 if document is None else len(document)
        active = -1 if document is None else document.active_index
        self.list.setEnabled(document is not None)
        self.duplicate_action.setEnabled(count > 0)
        self.delete_action.setEnabled(count > 1)
        self.move_up_action.setEnabled(0 <= active < count - 1)
        self.move_down_action.setEnabled(active > 0)
        self.merge_down_action.setEnabled(active > 0)

    def _row_chosen(self, row: int) -> None:
        document = self.workspace.document
        if document is None or not 0 <= row < len(document):
            return
        self.workspace.set_active_layer(len(document) - 1 - row)

    # ------------------------------------------------------------------ commands (each one undo step)

    def _edit(self, label: str, change: Callable[[Document], object]) -> bool:
        if self.workspace.document is None or self.workspace.history is None:
            return False
        try:
            self.workspace.edit_layers(label, change)
        except (ValueError, IndexError, KeyError) as error:
            self.message.emit(str(error))
            self.refresh()  # show the stack as it is again (a checkbox may show the refused change)
            return False
        return True

    def _active(self) -> Layer | None:
        document = self.workspace.document
        return None if document is None else document.active_layer

    def set_visible(self, index: int, visible: bool) -> bool:
        document = self.workspace.document
        if document is None:
            return False
        layer = document.layers[index]
        if layer.visible == visible:
            return False

        def change(_document: Document) -> None:
            layer.visible = visible

        return self._edit(f"{'Show' if visible else 'Hide'} layer “{layer.name}”", change)

    def set_opacity(self, index: int, opacity: float) -> bool:
        document = self.workspace.document
        if document is None:
            return False
        layer = document.layers[index]
        opacity = min(1.0, max(0.0, float(opacity)))
        if abs(layer.opacity - opacity) < 1e-6:
            return False

        def change(_document: Document) -> None:
            layer.opacity = opacity

        return self._edit(f"Opacity of “{layer.name}” {round(opacity * 100)}%", change)

    def duplicate(self) -> bool:
        layer = self._active()
        return layer is not None and self._edit(
            f"Duplicate layer “{layer.name}”", lambda d: d.duplicate_layer(d.active_index)
        )

    def delete(self) -> bool:
        layer = self._active()
        return layer is not None and self._edit(
            f"Delete layer “{layer.name}”", lambda d: d.remove_layer(d.active_index)
        )

    def move_up(self) -> bool:
        layer = self._active()
        return layer is not None and self._edit(
            f"Move layer “{layer.name}” up", lambda d: d.move_layer(d.active_index, d.active_index + 1)
        )

    def move_down(self) -> bool:
        layer = self._active()
        return layer is not None and self._edit(
            f"Move layer “{layer.name}” down", lambda d: d.move_layer(d.active_index, d.active_index - 1)
        )

    def merge_down(self) -> bool:
        layer = self._active()
        return layer is not None and self._edit(f"Merge “{layer.name}” down", lambda d: d.merge_down(d.active_index))

    def _visibility_chosen(self, layer_id: str, visible: bool) -> None:
        document = self.workspace.document
        if document is not None:
            self.set_visible(document.index_of(layer_id), visible)

    def _opacity_chosen(self, layer_id: str, opacity: float) -> None:
        document = self.workspace.document
        if document is not None:
            self.set_opacity(document.index_of(layer_id), opacity)
