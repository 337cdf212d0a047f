"""What one entry of the history holds: the change, how it was asked for, and what it cost."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.history.changes import Change, PatchChange, StackChange, decoded


@dataclass(frozen=True)
class PlannedTask:
    """One task of a restoration step: the task, the words the network was conditioned on, the
    upscale factor (None for the other tasks) and the model chosen for it, if one was. Plain data:
    the history knows no text model."""

    task: str
    instruction: str
    factor: int | None = None
    model: str = ""  # the model chosen for this task by hand (a rerun); "": the task's default


@dataclass(eq=False)
class Step:
    """One entry in the history: what was asked, how it went, a thumbnail, and the change itself.

    ``change`` is None once the memory cap has dropped it: the step is still listed, but the
    history can no longer move across it.
    """

    label: str
    change: Change | None
    thumbnail: np.ndarray
    tasks: tuple[str, ...] = ()
    strength: float = 1.0
    seconds: float = 0.0
    model_id: str = ""
    created: float = field(default_factory=time.time)
    # What the network was asked, task by task (a restoration from an instruction; empty otherwise).
    plan: tuple[PlannedTask, ...] = ()

    @property
    def kind(self) -> str:
        """Which kind of change: "pixels" (a rectangle of one layer), "layers" (the stack), or "dropped"."""
        if isinstance(self.change, PatchChange):
            return "pixels"
        if isinstance(self.change, StackChange):
            return "layers"
        return "dropped"

    @property
    def kept(self) -> bool:
        return self.change is not None

    @property
    def nbytes(self) -> int:
        """Memory held: the compressed change plus the thumbnail."""
        return int(self.thumbnail.nbytes) + (0 if self.change is None else self.change.nbytes)

    @property
    def bounds(self) -> Bounds | None:
        """The rectangle a pixel step changed (None for stack steps)."""
        return self.change.bounds if isinstance(self.change, PatchChange) else None

    @property
    def can_reblend(self) -> bool:
        return self.change is not None and self.change.restoration is not None

    def mask(self) -> np.ndarray | None:
        """The selection a restoration used, under ``bounds`` (None: the whole rectangle, or not kept)."""
        if self.change is None or self.change.restoration is None:
            return None
        return decoded(self.change.restoration.mask)


@dataclass
class Recording:
    """Handed out by ``History.record``: after the block, ``step`` is the new step (None: no change)."""

    step: Step | None = None
