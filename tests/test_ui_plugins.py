"""Plugins in the window: the Plugins menu, controls generated from a manifest, the Plugin Manager
(enable/disable, user folders, persisted in a temporary QSettings file), broken plugins."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from fake_engine import FakeEngine
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.editing.conversation import RunState
from instructir_desktop.io import read_image, write_image
from instructir_desktop.ui.action_dialog import ActionDialog
from instructir_desktop.ui.main_window import MainWindow
from instructir_desktop.ui.plugin_manager import DISABLED_KEY, ERROR_COLOUR, FOLDERS_KEY

DONE, FAILED = RunState.DONE, RunState.FAILED

KNOBS_MANIFEST = """
id = "knobs"
name = "Knobs"
version = "0.3"
api_version = 1
module = "knobs.code"

[[actions]]
id = "tint"
title = "Tint"
function = "tint"
description = "Adds a colour tint."
  [[actions.parameters]]
  name = "amount"
  kind = "float"
  default = 0.25
  min = 0.0
  max = 1.0
  help = "how strong the tint is"
  [[actions.parameters]]
  name = "passes"
  kind = "int"
  default = 2
  min = 1
  max = 8
  [[actions.parameters]]
  name = "invert"
  kind = "bool"
  default = false
  title = "Invert first"
  help = "negative before tinting"
  [[actions.parameters]]
  name = "channel"
  kind = "choice"
  default = "green"
  choices = ["red", "green", "blue"]

[[actions]]
id = "darken"
title = "Darken"
function = "darken"
"""

KNOBS_CODE = """
    import numpy as np

    def tint(image, mask, params, context):
        out = 1.0 - image if params["invert"] else image.copy()
        channel = ["red", "green", "blue"].index(params["channel"])
        out[..., channel] += params["amount"] * params["passes"] / 8
        context.progress(1.0)
        return np.clip(out, 0, 1).astype(np.float32)

    def darken(image, mask, params, context):
        return (image * 0.5).astype(np.float32)
"""

ONE_ACTION = """
id = "{name}"
name = "{name}"
version = "1"
module = "{name}.code"

[[actions]]
id = "go"
title = "Go {name}"
function = "go"
"""


def write_plugin(root: Path, name: str, manifest: str, code: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "plugin.toml").write_text(manifest)
    (folder / "__init__.py").write_text("")
    (folder / "code.py").write_text(textwrap.dedent(code))
    return folder


@pytest.fixture
def plugin_folder(tmp_path) -> Path:
    root = tmp_path / "plugins"
    write_plugin(root, "knobs", KNOBS_MANIFEST, KNOBS_CODE)
    return root


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    write_image(path, (np.round(rng.random((24, 32, 3)) * 255) / 255).astype(np.float32))
    return path, read_image(path).rgb


def settings_file(tmp_path: Path, folders: Sequence[Path] = (), disabled: Sequence[str] = ()) -> QSettings:
    """A QSettings on an ini file in tmp_path: the tests never touch the person's own settings."""
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    if folders:
        settings.setValue(FOLDERS_KEY, [str(f) for f in folders])
    if disabled:
        settings.setValue(DISABLED_KEY, list(disabled))
    settings.sync()
    return settings


def open_window(qtbot, tmp_path, photo_path=None, engine=None, **settings) -> MainWindow:
    window = MainWindow(engine or FakeEngine(), preferences=settings_file(tmp_path, **settings))
    window.interactive = False
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    if photo_path is not None:
        assert window.open_path(photo_path)
    return window


def pixels(window: MainWindow) -> np.ndarray:
    document = window.session.workspace.document
    assert document is not None
    return document.flatten().rgb


def last_run(qtbot, window: MainWindow, state: str = DONE):
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.ended, timeout=5000)
    assert run.state == state, (run.state, run.reply.status, run.error)
    return run


def menu_ids(window: MainWindow) -> set[str]:
    return set(window.menus.plugins_menu.plugin_actions)


# ----------------------------------------------------------------------------- the action dialog


