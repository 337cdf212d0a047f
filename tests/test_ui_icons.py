"""Icons: every one the window uses exists, renders in the theme's colour, and survives a theme change."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from fake_engine import FakeEngine
from PySide6.QtGui import QColor, QGuiApplication, QPalette

from instructir_desktop.ui import icons
from instructir_desktop.ui.main_window import MainWindow


def opaque_colours(icon, size=24) -> set[str]:
    image = icon.pixmap(size, size).toImage()
    colours = set()
    for y in range(image.height()):
        for x in range(image.width()):
            colour = image.pixelColor(x, y)
            if colour.alpha() == 255:
                colours.add(colour.name())
    return colours


def test_every_icon_file_is_valid_svg_drawn_in_the_theme_colour(qtbot):
    folder = icons.icon_path("open").parent
    names = sorted(path.stem for path in folder.glob("*.svg"))
    assert len(names) >= 20 and icons.APP_ICON_NAME in names
    for name in names:
        themed = icons.icon(name)
        assert not themed.isNull(), name
        assert opaque_colours(themed), f"{name} draws nothing"
    text = QGuiApplication.palette().color(QPalette.ColorRole.WindowText).name()
    assert opaque_colours(icons.icon("undo")) == {text}  # line art in exactly the text colour
    assert len(opaque_colours(icons.app_icon(), 48)) > 3  # the app icon keeps its own colours
    assert icons.icon("no-such-icon").isNull()  # a missing file: text only, never a crash


def test_the_window_shows_icons_and_retints_them_for_a_dark_theme(qtbot):
    window = MainWindow(FakeEngine())
    qtbot.addWidget(window)
    for action in (window.menus.open_action, window.menus.undo_action, window.selection_tools.brush_action):
        assert not action.icon().isNull()
    assert window.menus.main_toolbar.actions() and not window.windowIcon().isNull()
    assert all(not button.icon().isNull() for button in window.layers_panel.buttons.values())

    app = QGuiApplication.instance()
    original = app.palette()
    dark = QPalette(original)
    dark.setColor(QPalette.ColorRole.WindowText, QColor("#f0f0f0"))
    try:
        app.setPalette(dark)
        qtbot.waitUntil(lambda: opaque_colours(window.menus.undo_action.icon()) == {"#f0f0f0"}, timeout=3000)
    finally:
        app.setPalette(original)
