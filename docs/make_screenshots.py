"""The screenshots in docs/: the real window, the real engine and bundled model, on an X server.

Run it on a display with a window manager (the README's were taken under Xvfb with openbox):

    Xvfb :99 -screen 0 1600x1000x24 & DISPLAY=:99 openbox &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb python docs/make_screenshots.py docs/

It opens a synthetic noisy photo, talks to the chat (a request it is sure of, one it is not), then
compares two states zoomed in with the split dragged on the canvas, and opens a plugin's dialog
with its live preview; after each, the whole screen is grabbed (window manager and dialogs
included) into ``chat.jpg``, ``compare.jpg`` and ``plugin-dialog.jpg``.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def photo(width: int = 960, height: int = 640, seed: int = 7) -> np.ndarray:
    """A landscape-like scene: sky gradient, hills, a few shapes, and sensor-like noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.stack([0.55 + 0.2 * y / height, 0.7 + 0.15 * y / height, 0.95 - 0.1 * y / height], axis=-1)
    ridge = height * (0.55 + 0.08 * np.sin(x / 97) + 0.04 * np.sin(x / 23 + 1))
    hills = np.stack([0.25 + 0.1 * np.sin(x / 61), 0.45 + 0.1 * np.cos(y / 41), 0.2 + 0 * x], axis=-1)
    image = np.where((y > ridge)[..., None], hills, sky)
    for cx, cy, r, colour in ((720, 150, 60, (1.0, 0.92, 0.6)), (260, 480, 45, (0.7, 0.2, 0.15))):
        disc = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
        image[disc] = colour
    house = (x > 420) & (x < 560) & (y > 380) & (y < 500)
    image[house] = (0.85, 0.82, 0.75)
    roof = (y < 380) & (y > 330) & (np.abs(x - 490) < (y - 330) * 1.4)
    image[roof] = (0.5, 0.15, 0.12)
    rng = np.random.default_rng(seed)
    noisy = image + 0.07 * rng.standard_normal(image.shape).astype(np.float32)
    return np.clip(noisy, 0, 1).astype(np.float32)


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "docs")
    out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtCore import QEventLoop, QPoint, QSettings, Qt, QTimer
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from instructir_desktop.inference.requests import EngineSettings
    from instructir_desktop.io import write_image
    from instructir_desktop.ui.main_window import MainWindow

    app = QApplication([argv[0]])
    scratch = Path(tempfile.mkdtemp(prefix="screenshots-"))
    path = scratch / "harbour.png"
    write_image(path, photo())

    def wait(condition: Callable[[], bool], timeout: float = 600) -> None:
        loop, ticker = QEventLoop(), QTimer()
        ticker.timeout.connect(lambda: loop.quit() if condition() else None)
        ticker.start(20)
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("timed out")
            loop.exec()
        ticker.stop()

    def settle(seconds: float = 0.6) -> None:
        end = time.monotonic() + seconds
        wait(lambda: time.monotonic() > end)

    def shot(name: str) -> None:
        settle()
        # QPixmap.save reports failure only through its return value.
        if not QGuiApplication.primaryScreen().grabWindow(0).save(str(out / name), "JPG", 90):
            raise OSError(f"could not write {out / name}")
        print("wrote", out / name)

    preferences = QSettings(str(scratch / "prefs.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=EngineSettings(device="cpu"), preferences=preferences, recovery_folder=scratch / "r")
    window.interactive = False
    screen = QGuiApplication.primaryScreen().availableGeometry()
    window.setGeometry(screen.adjusted(8, 34, -8, -8))  # the title bar on screen too
    window.show()
    window.activateWindow()
    window.preload_model()
    wait(lambda: window.session.engine.status is not None)
    window.open_path(path, ask=False)
    wait(lambda: window.session.workspace.document is not None and not window.opening)

    def say(text: str) -> None:
        box = window.chat.input
        box.setFocus()
        QTest.keyClicks(box, text)
        QTest.keyClick(box, Qt.Key.Key_Return)
        run = window.session.assistant.runs[-1]
        wait(lambda: run.ended)
        wait(lambda: window.canvas_up_to_date)

    say("there's grain everywhere, clean it up")
    say("make the car red")
    say("what is the capital of France")
    window.chat.input.setText("brighten it a little")  # typed, not sent: the box keeps its own undo
    shot("chat.jpg")

    window.chat.input.clear()
    window.history_panel.choose_compare(0, 1)
    window.history_panel.compare_button.click()
    wait(lambda: window.canvas.comparing)
    canvas = window.canvas
    canvas.set_zoom(2.0)  # zoomed in on the house: the split stays where it was dragged on screen
    canvas.centerOn(500, 430)
    viewport = canvas.viewport()
    start = QPoint(viewport.width() // 2, viewport.height() // 2)
    end = QPoint(math.floor(viewport.width() * 0.42), viewport.height() // 2)
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(viewport, end)
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=end)
    shot("compare.jpg")
    window.compare_view.end_compare()
    canvas.fit()

    window.layers_panel.duplicate_action.trigger()
    document = window.session.workspace.document
    document.active_layer.name = "Sharpened"
    window.menus.plugins_menu.plugin_actions["photo-tools.unsharp-mask"].trigger()
    dialog = window.action_dialog
    assert dialog is not None
    dialog.controls["amount"].setValue(2.5)
    dialog.controls["radius"].setValue(2.0)
    wait(lambda: window.canvas.result_preview_visible)
    dialog.move(window.geometry().topLeft() + QPoint(60, 140))
    shot("plugin-dialog.jpg")
    dialog.reject()
    window.session.close()
    window.hide()
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
