"""The editor's icons: line drawings in ``resources/icons`` tinted with the theme's text colour.

The SVGs draw with ``currentColor``; each icon is rendered in the palette's text colour (and its
disabled colour for the disabled state), so the same files suit the light and the dark theme.
An icon that cannot be found or read is an empty QIcon: the action then shows its text only.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer

from instructir_desktop.core.install_paths import CHECKOUT_ROOT, installed_share_folders

# A checkout or editable install has ``resources/`` beside the package; an installed wheel has
# the icons in its data folder.
ICON_FOLDERS = (
    CHECKOUT_ROOT / "resources" / "icons",
    *(share / "instructir-desktop" / "icons" for share in installed_share_folders()),
)
APP_ICON_NAME = "instructir-desktop"  # also the desktop entry's Icon= name
_SIZES = (16, 24, 32, 48)


def icon_path(name: str) -> Path | None:
    for folder in ICON_FOLDERS:
        path = folder / f"{name}.svg"
        if path.is_file():
            return path
    return None


def icon(name: str) -> QIcon:
    """The themed icon ``name`` (a file name in resources/icons without ``.svg``)."""
    palette = QGuiApplication.palette()
    normal = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.WindowText).name()
    disabled = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText).name()
    return _icon(name, normal, disabled)


def app_icon() -> QIcon:
    return _icon(APP_ICON_NAME, "", "")


@cache  # keyed by the colours too: a theme change renders afresh, switching back is free
def _icon(name: str, colour: str, disabled_colour: str) -> QIcon:
    path = icon_path(name)
    if path is None:
        return QIcon()
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return QIcon()
    result = QIcon()
    for mode, tint in ((QIcon.Mode.Normal, colour), (QIcon.Mode.Disabled, disabled_colour)):
        if mode == QIcon.Mode.Disabled and not tint:
            continue  # an icon with its own colours: Qt greys it out itself
        svg = source.replace("currentColor", tint) if tint else source
        renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
        if not renderer.isValid():
            return QIcon()
        for size in _SIZES:
            pixmap = QPixmap(size, size)
            pixmap.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pixmap)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            renderer.render(painter)
            painter.end()
            result.addPixmap(pixmap, mode)
    return result
