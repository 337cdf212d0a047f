"""Automation mode: the real window driven from the command line through the chat panel."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from fake_engine import FakeEngine
from PySide6.QtGui import QImage

from instructir_desktop.io import read_image, write_image
from instructir_desktop.ui.app import run_application
from instructir_desktop.ui.automation import parse_options


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    write_image(path, np.full((40, 60, 3), 0.8, dtype=np.float32))
    return path


def test_runs_instructions_saves_a_screenshot_and_exports(qtapp_or_none, photo, tmp_path, capsys):
    shot, out = tmp_path / "shot.png", tmp_path / "out.png"
    argv = [str(photo), "--run", "remove the noise", "--run", "brighten it", "--screenshot", str(shot)]
    code = run_application([*argv, "--export", str(out), "--quit"], engine=FakeEngine(threaded=True))
    assert code == 0, capsys.readouterr().err
    picture = QImage(str(shot))
    assert picture.width() >= 1000 and picture.height() >= 650
    np.testing.assert_allclose(read_image(out).rgb, 0.2, atol=2 / 255)
    assert "exported" in capsys.readouterr().err


def test_fails_with_a_non_zero_code_and_exports_nothing(qtapp_or_none, photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = run_application([str(photo), "--run", "add a dog", "--export", str(out), "--quit"], engine=FakeEngine())
    assert code == 1
    assert not out.exists()
    assert "nothing to restore" in capsys.readouterr().err


def test_a_missing_photo_fails(qtapp_or_none, tmp_path):
    code = run_application([str(tmp_path / "missing.jpg"), "--run", "remove the noise", "--quit"], engine=FakeEngine())
    assert code == 1


def test_parse_options():
    options = parse_options(["a.jpg", "--run", "x", "--run", "y", "--quit", "--device", "cpu"])
    assert options.runs == ["x", "y"] and options.quit and options.device == "cpu" and options.automated
    assert not parse_options(["a.jpg"]).automated
    with pytest.raises(SystemExit):
        parse_options(["--device", "tpu"])


@pytest.fixture
def qtapp_or_none(qapp):
    """run_application uses the test's QApplication and closes its own window."""
    return qapp


def test_follow_ups_and_commands_that_end_at_once_do_not_stall_automation(qtapp_or_none, photo, tmp_path):
    out = tmp_path / "out.png"
    argv = [str(photo), "--run", "remove the noise", "--run", "a bit less", "--run", "/levels", "--timeout", "20"]
    code = run_application([*argv, "--export", str(out), "--quit"], engine=FakeEngine())
    assert code == 0
    assert out.is_file()


def test_the_screenshot_waits_for_a_large_photos_display_image(qtapp_or_none, tmp_path, monkeypatch, capsys):
    """A large photo's display image builds on another thread: the screenshot must show the result."""
    import time

    import instructir_desktop.ui.display as display_module

    monkeypatch.setattr(display_module, "SYNCHRONOUS_PIXELS", 0)  # every photo counts as large
    real_build = display_module.flattened_pixmap

    def slow_build(image):  # as slow as a 24 MP build, so a screenshot taken too early shows the old image
        time.sleep(0.6)
        return real_build(image)

    monkeypatch.setattr(display_module, "flattened_pixmap", slow_build)
    path, shot = tmp_path / "magenta.png", tmp_path / "shot.png"
    colour = np.array([0.8, 0.2, 0.6], dtype=np.float32)
    write_image(path, np.broadcast_to(colour, (300, 400, 3)).copy())
    argv = [str(path), "--run", "remove the noise", "--screenshot", str(shot), "--quit"]
    assert run_application(argv, engine=FakeEngine(threaded=True)) == 0, capsys.readouterr().err
    pixels = read_image(shot).rgb

    def count(rgb: np.ndarray) -> int:
        return int(np.all(np.abs(pixels - rgb) < 1.5 / 255, axis=-1).sum())

    assert count(colour * 0.5) > 10_000  # the fake engine's halved result fills the canvas
    assert count(colour) < 10_000  # the original shows only in the history's "Original" thumbnail