def test_the_dialog_builds_controls_from_the_declared_parameters(qtbot, tmp_path, plugin_folder):
    window = open_window(qtbot, tmp_path, folders=[plugin_folder])
    dialog = ActionDialog(window.plugins.action("knobs.tint"))
    qtbot.addWidget(dialog)
    amount, passes = dialog.controls["amount"], dialog.controls["passes"]
    invert, channel = dialog.controls["invert"], dialog.controls["channel"]

    assert isinstance(amount, QDoubleSpinBox)
    assert (amount.minimum(), amount.maximum(), amount.value()) == (0.0, 1.0, 0.25)
    assert amount.singleStep() == pytest.approx(0.01)
    assert amount.toolTip() == "how strong the tint is" == dialog.labels["amount"].toolTip()
    assert isinstance(passes, QSpinBox)
    assert (passes.minimum(), passes.maximum(), passes.value()) == (1, 8, 2)
    assert isinstance(invert, QCheckBox) and not invert.isChecked()
    assert dialog.labels["invert"].text() == "Invert first" and invert.toolTip() == "negative before tinting"
    assert isinstance(channel, QComboBox)
    assert [channel.itemText(i) for i in range(channel.count())] == ["red", "green", "blue"]
    assert channel.currentText() == "green"
    assert dialog.labels["amount"].text() == "Amount"
    assert dialog.values() == {"amount": 0.25, "passes": 2, "invert": False, "channel": "green"}

    amount.setValue(0.5)
    passes.setValue(20)  # clamped to the declared maximum
    invert.setChecked(True)
    channel.setCurrentText("blue")
    assert dialog.values() == {"amount": 0.5, "passes": 8, "invert": True, "channel": "blue"}
    dialog.restore_defaults()
    assert dialog.values() == {"amount": 0.25, "passes": 2, "invert": False, "channel": "green"}


# ----------------------------------------------------------------------------- the Plugins menu


def test_a_menu_action_asks_its_parameters_and_applies_one_undoable_step(qtbot, tmp_path, plugin_folder, photo):
    path, original = photo
    window = open_window(qtbot, tmp_path, path, folders=[plugin_folder])
    assert {"knobs.tint", "knobs.darken", "photo-tools.unsharp-mask"} <= menu_ids(window)
    assert window.menus.plugins_menu.plugin_actions["knobs.tint"].text() == "Tint…"

    window.menus.plugins_menu.plugin_actions["knobs.tint"].trigger()
    assert window.action_dialog is not None and window.action_dialog.isVisible()
    window.action_dialog.reject()  # Cancel runs nothing
    assert window.session.assistant.runs == []

    window.menus.plugins_menu.plugin_actions["knobs.tint"].trigger()
    dialog = window.action_dialog
    assert dialog is not None and dialog.isVisible() and dialog.windowTitle() == "Tint"
    dialog.controls["amount"].setValue(0.8)
    dialog.controls["channel"].setCurrentText("red")
    dialog.accept()
    run = last_run(qtbot, window)

    assert run.action is not None and run.action.id == "knobs.tint"
    assert run.params == {"amount": 0.8, "passes": 2, "invert": False, "channel": "red"}
    expected = original.copy()
    expected[..., 0] = np.clip(expected[..., 0] + 0.8 * 2 / 8, 0, 1)
    np.testing.assert_allclose(pixels(window), expected, atol=1e-4)
    history = window.session.workspace.history
    assert len(history) == 1
    assert history.steps[0].tasks == ("knobs.tint",)
    assert history.steps[0].label.startswith("Tint (amount 0.8")
    assert window.compare_view.compare(0, 1)  # comparable like any restoration
    window.compare_view.end_compare()
    window.undo()
    np.testing.assert_array_equal(pixels(window), original)
    window.redo()
    np.testing.assert_allclose(pixels(window), expected, atol=1e-4)


def test_a_menu_action_without_parameters_runs_at_once_on_the_selection(qtbot, tmp_path, plugin_folder, photo):
    from instructir_desktop.core.selection import Selection

    path, original = photo
    window = open_window(qtbot, tmp_path, path, folders=[plugin_folder])
    document = window.session.workspace.document
    document.selection = Selection.rectangle(24, 32, Bounds(x=4, y=4, width=16, height=12), 0)
    window.menus.plugins_menu.plugin_actions["knobs.darken"].trigger()
    last_run(qtbot, window)
    after = pixels(window)
    outside = np.ones((24, 32), dtype=bool)
    outside[4:16, 4:20] = False
    np.testing.assert_array_equal(after[outside], original[outside])
    np.testing.assert_allclose(after[~outside], original[~outside] * 0.5, atol=1e-4)
    assert len(window.session.workspace.history) == 1


def test_run_action_without_a_photo_says_to_open_one(qtbot, tmp_path, plugin_folder):
    window = open_window(qtbot, tmp_path, folders=[plugin_folder])
    run = window.session.assistant.run_action(window.plugins.action("knobs.darken"))
    assert run.state == FAILED and "Open a photo first" in window.chat.reply_for(run).text_label.text()


