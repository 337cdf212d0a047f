"""Restore is a plugin for real: the chat, ``/restore``, the Plugins menu, and the command line's
``restore`` and ``apply`` all reach the network through the one plugin-host call
(``PluginHost.execute``), with the same parameters and the same result type any plugin gets."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from fake_engine import FakeEngine
from recording_host import RecordingHost
from test_cli import photo, tiny_runtime
from test_ui_editor import make_photo, open_window

from instructir_desktop.cli import main as cli
from instructir_desktop.editing.conversation import RunState
from instructir_desktop.plugins.host import BUILTIN_RESTORE_ACTION
from instructir_desktop.plugins.outcome import ActionOutcome


def declared_parameters(host: RecordingHost) -> set[str]:
    return {parameter.name for parameter in host.action(BUILTIN_RESTORE_ACTION).parameters}


def assert_went_through_the_host(host: RecordingHost, instruction: str) -> ActionOutcome:
    (call,) = host.calls
    assert call.action_id == BUILTIN_RESTORE_ACTION
    assert set(call.params) <= declared_parameters(host)
    assert call.params["instruction"] == instruction
    assert isinstance(call.outcome, ActionOutcome) and call.error is None
    assert call.outcome.tasks == ("denoise",)
    return call.outcome


@pytest.mark.parametrize("path", ["chat", "command", "menu"])
def test_the_editor_restores_through_the_plugin_host(qtbot, tmp_path, path):
    source = tmp_path / "photo.png"
    original = make_photo(source)
    window = open_window(qtbot, FakeEngine(threaded=True), source)  # a worker thread, like the real engine
    window.session.plugins = host = RecordingHost()
    if path == "chat":
        window.chat.send_text("remove the noise")
    elif path == "command":
        window.chat.send_text("/restore remove the noise")
    else:
        window.choose_plugin_action(host.action(BUILTIN_RESTORE_ACTION))
        dialog = window.action_dialog
        assert dialog is not None
        dialog.controls["instruction"].setText("remove the noise")
        dialog.accept()
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.ended, timeout=5000)
    assert run.state is RunState.DONE, run.reply.status
    outcome = assert_went_through_the_host(host, "remove the noise")
    assert host.calls[0].thread.name != "MainThread"  # on the engine's worker, not the GUI thread
    # The step in the history is what the host returned, whichever way it was asked for.
    step = window.session.workspace.history.steps[-1]
    assert step.tasks == outcome.tasks and step.model_id == outcome.model_id == "fake-model"
    np.testing.assert_allclose(window.session.workspace.document.flatten().rgb, original * 0.5, atol=1e-4)


@pytest.mark.parametrize("command", ["restore", "apply"])
def test_the_command_line_restores_through_the_plugin_host(tmp_path, monkeypatch, command):
    from instructir_desktop.inference import runtime as runtime_module

    host = RecordingHost()
    runtime = tiny_runtime()
    monkeypatch.setattr(cli, "plugin_host", lambda folders=(): host)
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime)
    monkeypatch.setattr(runtime_module, "load_runtime", lambda settings, encoder=None: runtime)
    source = photo(tmp_path / "in.png")
    out = tmp_path / "out.png"
    if command == "restore":
        argv = ["restore", str(source), "-i", "remove the noise", "-o", str(out), "--quiet"]
    else:
        argv = ["apply", BUILTIN_RESTORE_ACTION, str(source), "-o", str(out), "--param", "instruction=remove the noise"]
    assert cli.main(argv) == cli.EXIT_OK
    outcome = assert_went_through_the_host(host, "remove the noise")
    assert out.exists() and outcome.model_id == "tiny"
