"""The open photo's analysis: run in the background when a photo opens, greeted with in the chat,
and used to answer questions about the photo ("is it sharp?", "what ISO?") and "fix it".

Opening never waits for it: the pixels are snapshotted (the layers' arrays, no copy) and flattened
and measured on the "analysis" lane. When another photo opens before it ends, its result is
dropped. A question asked before the analysis is ready is answered when it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instructir_desktop.core.document import Document
from instructir_desktop.core.logs import record_failure
from instructir_desktop.editing import replies
from instructir_desktop.editing.analysis import Analysis, analyse
from instructir_desktop.editing.assistant import Assistant
from instructir_desktop.editing.background import Background, Outcome
from instructir_desktop.editing.conversation import ProgressView, Run, RunState
from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.editing.events import DocumentOpened, SessionEvent
from instructir_desktop.editing.photo_answers import answer, fix_steps, fix_suggestions, greeting
from instructir_desktop.editing.workspace import Workspace
from instructir_desktop.instructions.interpret import Suggestion
from instructir_desktop.instructions.questions import PhotoQuestion, read_photo_question
from instructir_desktop.io.metadata import CameraInfo

LANE = "analysis"
LOOKING = "Looking at the photo…"
FAILED = "I couldn't analyse this photo, so I can't say what it needs; tell me what to fix instead."
NOTHING_TO_FIX = "I see nothing that needs fixing, so I left it as it is. Tell me what you'd like changed."
FIX_PLAN_TITLE = "Fix all"


@dataclass(frozen=True)
class Greeting:
    """What the chat says about a photo once it has looked at it, with chips to press."""

    text: str
    suggestions: tuple[Suggestion, ...]
    analysis: Analysis


@dataclass(frozen=True)
class PhotoAnalysed(SessionEvent):
    """The open photo has been analysed: the chat shows the greeting (at the top of its conversation)."""

    greeting: Greeting


def visible_pixels(document: Document) -> np.ndarray:
    """What the photo shows: its one opaque layer's own array (a 50 MP photo is not copied), or the
    layers flattened."""
    shown = [layer for layer in document.layers if layer.visible and layer.opacity > 0]
    if len(shown) == 1 and shown[0].opaque and shown[0].blend_mode == "normal":
        return shown[0].pixels
    return document.flatten().rgb


class PhotoInsight:
    def __init__(
        self, workspace: Workspace, background: Background, assistant: Assistant, dispatcher: Dispatcher
    ) -> None:
        self.workspace = workspace
        self.background = background
        self.assistant = assistant
        self._dispatcher = dispatcher
        self.analysis: Analysis | None = None
        self.failed = False
        self.camera: CameraInfo | None = None
        self._opened_count = 0  # which photo an analysis belongs to
        self._waiting: list[tuple[Run, PhotoQuestion]] = []  # questions asked before the analysis ended
        dispatcher.subscribe(DocumentOpened, lambda _event: self.photo_opened())
        assistant.photo_questions = self.take_message

    @property
    def ready(self) -> bool:
        return self.analysis is not None or self.failed

    def photo_opened(self) -> None:
        """Start analysing the photo just opened; what was pending for the previous one is dropped."""
        self._opened_count += 1
        opened = self._opened_count
        self.analysis, self.failed = None, False
        waiting, self._waiting = self._waiting, []
        for run, _question in waiting:  # asked about the previous photo
            if not run.ended:
                self.assistant.end_run(run, RunState.CANCELLED, replies.CANCELLED)
        document = self.workspace.document
        metadata = self.workspace.metadata
        self.camera = metadata.camera if metadata is not None else None
        if document is None:
            return
        snapshot, camera = document.shared_copy(), self.camera

        def work() -> Analysis | None:
            if opened != self._opened_count:
                return None  # another photo opened while this one waited its turn: skip it
            return analyse(visible_pixels(snapshot), camera)

        self.background.submit(LANE, work, lambda outcome: self._done(opened, outcome))

    def _done(self, opened: int, outcome: Outcome[Analysis | None]) -> None:
        if opened != self._opened_count:
            return  # another photo opened meanwhile: this one's analysis says nothing about it
        if outcome.error is not None or outcome.value is None:
            if outcome.error is not None:
                record_failure("the photo analysis failed", outcome.error)
            self.failed = True
        else:
            self.analysis = outcome.value
            chips = fix_suggestions(self.analysis.suggestions())
            self._dispatcher.emit(PhotoAnalysed(Greeting(greeting(self.analysis), chips, self.analysis)))
        waiting, self._waiting = self._waiting, []
        for run, question in waiting:
            self._answer(run, question, self.analysis)

    # ------------------------------------------------------------------ intents

    def take_greeting_suggestion(self, greeting: Greeting, index: int) -> Run | None:
        """The person pressed a chip of the greeting: run its steps as a new message."""
        if greeting.analysis is not self.analysis or not 0 <= index < len(greeting.suggestions):
            return None  # the greeting of a photo no longer open
        suggestion = greeting.suggestions[index]
        return self.assistant.run_plan(suggestion.steps, suggestion.label)

    def take_message(self, run: Run, text: str) -> bool:
        """Answer ``text`` if it asks about the photo or says "fix it" (True: it was taken)."""
        question = read_photo_question(text)
        if question is None:
            return False
        run.reply.text = LOOKING
        run.reply.progress = ProgressView(None, LOOKING)
        self.assistant.changed(run)
        if self.ready:
            self._answer(run, question, self.analysis)
        else:
            self._waiting.append((run, question))
        return True

    def _answer(self, run: Run, question: PhotoQuestion, analysis: Analysis | None) -> None:
        if run.ended:
            return
        if run.cancel_requested:
            self.assistant.end_run(run, RunState.CANCELLED, replies.CANCELLED)
            return
        if analysis is None:
            self.assistant.answer(run, FAILED)
            return
        if question is PhotoQuestion.FIX:
            steps = fix_steps(analysis.suggestions())
            if not steps:
                self.assistant.answer(run, NOTHING_TO_FIX)
                return
            self.assistant.run_plan(steps, FIX_PLAN_TITLE, run=run)
            return
        text, offered = answer(question, analysis, self.camera)
        self.assistant.answer(run, text, fix_suggestions(offered))