# ----------------------------------------------------------------------------- the Plugin Manager


def test_the_manager_lists_plugins_and_disabling_one_empties_its_menu_and_persists(
    qtbot, tmp_path, plugin_folder, photo
):
    path, _ = photo
    window = open_window(qtbot, tmp_path, path, folders=[plugin_folder])
    window.menus.plugins_menu.manage_action.trigger()
    manager = window.plugin_manager
    assert manager is not None and manager.isVisible()
    item = manager.item("knobs")
    assert [item.text(c) for c in range(4)] == ["Knobs", "0.3", "knobs", f"folder {plugin_folder}"]
    assert item.checkState(0) == Qt.CheckState.Checked
    assert [item.child(i).text(2) for i in range(item.childCount())] == ["knobs.tint", "knobs.darken"]
    assert manager.item("photo-tools").childCount() >= 3
    assert manager.error_text("knobs") == ""

    item.setCheckState(0, Qt.CheckState.Unchecked)  # what clicking the checkbox does

    assert not window.plugins.plugin("knobs").enabled
    assert not {"knobs.tint", "knobs.darken"} & menu_ids(window)
    assert "photo-tools.auto-levels" in menu_ids(window)
    stored = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    assert stored.value(DISABLED_KEY) in (["knobs"], "knobs")

    # The next start reads it back.
    again = MainWindow(FakeEngine(), preferences=stored)
    qtbot.addWidget(again)
    assert not again.plugins.plugin("knobs").enabled
    assert "knobs.tint" not in menu_ids(again)

    manager.set_enabled("knobs", True)
    assert item.checkState(0) == Qt.CheckState.Checked
    assert "knobs.tint" in menu_ids(window)
    assert QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat).value(DISABLED_KEY) in (None, [], "")


def test_adding_a_user_folder_rescans_and_persists(qtbot, tmp_path, plugin_folder, photo):
    path, original = photo
    window = open_window(qtbot, tmp_path, path)
    assert "knobs.tint" not in menu_ids(window)
    manager = window.open_plugin_manager()
    with pytest.raises(KeyError):
        manager.item("knobs")

    assert manager.add_folder(plugin_folder)
    assert not manager.add_folder(plugin_folder)  # already scanned

    assert "knobs.tint" in menu_ids(window)
    assert manager.item("knobs").text(0) == "Knobs"
    assert str(plugin_folder.resolve()) in manager.folders_label.text()
    window.session.assistant.run_action(window.plugins.action("knobs.darken"))
    last_run(qtbot, window)
    np.testing.assert_allclose(pixels(window), original * 0.5, atol=1e-4)
    again = MainWindow(FakeEngine(), preferences=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(again)
    assert "knobs.tint" in menu_ids(again)


# ----------------------------------------------------------------------------- broken plugins


def test_broken_plugins_are_listed_and_running_them_leaves_the_photo_unchanged(qtbot, tmp_path, plugin_folder, photo):
    path, original = photo
    write_plugin(plugin_folder, "badtoml", "id = 'badtoml'\n[[actions]\n", "")
    raises = "def go(image, mask, params, context):\n    raise RuntimeError('boom at run time')\n"
    write_plugin(plugin_folder, "crashy", ONE_ACTION.format(name="crashy"), raises)
    write_plugin(plugin_folder, "noimport", ONE_ACTION.format(name="noimport"), "raise ImportError('no fancylib')\n")
    window = open_window(qtbot, tmp_path, path, folders=[plugin_folder])
    assert {"crashy.go", "noimport.go", "knobs.tint"} <= menu_ids(window)

    manager = window.open_plugin_manager()
    assert "not valid TOML" in manager.error_text("badtoml")
    assert manager.item("badtoml").foreground(0).color() == ERROR_COLOUR
    assert manager.error_text("crashy") == ""

    window.menus.plugins_menu.plugin_actions["crashy.go"].trigger()
    run = last_run(qtbot, window, FAILED)
    assert "boom at run time" in run.reply.status and "crashy.go" in run.reply.status
    window.menus.plugins_menu.plugin_actions["noimport.go"].trigger()
    run = last_run(qtbot, window, FAILED)
    assert "no fancylib" in run.reply.status
    np.testing.assert_array_equal(pixels(window), original)
    assert len(window.session.workspace.history) == 0 and not window.session.workspace.modified

    # The import error is now known to the host, and the manager shows it when opened again.
    manager.close()
    window.open_plugin_manager()
    assert "no fancylib" in manager.error_text("noimport")
    assert manager.item("noimport").foreground(0).color() == ERROR_COLOUR

    # The window keeps working.
    window.menus.plugins_menu.plugin_actions["knobs.darken"].trigger()
    last_run(qtbot, window)
    np.testing.assert_allclose(pixels(window), original * 0.5, atol=1e-4)


def test_a_queued_action_whose_plugin_is_disabled_meanwhile_fails_cleanly(qtbot, tmp_path, plugin_folder, photo):
    path, original = photo
    engine = FakeEngine(hold=True)
    window = open_window(qtbot, tmp_path, path, engine=engine, folders=[plugin_folder])
    window.chat.send_text("remove the noise")
    restoring = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: restoring.job is not None, timeout=5000)
    queued = window.session.assistant.run_action(window.plugins.action("knobs.darken"))
    assert queued.state is RunState.WAITING
    window.open_plugin_manager().set_enabled("knobs", False)
    engine.release(restoring.job.request_id)
    qtbot.waitUntil(lambda: queued.ended, timeout=5000)
    assert restoring.state == DONE
    assert queued.state == FAILED and "disabled" in queued.reply.status
    np.testing.assert_allclose(pixels(window), original * 0.5, atol=1e-4)  # the restoration only
    assert len(window.session.workspace.history) == 1


