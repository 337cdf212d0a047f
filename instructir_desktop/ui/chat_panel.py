"""The chat panel: the conversation, the plan of each reply as chips, progress and Cancel in the message.

Widgets only. Each reply draws a ``Reply`` (``editing.conversation``) as it is, whenever the
assistant says it changed; the panel reports what the person did (typed a message, cancelled,
changed a chip, pressed a suggestion, moved a strength slider, asked to run again) and the
assistant decides what happens.

The view follows the newest message, so progress, Cancel and the result stay in sight, unless the
person scrolled up to read: then a "New messages" button appears instead of yanking them back.
One conversation per photo: when another photo opens the chat starts over, showing what was said
about it before (a project's saved conversation) read-only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    QSlider,
    QVBoxLayout,
    QWidget,
)

from instructir_desktop.editing.assistant import Assistant
from instructir_desktop.editing.conversation import Reply, Run
from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.editing.events import AssistantNote, ConversationStarted, RunAdded, RunChanged
from instructir_desktop.editing.insight import Greeting, PhotoAnalysed
from instructir_desktop.editing.models import ModelOption
from instructir_desktop.editing.transcript import TranscriptEntry
from instructir_desktop.instructions.interpret import PlanStep, Suggestion
from instructir_desktop.ui import icons
from instructir_desktop.ui.chips import Chip, SuggestionChip, chip_text

__all__ = ["EXAMPLES", "ChatInput", "ChatPanel", "Chip", "MessageWidget", "SuggestionChip", "chip_text"]

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
_ARCHIVED_STYLE = (
    "QFrame#assistantMessage, QFrame#userMessage"
    " { background: transparent; border: 1px dashed palette(mid); border-radius: 8px; }"
)
# A dragged slider commits at release; keys and the wheel commit once they pause this long.
STRENGTH_DEBOUNCE_MS = 250
# Scrolled to within this many pixels of the end counts as "at the newest message".
FOLLOW_SLACK = 24


class MessageWidget(QFrame):
    """One message. A reply can carry a plan (chips), progress with an ETA and Cancel, a status line,
    a strength slider for the step it made, and Run again."""

    cancel_requested = Signal()
    step_changed = Signal(int, str)  # a chip's position and the task chosen for it ("" removes the step)
    run_again_requested = Signal()
    strength_changed = Signal(float)  # 0..1, once per drag (at release) or per pause of the keys
    suggestion_taken = Signal(int)  # the position of the suggestion pressed
    step_model_chosen = Signal(int, str)  # a chip's position and the model to run that step on again

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
        self.text_label.setVisible(bool(text))  # after it has a parent: a parentless widget shown is a window

        self.chips = QWidget()
        self._chip_layout = QHBoxLayout(self.chips)
        self._chip_layout.setContentsMargins(0, 0, 0, 0)
        self._chip_layout.setSpacing(4)
        self.chips.setVisible(False)
        layout.addWidget(self.chips)
        self._plan: tuple[PlanStep, ...] = ()
        self._ran_plan: tuple[PlanStep, ...] = ()
        # The models a step could run on (set by the chat panel; None: no model menu on the chips).
        self.model_options: Callable[[PlanStep], list[ModelOption]] | None = None
        self._plan_editable = False
        self.reply: Reply | None = None  # what it draws (``render``)
        self.suggestions_row = QWidget()
        self._suggestion_layout = QHBoxLayout(self.suggestions_row)
        self._suggestion_layout.setContentsMargins(0, 0, 0, 0)
        self._suggestion_layout.setSpacing(4)
        self.suggestions_row.setVisible(False)
        layout.addWidget(self.suggestions_row)
        self._suggestions: tuple[Suggestion, ...] = ()
        self.archived = False

        self.progress_row = QWidget()
        row = QHBoxLayout(self.progress_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setMaximumHeight(10)
        self.cancel_button = QPushButton(icons.icon("cancel"), "Cancel")
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

        self.strength_row = QWidget()
        strength = QHBoxLayout(self.strength_row)
        strength.setContentsMargins(0, 0, 0, 0)
        strength.addWidget(QLabel("Strength"))
        self.strength_slider = QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setRange(0, 100)
        self.strength_slider.setValue(100)
        self.strength_slider.setPageStep(10)
        self.strength_value_label = QLabel("100%")
        self.strength_value_label.setMinimumWidth(36)
        strength.addWidget(self.strength_slider, 1)
        strength.addWidget(self.strength_value_label)
        self.strength_row.setVisible(False)
        layout.addWidget(self.strength_row)
        self._committed_strength = 100
        self._strength_timer = QTimer(self)
        self._strength_timer.setSingleShot(True)
        self._strength_timer.setInterval(STRENGTH_DEBOUNCE_MS)
        self._strength_timer.timeout.connect(self.commit_strength)
        self.strength_slider.valueChanged.connect(self._strength_moved)
        self.strength_slider.sliderReleased.connect(self.commit_strength)

        self.run_again_button = QPushButton("Run again")
        self.run_again_button.setToolTip("Run this plan again on the photo as it is now, as a new step")
        self.run_again_button.clicked.connect(self.run_again_requested)
        self.run_again_button.setVisible(False)
        actions = QHBoxLayout()
        actions.setContentsMargins(0, 0, 0, 0)
        actions.addWidget(self.run_again_button)
        actions.addStretch(1)
        layout.addLayout(actions)

    @property
    def text(self) -> str:
        return self.text_label.text()

    def set_text(self, text: str) -> None:
        self.text_label.setText(text)
        self.text_label.setVisible(bool(text))  # a follow-up's reply is its status line alone

    def show_reply(self, reply: Reply) -> None:
        """Draw ``reply`` as it is now (again whenever it changes)."""
        self.reply = reply
        self.set_text(reply.text)
        if reply.plan != self._plan or reply.ran_plan != self._ran_plan:
            self.set_plan(reply.plan, reply.ran_plan)
        if reply.suggestions != self._suggestions:
            self.set_suggestions(reply.suggestions)
        self.set_plan_editable(reply.plan_editable and not reply.archived)
        self.run_again_button.setText("Run edited plan" if reply.plan_edited else "Run again")
        self.show_run_again(reply.can_run_again and not reply.archived)
        if reply.archived:
            self.archive()
        if reply.progress is None:
            self.progress_row.setVisible(False)
            self.progress_label.setVisible(False)
        else:
            self.progress_row.setVisible(True)
            self.progress_label.setVisible(True)
            if reply.progress.fraction is None:
                self.progress_bar.setRange(0, 0)  # busy until the first real fraction arrives
            else:
                self.progress_bar.setRange(0, 1000)
                self.progress_bar.setValue(round(max(0.0, min(1.0, reply.progress.fraction)) * 1000))
            self.progress_label.setText("Cancelling…" if reply.cancelling else reply.progress.text)
            self.cancel_button.setEnabled(not reply.cancelling)
        self.set_status(reply.status)
        if reply.strength is not None:
            self.strength_row.setVisible(True)
            self.set_strength_enabled(not reply.strength_blocked and not reply.archived, reply.strength_blocked)
            if not self.strength_slider.isSliderDown():
                self.set_strength_value(reply.strength)

    def archive(self) -> None:
        """This message is about a photo no longer open: shown as it was, nothing in it can be pressed."""
        self.archived = True
        self.setStyleSheet(_ARCHIVED_STYLE)
        for widget in (*self.chip_widgets, *self.suggestion_widgets):
            widget.setEnabled(False)
        self.run_again_button.setVisible(False)
        self.cancel_button.setEnabled(False)
        self.strength_slider.setEnabled(False)

    def set_suggestions(self, suggestions: Sequence[Suggestion]) -> None:
        """Show what the assistant only offers, as chips that run it when pressed."""
        self._suggestions = tuple(suggestions)
        while (item := self._suggestion_layout.takeAt(0)) is not None:
            widget = item.widget()
            if widget is not None:
                widget.deleteLater()
        for position, suggestion in enumerate(self._suggestions):
            chip = SuggestionChip(suggestion)
            chip.setEnabled(not self.archived)
            chip.clicked.connect(lambda _=False, at=position: self.suggestion_taken.emit(at))
            self._suggestion_layout.addWidget(chip)
        self._suggestion_layout.addStretch(1)
        self.suggestions_row.setVisible(bool(self._suggestions))

    @property
    def suggestion_widgets(self) -> list[SuggestionChip]:
        widgets = []
        for index in range(self._suggestion_layout.count()):
            item = self._suggestion_layout.itemAt(index)
            widget = item.widget() if item is not None else None
            if isinstance(widget, SuggestionChip):
                widgets.append(widget)
        return widgets

    def set_plan(self, steps: Sequence[PlanStep], ran_plan: Sequence[PlanStep] = ()) -> None:
        """Show ``steps`` as chips; after a run, ``ran_plan`` names each step's model (its chip's menu
        offers the others)."""
        self._plan = tuple(steps)
        self._ran_plan = tuple(ran_plan)
        ran = self._ran_plan if len(self._ran_plan) == len(self._plan) else ()
        while (item := self._chip_layout.takeAt(0)) is not None:
            widget = item.widget()
            if widget is not None:
                widget.deleteLater()
        for position, step in enumerate(self._plan):
            options = self.model_options(ran[position]) if ran and self.model_options is not None else []
            chip = Chip(step, removable=len(self._plan) > 1, models=options)
            chip.setEnabled(self._plan_editable and not self.archived)
            chip.task_chosen.connect(lambda task, at=position: self.step_changed.emit(at, task))
            chip.model_chosen.connect(lambda model, at=position: self.step_model_chosen.emit(at, model))
            self._chip_layout.addWidget(chip)
        self._chip_layout.addStretch(1)
        self.chips.setVisible(bool(self._plan))

    @property
    def plan(self) -> tuple[PlanStep, ...]:
        """The plan as the chips show it now, edits included."""
        return self._plan

    @property
    def chip_widgets(self) -> list[Chip]:
        """The chips of the plan now shown (not ones replaced and waiting for deletion)."""
        chips = []
        for index in range(self._chip_layout.count()):
            item = self._chip_layout.itemAt(index)
            widget = item.widget() if item is not None else None
            if isinstance(widget, Chip):
                chips.append(widget)
        return chips

    @property
    def chip_texts(self) -> list[str]:
        return [chip.text() for chip in self.chip_widgets]

    def set_plan_editable(self, editable: bool) -> None:
        """Chips can be changed while the plan waits to run and after it ended, not while it runs."""
        self._plan_editable = editable
        for chip in self.chip_widgets:
            chip.setEnabled(editable and not self.archived)

    def show_run_again(self, visible: bool) -> None:
        self.run_again_button.setVisible(visible)

    # ------------------------------------------------------------------ strength

    def show_strength(self, strength: float) -> None:
        """Show the slider at ``strength`` (0..1) without reporting a change."""
        self.set_strength_value(strength)
        self.strength_row.setVisible(True)

    def set_strength_value(self, strength: float) -> None:
        value = round(max(0.0, min(1.0, strength)) * 100)
        self._strength_timer.stop()
        self._committed_strength = value
        blocked = self.strength_slider.blockSignals(True)
        self.strength_slider.setValue(value)
        self.strength_slider.blockSignals(blocked)
        self.strength_value_label.setText(f"{value}%")

    def set_strength_enabled(self, enabled: bool, reason: str = "") -> None:
        self.strength_slider.setEnabled(enabled)
        tip = "" if enabled else reason
        self.strength_slider.setToolTip(tip or "Re-blend this step with the photo before it, without rerunning")
        self.strength_row.setToolTip(tip)

    @property
    def strength(self) -> float:
        return self.strength_slider.value() / 100

    def _strength_moved(self, value: int) -> None:
        self.strength_value_label.setText(f"{value}%")
        if self.strength_slider.isSliderDown():
            self._strength_timer.stop()  # committed once, at release
        else:
            self._strength_timer.start()

    def commit_strength(self) -> None:
        """Report the slider's value if it differs from the last one reported (or set)."""
        self._strength_timer.stop()
        value = self.strength_slider.value()
        if value != self._committed_strength:
            self._committed_strength = value
            self.strength_changed.emit(value / 100)

    @property
    def in_progress(self) -> bool:
        return not self.progress_row.isHidden()  # shown, or will be once the message is

    def set_status(self, status: str) -> None:
        self.status_label.setText(status)
        self.status_label.setVisible(bool(status))

    @property
    def status(self) -> str:
        return self.status_label.text()

    def _cancel_clicked(self) -> None:
        self.cancel_button.setEnabled(False)  # at once; the reply then says it is cancelling
        self.cancel_requested.emit()


