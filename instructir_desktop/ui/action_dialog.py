"""Controls generated from a plugin action's declared parameters, and the Plugins menu.

The manifest says what each parameter is (kind, range, default, label, help); the dialog builds
one control per parameter from that alone, so a plugin never ships any UI code. The dialog says
which layer the action applies to, and reports each change of a value (after a short pause) so
the window can preview it on the photo.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.plugins.api import ActionInfo, Parameter
from instructir_desktop.plugins.host import PluginHost

# Unbounded parameters still need a finite range for a spin box.
FLOAT_LIMIT = 1e9
INT_LIMIT = 2**31 - 1


def float_step(parameter: Parameter) -> float:
    """About a twentieth of the range, rounded down to a power of ten (0..1 → 0.01, 0..5 → 0.1)."""
    if parameter.minimum is None or parameter.maximum is None or parameter.maximum <= parameter.minimum:
        return 0.1
    return float(10 ** math.floor(math.log10((parameter.maximum - parameter.minimum) / 20)))


def _decimals(step: float, default: float) -> int:
    decimals = max(2, 1 - math.floor(math.log10(step)))
    while decimals < 6 and round(default, decimals) != default:
        decimals += 1  # the default must show exactly as declared
    return decimals


def make_control(parameter: Parameter) -> QWidget:
    """The control for one parameter, set to its default, with its help as tooltip."""
    control: QWidget
    if parameter.kind == "float":
        spin = QDoubleSpinBox()
        step = float_step(parameter)
        spin.setDecimals(_decimals(step, float(parameter.default)))
        low = parameter.minimum if parameter.minimum is not None else -FLOAT_LIMIT
        high = parameter.maximum if parameter.maximum is not None else FLOAT_LIMIT
        spin.setRange(float(low), float(high))
        spin.setSingleStep(step)
        spin.setValue(float(parameter.default))
        control = spin
    elif parameter.kind == "int":
        ispin = QSpinBox()
        low_int = math.ceil(parameter.minimum) if parameter.minimum is not None else -INT_LIMIT
        high_int = math.floor(parameter.maximum) if parameter.maximum is not None else INT_LIMIT
        ispin.setRange(max(low_int, -INT_LIMIT), min(high_int, INT_LIMIT))
        ispin.setValue(int(parameter.default))
        control = ispin
    elif parameter.kind == "text":
        line = QLineEdit(str(parameter.default))
        line.setMinimumWidth(260)
        control = line
    elif parameter.kind == "plan":  # steps written as "denoise, upscale x2"; empty: none given
        line = QLineEdit(parameter.format(parameter.default) if parameter.default else "")
        line.setPlaceholderText("e.g. denoise, upscale x2")
        line.setMinimumWidth(260)
        control = line
    elif parameter.kind == "bool":
        check = QCheckBox()
        check.setChecked(bool(parameter.default))
        control = check
    else:
        combo = QComboBox()
        combo.addItems(list(parameter.choices))
        combo.setCurrentText(str(parameter.default))
        control = combo
    control.setObjectName(parameter.name)
    if parameter.help:
        control.setToolTip(parameter.help)
    return control


def control_value(parameter: Parameter, control: QWidget) -> Any:
    if isinstance(control, QDoubleSpinBox | QSpinBox):
        return control.value()
    if isinstance(control, QCheckBox):
        return control.isChecked()
    if isinstance(control, QLineEdit):
        return control.text()
    assert isinstance(control, QComboBox)
    return control.currentText()


# Values are reported once the person pauses this long (a spin box held down sends many).
PREVIEW_DEBOUNCE_MS = 150


def _changed_signal(control: QWidget) -> Any:
    if isinstance(control, QDoubleSpinBox | QSpinBox):
        return control.valueChanged
    if isinstance(control, QCheckBox):
        return control.toggled
    if isinstance(control, QLineEdit):
        return control.textChanged
    assert isinstance(control, QComboBox)
    return control.currentIndexChanged


class ActionDialog(QDialog):
    """Asks for an action's parameters; ``values()`` is the params dict once accepted."""

    values_changed = Signal()  # a value changed (after a pause): preview it

    def __init__(self, action: ActionInfo, parent: QWidget | None = None, target: str = "") -> None:
        super().__init__(parent)
        self.action = action
        self.setWindowTitle(action.title)
        layout = QVBoxLayout(self)
        if action.description:
            description = QLabel(action.description)
            description.setWordWrap(True)
            layout.addWidget(description)
        self.target_label = QLabel(target)
        self.target_label.setObjectName("actionTarget")
        self.target_label.setWordWrap(True)
        self.target_label.setStyleSheet("font-weight: bold;")
        self.target_label.setVisible(bool(target))
        layout.addWidget(self.target_label)
        self._pause = QTimer(self)
        self._pause.setSingleShot(True)
        self._pause.setInterval(PREVIEW_DEBOUNCE_MS)
        self._pause.timeout.connect(self.values_changed)
        form = QFormLayout()
        layout.addLayout(form)
        self.controls: dict[str, QWidget] = {}
        self.labels: dict[str, QLabel] = {}
        for parameter in action.parameters:
            control = make_control(parameter)
            label = QLabel(parameter.label)
            label.setBuddy(control)
            if parameter.help:
                label.setToolTip(parameter.help)
            form.addRow(label, control)
            self.controls[parameter.name] = control
            self.labels[parameter.name] = label
            _changed_signal(control).connect(lambda *_: self._pause.start())
        self.preview_note = QLabel("The photo shows a preview while this is open.")
        self.preview_note.setWordWrap(True)
        self.preview_note.setVisible(False)
        layout.addWidget(self.preview_note)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setText("Apply")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        layout.addWidget(buttons)
        self.buttons = buttons

    def set_target(self, text: str) -> None:
        self.target_label.setText(text)
        self.target_label.setVisible(bool(text))

    def values(self) -> dict[str, Any]:
        return {p.name: control_value(p, self.controls[p.name]) for p in self.action.parameters}

    def restore_defaults(self) -> None:
        for parameter in self.action.parameters:
            control = self.controls[parameter.name]
            if isinstance(control, QDoubleSpinBox):
                control.setValue(float(parameter.default))
            elif isinstance(control, QSpinBox):
                control.setValue(int(parameter.default))
            elif isinstance(control, QCheckBox):
                control.setChecked(bool(parameter.default))
            elif isinstance(control, QComboBox):
                control.setCurrentText(str(parameter.default))
            elif isinstance(control, QLineEdit) and parameter.kind == "plan":
                control.setText(parameter.format(parameter.default) if parameter.default else "")
            elif isinstance(control, QLineEdit):
                control.setText(str(parameter.default))


