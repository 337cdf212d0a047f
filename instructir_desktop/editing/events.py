"""The session's own events, on the same dispatcher as the engine's: what changed, for whoever
draws it. Each is a small frozen dataclass; none carries a decision, only what happened."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from instructir_desktop.core.geometry import Bounds

if TYPE_CHECKING:
    from instructir_desktop.editing.conversation import Run
    from instructir_desktop.editing.transcript import TranscriptEntry


class SessionEvent:
    """Base of the session's events (subscribe to it to hear them all)."""


@dataclass(frozen=True)
class DocumentOpened(SessionEvent):
    """Another photo or project replaced everything (a DocumentChanged follows)."""


@dataclass(frozen=True)
class DocumentChanged(SessionEvent):
    """The document's pixels or its history moved (an edit, an undo, a re-blend, a save)."""


@dataclass(frozen=True)
class SelectionChanged(SessionEvent):
    """The selection changed; the image looks as it did."""


@dataclass(frozen=True)
class ActiveLayerChanged(SessionEvent):
    """Another layer is the one the next restoration applies to."""


@dataclass(frozen=True, eq=False)
class RunAdded(SessionEvent):
    """The person sent something: ``run`` holds their words and the reply to show under them."""

    run: Run


@dataclass(frozen=True, eq=False)
class RunChanged(SessionEvent):
    """``run`` moved on (its reply's text, plan, progress, status or strength changed)."""

    run: Run


@dataclass(frozen=True, eq=False)
class RunEnded(SessionEvent):
    """``run`` ended (``run.state`` says how); a RunChanged came just before."""

    run: Run


@dataclass(frozen=True)
class BusyChanged(SessionEvent):
    busy: bool  # some run has not ended


@dataclass(frozen=True, eq=False)
class PreviewShown(SessionEvent):
    """A quick result of part of the photo, to show over it until the real one lands."""

    pixels: np.ndarray
    bounds: Bounds


@dataclass(frozen=True)
class PreviewCleared(SessionEvent):
    """Whatever preview was shown is gone (the result landed, or it no longer fits the photo)."""


class Level(Enum):
    INFO = "info"  # a line in the status bar
    WARNING = "warning"  # the person must read it (a dialog where someone can be asked)


@dataclass(frozen=True)
class StatusMessage(SessionEvent):
    text: str
    level: Level = Level.INFO
    seconds: float | None = 8.0  # how long it stays (None: until replaced)


@dataclass(frozen=True)
class FileOpeningChanged(SessionEvent):
    """A file started or stopped being read in the background."""

    opening: bool


@dataclass(frozen=True)
class FileOpened(SessionEvent):
    """``path`` was opened by the person (not a recovered autosave)."""

    path: Path


@dataclass(frozen=True)
class ProjectSaved(SessionEvent):
    path: Path


@dataclass(frozen=True)
class AssistantNote(SessionEvent):
    """A line the assistant says in the chat outside any run (what opening a photo changed)."""

    text: str


@dataclass(frozen=True)
class ConversationStarted(SessionEvent):
    """Another photo opened: the chat starts this photo's conversation. The runs before belong to
    the previous photo (archived: nothing in them can be pressed); ``earlier`` is what was said
    about this photo before, saved with its project, to show read-only."""

    earlier: tuple[TranscriptEntry, ...] = ()
