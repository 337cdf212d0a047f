"""Builders and constants shared by the tests split out of test_ui_files.py."""

from __future__ import annotations

import numpy as np
from fake_engine import FakeEngine
from PIL import Image

from instructir_desktop.editing.conversation import RunState
from instructir_desktop.io import write_image
from instructir_desktop.ui.main_window import MainWindow

DONE = RunState.DONE

EXIF_MAKE = 0x010F


def new_window(qtbot, prefs, tmp_path, engine=None) -> MainWindow:
    window = MainWindow(engine or FakeEngine(), preferences=prefs, recovery_folder=tmp_path / "recovery")
    window.interactive = False
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def make_png(path, height=12, width=16, seed=0, bits=8):
    rng = np.random.default_rng(seed)
    write_image(path, rng.random((height, width, 3)).astype(np.float32), bit_depth=bits)
    return path


def make_jpeg_with_exif(path, make="TestCam"):
    exif = Image.Exif()
    exif[EXIF_MAKE] = make
    Image.fromarray(np.full((24, 32, 3), 200, np.uint8)).save(path, quality=95, exif=exif.tobytes())
    return path


def send(qtbot, window, text):
    window.chat.send_text(text)
    run = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: run.ended, timeout=5000)
    assert run.state == DONE
    return run