# ----------------------------------------------------------------------------- plain chat messages

ECHO_MANIFEST = """
id = "echo"
name = "Echo"
version = "1"
module = "echo.code"
chat_messages = "answer"

[[actions]]
id = "answer"
title = "Answer"
function = "answer"
  [[actions.parameters]]
  name = "strength"
  kind = "float"
  default = 0.5
  [[actions.parameters]]
  name = "message"
  kind = "text"
  default = ""
"""

ECHO_CODE = """
    import numpy as np

    def answer(image, mask, params, context):
        context.log("heard: " + params["message"])
        shift = 0.1 if "darker" in params["message"] else 0.0
        return np.clip(image - shift, 0, 1).astype(np.float32)
"""


def test_plain_messages_go_to_the_restore_plugin(qtbot, tmp_path, photo):
    window = open_window(qtbot, tmp_path, photo[0])
    assert window.plugins.message_action().id == "restore.instruct"
    window.chat.send_text("remove the noise")
    run = last_run(qtbot, window)
    # Read first (the plan as chips), then run through the restore action like any plugin action.
    assert run.interpretation is not None and run.action is not None and run.action.id == "restore.instruct"
    assert len(window.session.workspace.history) == 1


def test_with_the_restore_plugin_disabled_a_message_restores_nothing_and_says_how_to_turn_it_on(qtbot, tmp_path, photo):
    window = open_window(qtbot, tmp_path, photo[0], disabled=["restore"])
    before = pixels(window).copy()
    window.chat.send_text("remove the noise")
    run = last_run(qtbot, window, FAILED)
    assert "restore plugin is disabled" in run.reply.text and "Manage Plugins" in run.reply.text
    assert len(window.session.workspace.history) == 0 and np.array_equal(pixels(window), before)
    assert not window.session.assistant.busy

    window.plugins.set_enabled("restore", True)  # as the manager does
    window.chat.send_text("remove the noise")
    last_run(qtbot, window)
    assert len(window.session.workspace.history) == 1


def test_another_plugin_can_take_the_chat_messages(qtbot, tmp_path, photo):
    root = tmp_path / "plugins"
    write_plugin(root, "echo", ECHO_MANIFEST, ECHO_CODE)
    window = open_window(qtbot, tmp_path, photo[0], folders=[root], disabled=["restore"])
    window.chat.send_text("make it darker please")
    last_run(qtbot, window)
    np.testing.assert_allclose(pixels(window), np.clip(photo[1] - 0.1, 0, 1), atol=1 / 255)
    assert len(window.session.workspace.history) == 1
    window.undo()
    np.testing.assert_allclose(pixels(window), photo[1], atol=1e-6)


@pytest.mark.parametrize(
    ("declared", "problem"),
    [('chat_messages = "nope"', "unknown action echo.nope"), ('chat_messages = "plain"', "no text parameter")],
)
def test_a_chat_messages_declaration_must_name_an_action_with_a_text_parameter(declared, problem):
    from instructir_desktop.plugins.api import PluginError
    from instructir_desktop.plugins.host import parse_manifest

    manifest = f"""
id = "echo"
{declared}
[[actions]]
id = "plain"
title = "Plain"
function = "plain"
"""
    with pytest.raises(PluginError, match=problem):
        parse_manifest(manifest, "echo/plugin.toml")
