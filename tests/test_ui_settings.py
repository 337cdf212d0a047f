"""Edit → Settings… (persisted, applied through engine.configure), Help → About, the light/dark theme."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from fake_engine import FakeEngine
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from instructir_desktop.inference.requests import EngineSettings, EngineStatus
from instructir_desktop.ui.automation import parse_options
from instructir_desktop.ui.dialogs import program_version
from instructir_desktop.ui.main_window import MainWindow
from instructir_desktop.ui.preferences import Preferences
from instructir_desktop.ui.theme import apply_theme


class ConfigurableEngine(FakeEngine):
    def __init__(self, settings: EngineSettings | None = None) -> None:
        super().__init__()
        if settings is not None:
            self._settings = settings

    def configure(self, settings: EngineSettings) -> None:
        self.configured.append(settings)


def new_window(qtbot, prefs, tmp_path, engine=None) -> MainWindow:
    window = MainWindow(engine or ConfigurableEngine(), preferences=prefs, recovery_folder=tmp_path / "recovery")
    window.interactive = False
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def test_settings_dialog_is_in_the_edit_menu_and_shows_the_current_settings(qtbot, prefs, tmp_path):
    window = new_window(qtbot, prefs, tmp_path)
    edit_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Edit")
    assert window.menus.settings_action in edit_menu.actions()
    dialog = window.open_settings()
    assert dialog.isVisible()
    assert dialog.device_box.currentText() == "auto" and dialog.precision_box.currentText() == "auto"
    assert dialog.tile_spin.value() == 0 and dialog.tile_spin.text() == "auto"
    assert dialog.model_field.value() is None and dialog.encoder_field.value() is None
    assert dialog.autosave_spin.value() == 60
    dialog.reject()


def test_settings_are_applied_to_the_engine_and_persisted(qtbot, prefs, tmp_path):
    engine = ConfigurableEngine()
    window = new_window(qtbot, prefs, tmp_path, engine)
    model, encoder = tmp_path / "model", tmp_path / "encoder"
    model.mkdir()
    encoder.mkdir()
    dialog = window.open_settings()
    dialog.device_box.setCurrentText("cpu")
    dialog.precision_box.setCurrentText("bf16")
    dialog.tile_spin.setValue(256)
    dialog.model_field.set_value(str(model))
    dialog.encoder_field.set_value(str(encoder))
    dialog.autosave_spin.setValue(30)
    dialog.new_layer_box.setCurrentIndex(1)
    dialog.accept()

    expected = EngineSettings(
        device="cpu", precision="bf16", tile_size=256, model_folder=str(model), encoder=str(encoder)
    )
    assert engine.configured == [expected]
    assert window.engine_settings == expected
    assert "next use" in window.engine_label.text()
    assert window.file_actions.autosave_timer.interval() == 30_000
    assert window.session.workspace.restore_into_new_layer and window.layers_panel.new_layer_box.isChecked()

    # Persisted: a new window (and the next start) reads them back.
    stored = Preferences(prefs)
    assert stored.engine_settings() == expected and stored.autosave_seconds() == 30
    # (an injected engine reports its own settings: this one is made from the stored ones, as at start)
    other = new_window(qtbot, prefs, tmp_path, ConfigurableEngine(settings=Preferences(prefs).engine_settings()))
    assert other.engine_settings == expected
    assert other.file_actions.autosave_timer.interval() == 30_000
    again = other.open_settings()
    assert again.device_box.currentText() == "cpu" and again.tile_spin.value() == 256
    assert again.model_field.value() == str(model)
    again.reject()

    # Unchanged settings do not reload the model; autosave 0 is off.
    window.apply_settings(expected, autosave_seconds=0)
    assert len(engine.configured) == 1
    assert not window.file_actions.autosave_timer.isActive()


def test_backend_choice_reaches_the_engine_and_is_remembered(qtbot, prefs, tmp_path):
    engine = ConfigurableEngine()
    window = new_window(qtbot, prefs, tmp_path, engine)
    dialog = window.open_settings()
    assert dialog.backend_box.currentText() == "auto"
    assert [dialog.backend_box.itemText(i) for i in range(dialog.backend_box.count())] == [
        "auto",
        "torch",
        "onnxruntime",
    ]
    dialog.backend_box.setCurrentText("torch")
    dialog.accept()
    assert engine.configured == [EngineSettings(backend="torch")]
    assert Preferences(prefs).engine_settings().backend == "torch"
    # (an injected engine reports its own settings: this one is made from the stored ones, as at start)
    stored = ConfigurableEngine(settings=Preferences(prefs).engine_settings())
    again = new_window(qtbot, prefs, tmp_path, stored).open_settings()
    assert again.backend_box.currentText() == "torch"
    again.reject()
    prefs.setValue("engine/backend", "tensorrt")  # a value this version does not know
    assert Preferences(prefs).engine_settings().backend == "auto"


def test_a_real_engine_is_created_with_the_persisted_settings(qtbot, prefs, tmp_path):
    Preferences(prefs).set_engine_settings(EngineSettings(device="cpu", tile_size=128))
    window = MainWindow(preferences=prefs, recovery_folder=tmp_path / "recovery")  # the real engine, not loaded yet
    qtbot.addWidget(window)
    assert window.session.engine.settings == EngineSettings(device="cpu", tile_size=128)
    window.close()


def test_damaged_stored_settings_fall_back_to_defaults(prefs):
    prefs.setValue("engine/device", "tpu")
    prefs.setValue("engine/precision", "fp8")
    prefs.setValue("engine/tileSize", "many")
    prefs.setValue("recovery/autosaveSeconds", "soon")
    stored = Preferences(prefs)
    assert stored.engine_settings() == EngineSettings()
    assert stored.autosave_seconds() == 60


def test_command_line_device_is_optional_so_settings_apply(tmp_path):
    assert parse_options(["a.jpg"]).device is None
    assert parse_options(["a.jpg", "--device", "cpu"]).device == "cpu"
    assert parse_options(["a.jpg", "--recover", "--quit"]).recover


def test_about_shows_version_model_device_and_licence(qtbot, prefs, tmp_path):
    engine = ConfigurableEngine()
    window = new_window(qtbot, prefs, tmp_path, engine)
    help_menu = window.menuBar().actions()[-1].menu()
    assert help_menu.title() == "&Help" and window.menus.about_action in help_menu.actions()
    dialog = window.open_about()
    text = dialog.label.text()
    assert program_version() in text and program_version() != ""
    assert "loads on first use" in text and "auto" in text
    assert "MIT" in text
    dialog.close()
    engine._status = EngineStatus("cpu (2 threads)", "abc", "InstructIR small")
    text = window.open_about().label.text()
    assert "InstructIR small" in text and "cpu (2 threads)" in text


def test_theme_follows_light_and_dark(qtbot, prefs, tmp_path):
    app = QApplication.instance()
    palette, sheet = app.palette(), app.styleSheet()
    try:
        window = new_window(qtbot, prefs, tmp_path)
        apply_theme(app, Qt.ColorScheme.Dark)
        assert app.palette().color(QPalette.ColorRole.Window).lightness() < 80
        assert window.chat.palette().color(QPalette.ColorRole.Base).lightness() < 80  # bubbles use palette roles
        assert app.property("instructirTheme") == "dark" and "assistantMessage" in app.styleSheet()
        apply_theme(app, Qt.ColorScheme.Light)
        assert app.palette().color(QPalette.ColorRole.Window).lightness() > 150
        assert app.property("instructirTheme") == "light"
    finally:
        app.setPalette(palette)
        app.setStyleSheet(sheet)


def test_ask_below_starts_where_it_changes_what_runs_and_reaches_the_assistant(qtbot, prefs, tmp_path):
    # Below 35 % the interpreter reads no task at all, so a lower setting could change nothing.
    window = new_window(qtbot, prefs, tmp_path)
    dialog = window.open_settings()
    assert dialog.ask_spin.minimum() == 35 and dialog.ask_spin.value() == 35
    dialog.ask_spin.setValue(10)  # typed below the range: held at its start
    assert dialog.ask_spin.value() == 35
    dialog.ask_spin.setValue(60)
    dialog.accept()
    assert window.session.assistant.confidence_threshold == 0.6
    assert Preferences(prefs).ask_below() == 0.6
    prefs.setValue("chat/askBelowPercent", 20)  # stored by hand, or by an older version that allowed it
    assert Preferences(prefs).ask_below() == 0.35
