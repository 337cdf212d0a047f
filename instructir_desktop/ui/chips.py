"""The chat's chips: a plan step (press it to choose another task) and a suggestion (press it to run
it). Both look like buttons — a border, a hover shade, a pointing hand, a ▾ on a step — and say how
sure the text model is in words ("sure 72 %"), never as a bare number that reads like an amount.
Tooltips are wrapped into short lines, so they fit on any screen."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QToolButton, QWidget

from instructir_desktop.editing.models import ModelOption
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


def chip_text(step: PlanStep, model: str = "") -> str:
    """``Remove noise · sure 72 % ▾``: the task, how sure the model is, the model that ran it when it
    was not the built-in one, and that it opens a menu."""
    on_model = f" · {model}" if model else ""
    return f"{describe_step(step)} · {confidence_words(step.confidence)}{on_model} ▾"


_MODEL_DATA = "model:"  # menu entries that run the step on a model carry "model:<id>"


class Chip(QToolButton):
    """One step of a plan: the task and how sure the text model is. A press offers the other tasks
    (and removing the step) while the plan can still be edited."""

    task_chosen = Signal(str)  # a task name, or "" to remove the step
    model_chosen = Signal(str)  # run the step again on this model (an id; "bundled": the built-in one)

    def __init__(
        self,
        step: PlanStep,
        removable: bool = False,
        parent: QWidget | None = None,
        models: Sequence[ModelOption] = (),
    ) -> None:
        super().__init__(parent)
        self.step = step
        ran = next((option for option in models if option.ran), None)
        self.setText(chip_text(step, ran.label if ran is not None and ran.model_id != "bundled" else ""))
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
        if len(models) > 1:  # another model can run this step: a new step, to compare with this one
            menu.addSection("Run this step again on")
            for option in models:
                action = QAction(option.label, menu)
                action.setCheckable(True)
                action.setChecked(option.ran)
                action.setData(_MODEL_DATA + option.model_id)
                action.triggered.connect(lambda _=False, chosen=option: self._run_on(chosen))
                menu.addAction(action)
        self.setMenu(menu)

    def _run_on(self, option: ModelOption) -> None:
        if not option.ran:
            self.model_chosen.emit(option.model_id)

    def choose_model(self, model_id: str) -> None:
        """As if ``model_id`` had been picked under "Run this step again on"."""
        for action in self.menu().actions():
            if action.data() == _MODEL_DATA + model_id:
                action.trigger()
                return
        raise ValueError(f"no menu entry for model {model_id!r}")

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