class ChatInput(QLineEdit):
    """One line: Enter sends, Up/Down walk back through what was sent.

    Undo/Redo go to the window (the photo's history) unless the line holds text not sent yet that
    it can undo: after Send the line is empty, and Ctrl+Z undoes the photo's step, not the sending.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sent: list[str] = []
        self._recall = 0
        self.setPlaceholderText("Say what is wrong with the photo…")
        # The window's own keys the line never claims, even where it has a meaning for them
        # (Ctrl+E is "end of line" in some key schemes; it exports here).
        self.window_shortcuts: list[QKeySequence] = []

    def remember(self, text: str) -> None:
        self.sent.append(text)
        self._recall = len(self.sent)

    @property
    def pending(self) -> bool:
        """Text is typed and not sent: keys belong to it (its own undo, letters typed)."""
        return bool(self.text())

    def sent_away(self) -> None:
        """Emptied by sending: nothing of what was sent stays to undo."""
        self.setText("")  # unlike clear(), setText starts a new undo history

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
            if event.matches(QKeySequence.StandardKey.Undo) and not (self.pending and self.isUndoAvailable()):
                event.ignore()
                return True
            if event.matches(QKeySequence.StandardKey.Redo) and not (self.pending and self.isRedoAvailable()):
                event.ignore()
                return True
            pressed = QKeySequence(event.keyCombination())
            if any(pressed.matches(keys) == QKeySequence.SequenceMatch.ExactMatch for keys in self.window_shortcuts):
                event.ignore()
                return True
        return super().event(event)


class ChatPanel(QWidget):
    message_sent = Signal(str)
    # A chip of the greeting was pressed: the greeting (editing.insight.Greeting) and the chip's position.
    greeting_suggestion_taken = Signal(object, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatPanel")
        self.messages: list[MessageWidget] = []
        self._assistant: Assistant | None = None
        self._conversation_start = 0  # where this photo's own messages begin (after earlier ones)
        self.greeting: MessageWidget | None = None
        self._replies: dict[int, tuple[Run, MessageWidget]] = {}  # by id(run); the run kept alive
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
        intro = QLabel("Tell me what is wrong with the photo. For example (press one to edit it, then Send):")
        intro.setWordWrap(True)
        examples_layout.addWidget(intro)
        self.example_buttons: list[QPushButton] = []
        for example in EXAMPLES:
            button = QPushButton(example)
            button.setFlat(True)
            button.setStyleSheet("text-align: left; padding: 3px 6px;")
            button.setToolTip("Puts this into the box below; nothing runs until you send it")
            button.clicked.connect(lambda _=False, text=example: self.fill(text))
            examples_layout.addWidget(button)
            self.example_buttons.append(button)
        self._list.addWidget(self.examples)
        self._list.addStretch(1)
        self.scroll_area.setWidget(self._container)
        layout.addWidget(self.scroll_area, 1)

        # Shown when something new arrived below while the person reads further up.
        self.new_messages_button = QPushButton("New messages ↓")
        self.new_messages_button.setObjectName("newMessagesPill")
        self.new_messages_button.setStyleSheet(
            "QPushButton#newMessagesPill { border-radius: 11px; padding: 3px 14px;"
            " background: palette(highlight); color: palette(highlighted-text); }"
        )
        self.new_messages_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.new_messages_button.clicked.connect(self.scroll_to_newest)
        self.new_messages_button.setVisible(False)
        pill_row = QHBoxLayout()
        pill_row.addStretch(1)
        pill_row.addWidget(self.new_messages_button)
        pill_row.addStretch(1)
        layout.addLayout(pill_row)
        # Follow the newest message until the person scrolls away from the end.
        self.following = True
        bar = self.scroll_area.verticalScrollBar()
        bar.rangeChanged.connect(lambda _low, _high: self._content_grew())
        bar.valueChanged.connect(lambda _value: self._scrolled())

        row = QHBoxLayout()
        self.input = ChatInput()
        self.input.returnPressed.connect(self._send_from_input)
        self.send_button = QPushButton("Send")
        self.send_button.clicked.connect(self._send_from_input)
        row.addWidget(self.input, 1)
        row.addWidget(self.send_button)
        layout.addLayout(row)

    def send_text(self, text: str) -> None:
        """Send ``text`` as if it had been typed (automation)."""
        text = " ".join(text.split())
        if not text:
            return
        self.input.remember(text)
        self.following = True  # sending is looking at the newest message
        self.message_sent.emit(text)

    def fill(self, text: str) -> None:
        """Put ``text`` into the box to edit and send (an example): nothing runs yet."""
        self.input.setText(text)
        self.input.setFocus()
        self.input.end(False)

    def _send_from_input(self) -> None:
        text = self.input.text()
        if not text.strip():
            return
        self.input.sent_away()
        self.send_text(text)

    def bind(self, assistant: Assistant, events: Dispatcher) -> None:
        """Draw ``assistant``'s runs as they come and change; send it what the person does."""
        self._assistant = assistant
        events.subscribe(RunAdded, lambda event: self._add_run(event.run))
        events.subscribe(RunChanged, lambda event: self._render(event.run))
        events.subscribe(AssistantNote, lambda event: self._note(event.text))
        events.subscribe(ConversationStarted, lambda event: self.start_conversation(event.earlier))
        events.subscribe(PhotoAnalysed, lambda event: self.show_greeting(event.greeting))

    def show_greeting(self, greeting: Greeting) -> None:
        """What the assistant saw in the photo, at the top of its conversation (however much was said
        since it opened), with a chip per fix and "Fix all"."""
        self.examples.setVisible(False)
        message = MessageWidget("assistant", greeting.text)
        message.set_suggestions(greeting.suggestions)
        message.suggestion_taken.connect(lambda position: self.greeting_suggestion_taken.emit(greeting, position))
        at = min(self._conversation_start, len(self.messages))
        self._list.insertWidget(at + 1, message)  # the examples widget sits first in the list
        self.messages.insert(at, message)
        self.greeting = message

    def _note(self, text: str) -> None:
        self.add_message("assistant", text)

    def reply_for(self, run: Run) -> MessageWidget:
        """The message that draws ``run``'s reply."""
        return self._replies[id(run)][1]

    def _add_run(self, run: Run) -> None:
        self.add_message("user", run.text)
        reply = self.add_message("assistant", "")
        self._replies[id(run)] = (run, reply)
        assistant = self._assistant
        assert assistant is not None
        reply.cancel_requested.connect(lambda: assistant.cancel(run))
        reply.step_changed.connect(lambda position, task: assistant.change_step(run, position, task))
        reply.run_again_requested.connect(lambda: assistant.run_again(run))
        reply.strength_changed.connect(lambda strength: assistant.set_run_strength(run, strength))
        reply.suggestion_taken.connect(lambda position: assistant.take_suggestion(run, position))
        reply.model_options = assistant.models.options
        reply.step_model_chosen.connect(lambda position, model: assistant.rerun_on_model(run, position, model))
        reply.show_reply(run.reply)

    def _render(self, run: Run) -> None:
        entry = self._replies.get(id(run))
        if entry is not None:
            entry[1].show_reply(run.reply)

    def add_message(self, role: str, text: str) -> MessageWidget:
        self.examples.setVisible(False)
        message = MessageWidget(role, text)
        if role == "user":
            message.text_label.setAlignment(Qt.AlignmentFlag.AlignRight)
        # Before the stretch, so messages stack from the top.
        self._list.insertWidget(self._list.count() - 1, message)
        self.messages.append(message)
        return message

    def start_conversation(self, earlier: Sequence[TranscriptEntry] = ()) -> None:
        """Another photo is open: its own conversation, starting with what was said about it before
        (read-only: it belongs to earlier sessions)."""
        self.clear()
        if not earlier:
            return
        self._conversation_start = 1 + 2 * len(earlier)
        self.add_message("assistant", "Earlier, about this photo (saved with the project):").archive()
        for entry in earlier:
            self.add_message("user", entry.message).archive()
            reply = self.add_message("assistant", entry.reply)
            reply.set_status(
                "\n".join(part for part in (f"Ran: {entry.plan}" if entry.plan else "", entry.status) if part)
            )
            reply.archive()

    def clear(self) -> None:
        for message in self.messages:
            message.deleteLater()
        self.messages.clear()
        self._replies.clear()
        self._conversation_start = 0
        self.greeting = None
        self.examples.setVisible(True)
        self.following = True
        self.new_messages_button.setVisible(False)

    # ------------------------------------------------------------------ following the newest message

    @property
    def at_newest(self) -> bool:
        bar = self.scroll_area.verticalScrollBar()
        return bar.value() >= bar.maximum() - FOLLOW_SLACK

    def _scrolled(self) -> None:
        """The person moved the view: follow again once they are back at the end."""
        self.following = self.at_newest
        if self.following:
            self.new_messages_button.setVisible(False)

    def _content_grew(self) -> None:
        if self.following:
            self.scroll_to_newest()
        elif not self.at_newest:
            self.new_messages_button.setVisible(True)

    def scroll_to_newest(self) -> None:
        bar = self.scroll_area.verticalScrollBar()
        self.following = True
        bar.setValue(bar.maximum())
        self.new_messages_button.setVisible(False)
