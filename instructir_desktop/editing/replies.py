"""The words the assistant answers with: progress lines, endings, and how an action is named."""

from __future__ import annotations

from collections.abc import Mapping

from instructir_desktop.inference.requests import Progress
from instructir_desktop.plugins.api import ActionInfo, ParameterValue

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


def describe_action(action: ActionInfo, params: Mapping[str, ParameterValue]) -> str:
    """``Unsharp mask (amount 0.8, radius 1.5)``: the chat's text and the history's label for an action."""
    formats = {parameter.name: parameter for parameter in action.parameters}
    settings = ", ".join(
        f"{name} {formats[name].format(value) if name in formats else value}" for name, value in params.items()
    )
    return action.title + (f" ({settings})" if settings else "")


def done(seconds: float, device: str, notices: tuple[str, ...] = ()) -> str:
    where = f" on {device}" if device else ""
    return " ".join((f"Done in {seconds:.1f} s{where}. Ctrl+Z undoes it.", *notices))
