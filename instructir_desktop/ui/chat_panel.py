"""The chat panel: the conversation, the plan of each reply as chips, progress and Cancel in the message.

Widgets only: the panel says what the person typed (``message_sent``) and which message they asked
to cancel; the conversation controller decides what happens.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.instructions.interpret import PlanStep, describe_step

EXAMPLES: tuple[str, ...] = (
    "Remove the noise",
    "It's too dark, brighten it",
    "Get rid of the rain",
    "This photo is blurry, sharpen it",
    "Clear the haze, then make the colours pop",
    "Upscale it 2×",
)

_USER_STYLE = "QFrame#userMessage { background: palette(highlight); border-radius: 8px; }"
_ASSISTANT_STYLE = "QFrame#assistantMessage { background: palette(alternate-base); border-radius: 8px; }"
_CHIP_STYLE = (
    "QLabel { border: 1px solid palette(mid); border-radius: 9px; padding: 1px 8px; background: palette(base); }"
)


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:  # None or NaN: not known yet
        return ""
    if seconds < 1:
        return "almost done"
    if seconds < 60:
        return f"about {round(seconds)} s left"
    minutes, rest = divmod(round(seconds), 60)
    return f"about {minutes} min {rest:02d} s left"


class Chip(QLabel):
    """One step of a plan: the task and how sure the text model is."""

    def __init__(self, step: PlanStep, parent: QWidget | None = None) -> None:
        super().__init__(f"{describe_step(step)} · {round(step.confidence * 100)}%", parent)
        self.step = step
        self.setStyleSheet(_CHIP_STYLE)
        self.setToolTip(f'Task "{step.task}", from: "{step.instruction}"')


class MessageWidget(QFrame):
    """One message. A reply can carry a plan (chips), progress with an ETA and Cancel, and a status line."""

    cancel_requested = Signal()

    def __init__(self, role: str, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.setObjectName("userMessage" if role == "user" else "assistantMessage")
        self.setStyleSheet(_USER_STYLE if role == "user" else _ASSISTANT_STYLE)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(4)
        self.text_label = QLabel(text)
        self.text_label.setWordWrap(True)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if role == "user":
            self.text_label.setStyleSheet("color: palette(highlighted-text);")
        layout.addWidget(self.text_label)

        self.chips = QWidget()
        self._chip_layout = QHBoxLayout(self.chips)
        self._chip_layout.setContentsMargins(0, 0, 0, 0)
        self._chip_layout.setSpacing(4)
        self.chips.setVisible(False)
        layout.addWidget(self.chips)

        self.progress_row = QWidget()
        row = QHBoxLayout(self.progress_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(10)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._cancel_clicked)
        row.addWidget(self.progress_bar, 1)
        row.addWidget(self.cancel_button)
        self.progress_row.setVisible(False)
        layout.addWidget(self.progress_row)
        self.progress_label = QLabel()
        self.progress_label.setVisible(False)
        layout.addWidget(self.progress_label)

        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setVisible(False)
        layout.addWidget(self.status_label)

    @property
    def text(self) -> str:
        return self.text_label.text()

    def set_text(self, text: str) -> None:
        self.text_label.setText(text)

    def set_plan(self, steps: Sequence[PlanStep]) -> None:
        while (item := self._chip_layout.takeAt(0)) is not None:
            widget = item.widget()
            if widget is not None:
                widget.deleteLater()
        for step in steps:
            self._chip_layout.addWidget(Chip(step))
        self._chip_layout.addStretch(1)
        self.chips.setVisible(bool(steps))

    @property
    def chip_texts(self) -> list[str]:
        return [chip.text() for chip in self.chips.findChildren(Chip) if chip.parent() is self.chips]

    def start_progress(self, text: str = "Waiting…") -> None:
        self.progress_bar.setRange(0, 0)  # busy until the first real fraction arrives
        self.progress_label.setText(text)
        self.progress_row.setVisible(True)
        self.progress_label.setVisible(True)
        self.cancel_button.setEnabled(True)

    def set_progress(self, fraction: float, text: str) -> None:
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(round(max(0.0, min(1.0, fraction)) * 1000))
        self.progress_label.setText(text)

    @property
    def in_progress(self) -> bool:
        return self.progress_row.isVisible()

    def finish(self, status: str) -> None:
        """The job is over (done, cancelled or failed): hide the progress and say how it ended."""
        self.progress_row.setVisible(False)
        self.progress_label.setVisible(False)
        self.set_status(status)

    def set_status(self, status: str) -> None:
        self.status_label.setText(status)
        self.status_label.setVisible(bool(status))

    @property
    def status(self) -> str:
        return self.status_label.text()

    def _cancel_clicked(self) -> None:
        self.cancel_button.setEnabled(False)
        self.progress_label.setText("Cancelling…")
        self.cancel_requested.emit()


class ChatInput(QLineEdit):
    """One line: Enter sends, Up/Down walk back through what was sent.

    Undo/Redo shortcuts go to the window (the photo's history) unless the line itself has
    something to undo, so Ctrl+Z is not swallowed just because the input has the focus.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sent: list[str] = []
        self._recall = 0
        self.setPlaceholderText("Say what is wrong with the photo…")

    def remember(self, text: str) -> None:
        self.sent.append(text)
        self._recall = len(self.sent)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Up and self.sent:
            self._recall = max(0, self._recall - 1)
            self.setText(self.sent[self._recall])
            return
        if event.key() == Qt.Key.Key_Down and self.sent:
            self._recall = min(len(self.sent), self._recall + 1)
            self.setText(self.sent[self._recall] if self._recall < len(self.sent) else "")
            return
        super().keyPressEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent):
            if event.matches(QKeySequence.StandardKey.Undo) and not self.isUndoAvailable():
                event.ignore()
                return True
            if event.matches(QKeySequence.StandardKey.Redo) and not self.isRedoAvailable():
                event.ignore()
                return True
        return super().event(event)


