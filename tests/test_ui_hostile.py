"""The window with hostile things around it: broken plugin folders at start-up, a hanging plugin
cancelled from the chat, a project that declares 17 gigapixels, an exception nobody foresaw, the
log file the About dialog opens, and Ctrl-C."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import logging

import numpy as np
import pytest
from hostile_fixtures import LISTING, PROJECT, build
from PySide6.QtCore import Qt
from PySide6.QtGui import QDesktopServices
from test_plugin_isolation import HANGS, V2_MANIFEST, alive
from test_plugins import write_folder_plugin
from test_ui_plugins import last_run, open_window, photo  # noqa: F401 - a fixture

from instructir_desktop.core.logs import configure_logging, log_file
from instructir_desktop.editing.conversation import RunState
from instructir_desktop.inference.engine import Engine
from instructir_desktop.ui import boundary


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return build(tmp_path_factory.mktemp("hostile-ui"))


def test_the_editor_starts_with_broken_plugin_folders_and_lists_each_with_its_reason(qtbot, tmp_path, hostile):
    listing = [case for case in hostile if case.door == LISTING]
    folders = sorted({case.path.parent if case.path.is_dir() else case.path for case in listing})
    window = open_window(qtbot, tmp_path, folders=folders)
    manager = window.open_plugin_manager()
    shown = [manager.error_text(record.id) for record in window.plugins.records if record.error]
    for case in listing:
        assert any(all(word in line for word in case.expect) for line in shown), (case.name, shown)
    assert "good.go" in window.menus.plugins_menu.plugin_actions


def test_a_hanging_plugin_is_cancelled_from_the_chat_within_two_seconds(qtbot, tmp_path, photo):  # noqa: F811
    path, original = photo
    plugins = tmp_path / "plugins"
    write_folder_plugin(plugins, "stuck", V2_MANIFEST, HANGS)
    engine = Engine(runtime_loader=lambda settings: pytest.fail("no model needed"))
    window = open_window(qtbot, tmp_path, path, engine=engine, folders=[plugins])
    window.menus.plugins_menu.plugin_actions["stuck.brighten"].trigger()
    window.action_dialog.accept()  # its parameters as they are
    run = window.session.assistant.runs[-1]
    # The plugin reports "started" from the worker, then waits for ever.
    qtbot.waitUntil(lambda: run.reply.progress is not None and "started" in run.reply.progress.text, timeout=30000)
    worker = window.plugins._process.pid
    assert worker is not None and alive(worker)
    qtbot.mouseClick(window.chat.reply_for(run).cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: run.ended, timeout=2000)
    assert run.state is RunState.CANCELLED
    assert not alive(worker)
    np.testing.assert_array_equal(window.session.workspace.document.flatten().rgb, original)
    assert len(window.session.workspace.history) == 0


def test_a_project_declaring_17_gigapixels_is_refused_in_one_sentence(qtbot, tmp_path, hostile, photo):  # noqa: F811
    path, original = photo
    window = open_window(qtbot, tmp_path, path)
    huge = next(case for case in hostile if case.door == PROJECT and case.path.name == "huge.irproject")
    assert not window.open_path(huge.path, ask=False)
    message = window.statusBar().currentMessage()
    assert "huge.irproject" in message and "limit" in message and "\n" not in message
    assert window.session.workspace.path == path
    np.testing.assert_array_equal(window.session.workspace.document.flatten().rgb, original)


def test_an_unforeseen_failure_opening_a_file_is_one_sentence_and_logged(qtbot, tmp_path, photo, monkeypatch):  # noqa: F811
    from instructir_desktop.editing import files

    path, original = photo
    window = open_window(qtbot, tmp_path, path)
    configure_logging()

    def breaks(_path):
        raise ZeroDivisionError("a reader bug")

    monkeypatch.setattr(files, "load_file", breaks)
    other = tmp_path / "other.png"
    other.write_bytes(path.read_bytes())
    assert not window.open_path(other, ask=False, background=False)
    message = window.statusBar().currentMessage()
    assert message.startswith("other.png could not be opened (ZeroDivisionError: a reader bug)")
    assert str(log_file()) in message
    logged = log_file().read_text(encoding="utf-8")
    assert "opening " in logged and "Traceback" in logged and "ZeroDivisionError: a reader bug" in logged
    np.testing.assert_array_equal(window.session.workspace.document.flatten().rgb, original)


def test_an_exception_no_slot_caught_is_logged_and_said_and_the_window_goes_on(qtbot, tmp_path, photo):  # noqa: F811
    path, _ = photo
    window = open_window(qtbot, tmp_path, path)
    configure_logging()
    uninstall = boundary.install(window, window.session.loop)
    try:
        import sys

        try:
            raise LookupError("nobody caught me")
        except LookupError as error:
            sys.excepthook(type(error), error, error.__traceback__)
    finally:
        uninstall()
    message = window.statusBar().currentMessage()
    assert message.startswith("Something went wrong (LookupError: nobody caught me); the window keeps running")
    assert "LookupError: nobody caught me" in log_file().read_text(encoding="utf-8")
    assert window.isVisible() and not window.interrupted


def test_ctrl_c_closes_the_window_without_asking_and_keeps_unsaved_work_for_recovery(qtbot, tmp_path, photo):  # noqa: F811
    path, _ = photo
    window = open_window(qtbot, tmp_path, path)
    window.interactive = True  # a person is there: a normal close would ask about the unsaved work
    window.chat.send_text("remove the noise")
    last_run(qtbot, window)
    assert window.session.workspace.modified
    recovery = window.file_actions.recovery
    boundary.report_unhandled(window, KeyboardInterrupt())
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert window.interrupted
    assert recovery.path is not None and recovery.path.is_file()


def test_about_shows_the_log_file_and_opens_it(qtbot, tmp_path, monkeypatch):
    window = open_window(qtbot, tmp_path)
    configure_logging()
    logging.getLogger("instructir_desktop.test").error("something to look at later")
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    dialog = window.open_about()
    assert str(log_file()) in dialog.log_label.text() and dialog.open_log_button.isEnabled()
    qtbot.mouseClick(dialog.open_log_button, Qt.MouseButton.LeftButton)
    assert opened == [str(log_file())]
    assert "something to look at later" in log_file().read_text(encoding="utf-8")


def test_undoing_a_step_whose_stored_pixels_are_damaged_is_said_and_changes_nothing(qtbot, tmp_path):
    import json
    import zlib

    from test_history_projects import build_project, manifest_of, rewrite

    path, _ = build_project(tmp_path)
    project = path.with_suffix(".irproject")
    path.rename(project)
    step = manifest_of(project)["history"]["steps"][1]["change"]["restoration"]["restored"]
    # The zip's checksum is right, the zlib stream inside is not: found only when the step is undone.
    damaged = zlib.compress(b"not the pixels")
    step_chunks = [[step["chunks"][0][0], len(damaged)]]
    manifest = manifest_of(project)
    manifest["history"]["steps"][1]["change"]["restoration"]["restored"]["chunks"] = step_chunks
    rewrite(project, {step["entry"]: damaged, "manifest.json": json.dumps(manifest).encode()})
    window = open_window(qtbot, tmp_path)
    assert window.open_path(project, ask=False)
    workspace = window.session.workspace
    assert workspace.history.index == 2  # "remove the noise" applied, "paint" undone
    window.undo()  # back before "remove the noise": its original pixels are sound
    before = workspace.document.flatten().rgb.copy()
    window.redo()  # its restored pixels are not
    message = window.statusBar().currentMessage()
    assert "remove the noise" in message and "damaged" in message and "\n" not in message
    assert workspace.history.index == 1
    np.testing.assert_array_equal(workspace.document.flatten().rgb, before)
    assert window.isVisible()


def test_an_automation_instruction_that_is_not_utf8_is_a_usage_error(capsys):
    from instructir_desktop.ui.automation import parse_options

    with pytest.raises(SystemExit) as exit_code:
        parse_options(["photo.png", "--run", os.fsdecode(b"plus clair, s'il vous pla\xeet")])
    assert exit_code.value.code == 2
    assert "--run instruction is not valid UTF-8" in capsys.readouterr().err
