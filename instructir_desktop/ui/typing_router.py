"""Letters typed on the photo while the chat box holds unsent text go to the box.

The tool letters (H, M, B) are canvas shortcuts; a person who typed half a message, clicked the
photo to look closer and typed on would otherwise switch tools with every letter. While the box
holds text, a printable key on the canvas is claimed before any shortcut sees it and typed into
the box, which takes the focus back.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QLineEdit, QWidget

_TYPING_MODIFIERS = (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ShiftModifier)


class TypingRouter(QObject):
    def __init__(self, canvas: QWidget, box: QLineEdit, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._box = box
        canvas.installEventFilter(self)

    def _typing(self, event: QEvent) -> bool:
        return (
            isinstance(event, QKeyEvent)
            and bool(self._box.text())
            and event.modifiers() in _TYPING_MODIFIERS
            and event.text().isprintable()
            and bool(event.text().strip())
        )

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.ShortcutOverride and self._typing(event):
            event.accept()  # no shortcut: the key press comes to the canvas, and on to the box
            return True
        if kind == QEvent.Type.KeyPress and self._typing(event):
            assert isinstance(event, QKeyEvent)
            self._box.setFocus()
            self._box.insert(event.text())
            return True
        return super().eventFilter(watched, event)
