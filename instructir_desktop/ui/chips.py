"""The chat's chips: a plan step (press it to choose another task) and a suggestion (press it to run
it). Both look like buttons — a border, a hover shade, a pointing hand, a ▾ on a step — and say how
sure the text model is in words ("sure 72 %"), never as a bare number that reads like an amount.
Tooltips are wrapped into short lines, so they fit on any screen."""

from __future__ import annotations

import textwrap

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QToolButton, QWidget

from instructir_desktop.editing.replies import confidence_words, suggestion_chip_text, suggestion_tooltip
from instructir_desktop.instructions.interpret import PlanStep, Suggestion, describe_step
from instructir_desktop.model.tasks import TASK_TITLES, TASKS

TOOLTIP_COLUMNS = 48

_PRESSABLE = (
    "QToolButton {{ border: 1px solid palette(mid); border-radius: 10px; padding: 2px 10px;"
    " background: {background}; }}"
    " QToolButton:hover {{ background: palette(midlight); border-color: palette(highlight); }}"
    " QToolButton:pressed {{ background: palette(mid); }}"
    " QToolButton:disabled {{ color: palette(mid); border-style: dashed; }}"
    " QToolButton::menu-indicator {{ image: none; width: 0; }}"
)
CHIP_STYLE = _PRESSABLE.format(background="palette(button)")
SUGGESTION_STYLE = _PRESSABLE.format(background="palette(base)") + " QToolButton { font-style: italic; }"


def wrapped_tooltip(text: str, columns: int = TOOLTIP_COLUMNS) -> str:
    """``text`` in lines of at most ``columns`` characters: a tooltip that fits beside any chip."""
    return "\n".join(textwrap.fill(paragraph, columns) for paragraph in text.split("\n"))


def chip_text(step: PlanStep) -> str:
    """``Remove noise · sure 72 % ▾``: the task, how sure the model is, and that it opens a menu."""
    return f"{describe_step(step)} · {confidence_words(step.confidence)} ▾"


class Chip(QToolButton):
    """One step of a plan: the task and how sure the text model is. A press offers the other tasks
    (and removing the step) while the plan can still be edited."""

    task_chosen = Signal(str)  # a task name, or "" to remove the step

    def __init__(self, step: PlanStep, removable: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.step = step
        self.setText(chip_text(step))
        self.setStyleSheet(CHIP_STYLE)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        source = f" from your words “{step.instruction}”" if step.confidence < 1.0 else ""
        self.setToolTip(
            wrapped_tooltip(
                f"{describe_step(step)}{source}. The model is {confidence_words(step.confidence)} of it. "
                "Press to choose another task before it runs, or for Run again."
            )
        )
        menu = QMenu(self)
        for task in TASKS:
            action = QAction(TASK_TITLES[task], menu)
            action.setCheckable(True)
            action.setChecked(task == step.task)
            action.setData(task)
            action.triggered.connect(lambda _=False, chosen=task: self._choose(chosen))
            menu.addAction(action)
        if removable:
            menu.addSeparator()
            remove = QAction("Remove this step", menu)
            remove.setData("")
            remove.triggered.connect(lambda _=False: self._choose(""))
            menu.addAction(remove)
        self.setMenu(menu)

    def _choose(self, task: str) -> None:
        if task != self.step.task:
            self.task_chosen.emit(task)

    def choose(self, task: str) -> None:
        """As if ``task`` had been picked from the chip's menu ("" removes the step)."""
        menu = self.menu()
        for action in menu.actions():
            if not action.isSeparator() and action.data() == task:
                action.trigger()
                return
        raise ValueError(f"no menu entry for {task!r}")


class SuggestionChip(QToolButton):
    """Something the assistant only offers ("Did you mean: Remove noise?"): pressing runs it."""

    def __init__(self, suggestion: Suggestion, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.suggestion = suggestion
        self.setText(suggestion_chip_text(suggestion))
        self.setStyleSheet(SUGGESTION_STYLE)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(wrapped_tooltip(suggestion_tooltip(suggestion)))