class ChatPanel(QWidget):
    message_sent = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatPanel")
        self.messages: list[MessageWidget] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self._container = QWidget()
        self._list = QVBoxLayout(self._container)
        self._list.setContentsMargins(0, 0, 4, 0)
        self._list.setSpacing(6)

        self.examples = QWidget()
        examples_layout = QVBoxLayout(self.examples)
        examples_layout.setContentsMargins(0, 0, 0, 0)
        intro = QLabel("Tell me what is wrong with the photo. For example:")
        intro.setWordWrap(True)
        examples_layout.addWidget(intro)
        self.example_buttons: list[QPushButton] = []
        for example in EXAMPLES:
            button = QPushButton(example)
            button.setFlat(True)
            button.setStyleSheet("text-align: left; padding: 3px 6px;")
            button.clicked.connect(lambda _=False, text=example: self.send_text(text))
            examples_layout.addWidget(button)
            self.example_buttons.append(button)
        self._list.addWidget(self.examples)
        self._list.addStretch(1)
        self.scroll_area.setWidget(self._container)
        layout.addWidget(self.scroll_area, 1)

        row = QHBoxLayout()
        self.input = ChatInput()
        self.input.returnPressed.connect(self._send_from_input)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self._send_from_input)
        row.addWidget(self.input, 1)
        row.addWidget(self.send_button)
        layout.addLayout(row)

    def send_text(self, text: str) -> None:
        """Send ``text`` as if it had been typed (example buttons, automation)."""
        text = " ".join(text.split())
        if not text:
            return
        self.input.remember(text)
        self.message_sent.emit(text)

    def _send_from_input(self) -> None:
        text = self.input.text()
        if not text.strip():
            return
        self.input.clear()
        self.send_text(text)

    def add_message(self, role: str, text: str) -> MessageWidget:
        self.examples.setVisible(False)
        message = MessageWidget(role, text)
        if role == "user":
            message.text_label.setAlignment(Qt.AlignmentFlag.AlignRight)
        # Before the stretch, so messages stack from the top.
        self._list.insertWidget(self._list.count() - 1, message)
        self.messages.append(message)
        QTimer.singleShot(0, self._scroll_to_end)
        return message

    def clear(self) -> None:
        for message in self.messages:
            message.deleteLater()
        self.messages.clear()
        self.examples.setVisible(True)

    def _scroll_to_end(self) -> None:
        bar = self.scroll_area.verticalScrollBar()
        bar.setValue(bar.maximum())
