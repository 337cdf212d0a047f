"""The conversation as data: each message the person sent is a ``Run``, with the ``Reply`` the chat
shows under it. The assistant changes them and announces each change (``RunChanged``); the chat
panel draws them as they are and decides nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

from instructir_desktop.core.document import Document
from instructir_desktop.editing.applying import ReadyResult
from instructir_desktop.editing.engine_client import EngineJob
from instructir_desktop.history import History, Step
from instructir_desktop.instructions.followups import FollowUp
from instructir_desktop.instructions.interpret import Interpretation, PlanStep, Suggestion
from instructir_desktop.plugins.api import ActionInfo, ParameterValue


class RunState(Enum):
    """Where a run is: INTERPRETING → WAITING → RUNNING → one of the ended states."""

    INTERPRETING = "interpreting"  # the text model reads the message
    WAITING = "waiting"  # in the queue behind earlier runs
    RUNNING = "running"  # its job runs on the engine
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"
    STALE = "stale"  # the photo changed while it ran: the result was not applied
    NOTHING = "nothing"  # it asked for nothing that can be done

    @property
    def ended(self) -> bool:
        return self in _ENDED


_ENDED = frozenset({RunState.DONE, RunState.CANCELLED, RunState.FAILED, RunState.STALE, RunState.NOTHING})


@dataclass(frozen=True)
class ProgressView:
    fraction: float | None  # None: busy, no fraction to show yet
    text: str


@dataclass(eq=False)
class Reply:
    """Everything the assistant's message shows."""

    text: str = ""
    plan: tuple[PlanStep, ...] = ()  # as chips
    plan_editable: bool = False  # the chips can be changed (waiting, or ended: for Run again)
    plan_edited: bool = False  # the person changed them (Run again then runs the edited plan)
    progress: ProgressView | None = None  # None: nothing running
    cancelling: bool = False
    status: str = ""
    strength: float | None = None  # the slider of the step it made (None: no slider)
    strength_blocked: str = ""  # why the slider cannot be moved now ("" : it can)
    can_run_again: bool = False
    # The plan as it ran, each step naming its model (``PlanStep.model``; None: the bundled one).
    ran_plan: tuple[PlanStep, ...] = ()
    # What the assistant only offers (a guess too unsure to act on): chips that run it when pressed.
    suggestions: tuple[Suggestion, ...] = ()
    # The conversation of a photo that is no longer open: shown as it was, nothing in it can be pressed.
    archived: bool = False


@dataclass(eq=False)
class Run:
    """One message on its way through interpretation and running, and what it did."""

    text: str
    reply: Reply = field(default_factory=Reply)
    state: RunState = RunState.INTERPRETING
    error: str = ""
    label: str = ""  # the history's label, when not the message itself
    strength: float = 1.0
    started: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False
    # What it runs: a plan (interpreted, or given) through an action, or a follow-up.
    interpretation: Interpretation | None = None
    action: ActionInfo | None = None
    params: dict[str, ParameterValue] = field(default_factory=dict)
    followup: FollowUp | None = None
    selection_only: bool = False  # must run through the selection ("only the selection")
    # Its engine jobs.
    interpret_job: EngineJob[Interpretation] | None = None
    job: EngineJob[ReadyResult] | None = None
    # The snapshot it was started from.
    document: Document | None = None
    layer_id: str = ""
    revision: int = -1
    # The step its result replaces when that is still the latest ("only the selection").
    replaces: Step | None = None
    replaces_layer: str = ""
    preview_shown: bool = False
    # What it applied: the history step (its strength can change while it is the latest).
    step: Step | None = None
    history: History | None = None
    # Another photo was opened since: this run belongs to the previous photo's conversation.
    archived: bool = False

    @property
    def ended(self) -> bool:
        return self.state.ended

    @property
    def step_label(self) -> str:
        return self.label or self.text
