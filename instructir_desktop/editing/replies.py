"""The words the assistant answers with: progress lines, endings, how sure a plan is, what a plan
will do, and how an action is named. Nothing here shows an internal id or a Python literal: every
text a person reads is made from titles and formatted values."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from instructir_desktop.inference.requests import Progress
from instructir_desktop.instructions.interpret import PlanStep, Suggestion, describe_step
from instructir_desktop.model.tasks import TASK_TITLES
from instructir_desktop.plugins.api import ActionInfo, Parameter, ParameterValue

NO_PHOTO = "Open a photo first (Ctrl+O, or drop one on the window), then tell me what to fix."
NO_SELECTION = (
    "There is no selection yet. Draw one with the rectangle or brush tool (Select menu or toolbar), "
    'then say "only the selection" again.'
)
PREVIEW_STATUS = "Preview of the visible area · full resolution on its way…"
STALE = "The photo changed while this was running, so the result was not applied. Send the message again to redo it."
CANCELLED = "Cancelled. The photo is unchanged."
READING = "Reading your request…"
WAITING = "Waiting for the previous request…"
STARTING = "Starting…"
RESTORE_TURNED_OFF = (
    "Restoring from a message is turned off: the InstructIR restore plugin is disabled. "
    "Turn it on in Plugins → Manage Plugins…, or use a /command."
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


def progress_line(event: Progress, elapsed: float) -> str:
    """``Step 1 of 2 · 40% · tile 3/8 · about 12 s left``; the time left is estimated from the time
    so far when the engine does not know it."""
    eta = event.eta_seconds
    if eta is None and event.fraction > 0.05:
        eta = elapsed * (1.0 - event.fraction) / event.fraction
    parts = [event.stage or "Restoring", f"{round(event.fraction * 100)}%"]
    if event.tiles_total > 1:
        parts.append(f"tile {event.tiles_done}/{event.tiles_total}")
    if eta_text := format_eta(eta):
        parts.append(eta_text)
    return " · ".join(parts)


_UNIT = re.compile(r"^(?P<name>.*?)\s*\((?P<unit>[^()]*)\)\s*$")


def describe_setting(parameter: Parameter, value: ParameterValue) -> str:
    """One parameter as a person reads it: ``radius 1.5 px``, ``per channel off``, ``clip 0.5 %``."""
    label = parameter.label
    unit = ""
    if (match := _UNIT.match(label)) is not None:
        label, unit = match.group("name"), match.group("unit")
    name = label[:1].lower() + label[1:]
    if parameter.kind == "bool":
        return f"{name} {'on' if value else 'off'}"
    if parameter.kind in ("float", "int") and isinstance(value, int | float):
        text = f"{value:g}"
    elif parameter.kind == "plan":
        text = parameter.format(value)
    else:
        text = f"“{value}”" if parameter.kind == "text" else str(value)
    return f"{name} {text}" + (f" {unit}" if unit else "")


def describe_action(action: ActionInfo, params: Mapping[str, ParameterValue]) -> str:
    """``Unsharp mask (amount 0.8, radius 1.5 px)``: the chat's text and the history's label for an
    action, in the words of its manifest (titles and formatted values, never names or literals)."""
    formats = {parameter.name: parameter for parameter in action.parameters}
    settings = ", ".join(describe_setting(formats[name], value) for name, value in params.items() if name in formats)
    return action.title + (f" ({settings})" if settings else "")


# ---------------------------------------------------------------------------------------------- plans


def confidence_words(confidence: float) -> str:
    """How sure the text model is of a step, as a person would say it (not an amount): ``sure 72 %``;
    a step picked by hand is ``your choice``."""
    if confidence >= 1.0:
        return "your choice"
    if confidence >= 0.9:
        word = "very sure"
    elif confidence >= 0.7:
        word = "sure"
    elif confidence >= 0.5:
        word = "fairly sure"
    else:
        word = "unsure"
    return f"{word} {round(confidence * 100)} %"


def suggestion_title(suggestion: Suggestion) -> str:
    return suggestion.label or TASK_TITLES.get(suggestion.task, suggestion.task)


def suggestion_chip_text(suggestion: Suggestion) -> str:
    """An offer from the analysis says what it does ("Remove noise", "Fix all"); a guess about the
    person's words asks ("Did you mean: Remove noise?")."""
    return suggestion.label or f"Did you mean: {suggestion_title(suggestion)}?"


def suggestion_tooltip(suggestion: Suggestion) -> str:
    press = f"Press to {suggestion_title(suggestion).lower()} now, as a new step."
    return f"{suggestion.reason} {press}" if suggestion.reason else press


def plan_line(steps: Sequence[PlanStep]) -> str:
    """``Remove noise, then Upscale 2×``: a plan in one line a person reads."""
    return ", then ".join(describe_step(step) for step in steps)


def done(seconds: float, device: str, notices: tuple[str, ...] = ()) -> str:
    where = f" on {device}" if device else ""
    return " ".join((f"Done in {seconds:.1f} s{where}. Ctrl+Z undoes it.", *notices))