class PluginsMenu(QMenu):
    """Every action of the enabled plugins, grouped by plugin, then "Manage plugins…"."""

    action_chosen = Signal(object)  # ActionInfo
    manage_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("&Plugins", parent)
        self.setObjectName("pluginsMenu")
        self.manage_action = QAction("&Manage Plugins…", self)
        self.manage_action.triggered.connect(self.manage_requested)
        self.plugin_actions: dict[str, QAction] = {}  # action id → menu entry

    def rebuild(self, host: PluginHost) -> None:
        # Not clear(): it would delete "Manage plugins…" too, which lives for the menu's lifetime.
        for entry in self.actions():
            self.removeAction(entry)
            if entry is not self.manage_action:
                entry.deleteLater()
        self.plugin_actions = {}
        plugin_names = {r.id: r.name for r in host.records}
        current = None
        for action in host.actions():
            if action.plugin_id != current:
                current = action.plugin_id
                self.addSection(plugin_names.get(current, current))
            entry = QAction(action.title + ("…" if action.parameters else ""), self)
            entry.setData(action.id)
            entry.setStatusTip(action.description or action.title)
            entry.triggered.connect(lambda _checked=False, chosen=action: self.action_chosen.emit(chosen))
            self.addAction(entry)
            self.plugin_actions[action.id] = entry
        if not self.plugin_actions:
            empty = self.addAction("No plugin actions")
            empty.setEnabled(False)
        self.addSeparator()
        self.addAction(self.manage_action)
