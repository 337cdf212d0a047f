"""What happens when the person sends a message: read it, run it through the plugin host, apply
the result.

Snapshot, compute, apply (DESIGN.md §3.2). A run's input is taken from the document as it is when
the run's turn comes; the engine works on that frozen snapshot; the result is applied on the
loop's thread as one history step, or dropped when the person cancelled it or the document changed
meanwhile (its revision moved), so the photo is never changed behind their back.

Runs take their turn one at a time (``RunQueue``): the next snapshot is taken only after the
previous result has been applied, so "denoise" then "brighten" chain as the person expects.

Every run reaches the network the same way: one ``PluginHost.execute`` call on the engine's worker
(``plugins.jobs.action_request``). A plain message goes to the action that takes the chat's
messages (the built-in restore action); when that action takes a plan, the message is read first
and its plan shown as chips the person can change before it runs. A big photo gets a preview of
the visible area first (``PreviewShown``), never in the document or the history.

Follow-ups ("undo that", "a bit less", "only the selection") and a step's strength slider are
answered by ``FollowUps``, in turn with the queue, and never reach the text model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from instructir_desktop.core.document import Document
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.editing import replies
from instructir_desktop.editing.applying import ReadyResult, make_ready
from instructir_desktop.editing.conversation import ProgressView, Reply, Run, RunState
from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.editing.engine_client import EngineClient
from instructir_desktop.editing.events import (
    BusyChanged,
    ConversationStarted,
    DocumentChanged,
    PreviewCleared,
    PreviewShown,
    RunAdded,
    RunChanged,
    RunEnded,
)
from instructir_desktop.editing.followups import FollowUps
from instructir_desktop.editing.models import ModelChoices, rerun_label
from instructir_desktop.editing.transcript import TranscriptEntry, transcript_of
from instructir_desktop.editing.workspace import Workspace
from instructir_desktop.inference.requests import (
    Cancelled,
    Failed,
    Finished,
    InterpretRequest,
    Notice,
    Preview,
    Progress,
)
from instructir_desktop.instructions.followups import parse_followup
from instructir_desktop.instructions.intent import DEFAULT_CONFIDENCE_THRESHOLD, plan_reply
from instructir_desktop.instructions.interpret import (
    Interpretation,
    PlanStep,
    Suggestion,
    compose_reply,
    step_for_task,
)
from instructir_desktop.plugins.api import ActionInfo, ParameterValue, PluginError
from instructir_desktop.plugins.host import PluginHost
from instructir_desktop.plugins.jobs import action_request
from instructir_desktop.plugins.outcome import ActionInput

# Photos smaller than this restore quickly enough whole: no preview first.
PREVIEW_MIN_PIXELS = 2_000_000

Viewport = Callable[[], Bounds | None]
EndT = TypeVar("EndT")


class RunQueue:
    """The runs waiting for their turn, and the one running now."""

    def __init__(self) -> None:
        self.waiting: list[Run] = []
        self.active: Run | None = None

    def add(self, run: Run) -> None:
        self.waiting.append(run)

    def remove(self, run: Run) -> bool:
        if run in self.waiting:
            self.waiting.remove(run)
            return True
        return False

    def next(self) -> Run | None:
        """The next run to start, when none is active (None: nothing to start now)."""
        if self.active is not None or not self.waiting:
            return None
        return self.waiting.pop(0)


class Assistant:
    # Restorations of photos with at least this many pixels show a preview first (needs a viewport).
    preview_min_pixels = PREVIEW_MIN_PIXELS

    def __init__(
        self,
        workspace: Workspace,
        client: EngineClient,
        plugins: PluginHost | None,
        dispatcher: Dispatcher,
    ) -> None:
        self.workspace = workspace
        self.client = client
        self.plugins = plugins
        self._dispatcher = dispatcher
        self.runs: list[Run] = []
        self.queue = RunQueue()
        # The part of the photo on screen (None: none of it, or something else is shown); set by
        # whoever draws the photo. Without one, no previews are asked for.
        self.viewport: Viewport | None = None
        self.followups = FollowUps(self)
        # The model store as the Models window and the chips' "Run this step on" menus see it.
        self.models = ModelChoices()
        # A planned step the text model is less sure of than this is offered, not run (0 runs all).
        self.confidence_threshold = DEFAULT_CONFIDENCE_THRESHOLD
        # What was said about the open photo before it was opened (a project's saved conversation).
        self.earlier: tuple[TranscriptEntry, ...] = ()
        self._told_busy = False
        # Answers questions about the photo ("is it sharp?", "fix it") before the text model sees
        # them; True: it took the message (``editing.insight``).
        self.photo_questions: Callable[[Run, str], bool] | None = None
        dispatcher.subscribe(Progress, self._on_progress)
        dispatcher.subscribe(Preview, self._on_preview)
        dispatcher.subscribe(Notice, self._on_notice)
        dispatcher.subscribe(DocumentChanged, lambda _event: self._document_changed())

    @property
    def busy(self) -> bool:
        return any(not run.ended for run in self.runs)

    @property
    def active(self) -> Run | None:
        return self.queue.active

    @property
    def conversation(self) -> list[Run]:
        """The runs about the open photo (those about earlier photos are archived)."""
        return [run for run in self.runs if not run.archived]

    def transcript(self) -> tuple[TranscriptEntry, ...]:
        """The open photo's whole conversation as words, to keep with its project."""
        return transcript_of(self.earlier, self.conversation)

    def changed(self, run: Run) -> None:
        self._dispatcher.emit(RunChanged(run))

    # ------------------------------------------------------------------ intents

    def send(self, text: str) -> Run:
        """The person sent ``text``: a /command, a follow-up, or a message for the chat's action."""
        run = self._new_run(text)
        if not run.ended:
            if text.startswith("/"):
                self._command(run, text)
            elif (followup := parse_followup(text)) is not None:
                run.followup = followup
                self._enqueue(run)
            else:
                self._message(run, text)
        self._update_busy()
        return run

    def run_action(
        self, action: ActionInfo, params: Mapping[str, ParameterValue] | None = None, label: str = ""
    ) -> Run:
        """Run a plugin action (chosen from a menu) exactly like a slash command: in turn, on the
        engine's worker with progress and cancel in the chat, on the selection if there is one,
        applied as one undoable step labelled ``label`` (default: the action and its values)."""
        try:
            values = action.resolve_params(params or {})
        except PluginError as error:
            run = self._new_run(label or action.title)
            if not run.ended:
                run.reply.text = str(error)
                self.end_run(run, RunState.FAILED, "", error=str(error))
            return run
        run = self._new_run(label or replies.describe_action(action, values))
        if not run.ended:
            if self.plugins is None:
                self.end_run(run, RunState.FAILED, "Actions need plugins, and none are loaded.", error="no plugin host")
            else:
                self._queue_action(run, action, values)
        self._update_busy()
        return run

    def cancel(self, run: Run) -> None:
        """Cooperative: the engine stops at its next check; the result, if it still comes, is dropped."""
        if run.ended:
            return
        run.cancel_requested = True
        run.reply.cancelling = True
        self._clear_preview(run)  # at once: the photo as it is is what stays
        if self.queue.remove(run):
            self.end_run(run, RunState.CANCELLED, replies.CANCELLED)
            return
        self.changed(run)
        job = run.job if run.job is not None else run.interpret_job
        if job is not None:
            self.client.cancel(job)

    def cancel_all(self) -> None:
        for run in list(self.runs):
            self.cancel(run)

    def cancel_current(self) -> Run | None:
        """Cancel what the person is waiting for (Escape): the running step, else the newest run not
        ended yet. None: nothing was running."""
        run = self.queue.active
        if run is None or run.ended or run.cancel_requested:
            run = next((r for r in reversed(self.runs) if not r.ended and not r.cancel_requested), None)
        if run is None:
            return None
        self.cancel(run)
        return run

    def start_conversation(self, earlier: tuple[TranscriptEntry, ...] = ()) -> None:
        """Another photo is open: stop the work on the previous one and archive its conversation (it
        stays readable, nothing in it can be pressed), then start this photo's with ``earlier``."""
        self.cancel_all()
        for run in self.runs:
            if not run.archived:
                run.archived = True
                reply = run.reply
                reply.archived = True
                reply.plan_editable = False
                reply.can_run_again = False
                reply.strength_blocked = "This was about another photo."
                self.changed(run)
        self.earlier = earlier
        self._dispatcher.emit(ConversationStarted(earlier))

    def change_step(self, run: Run, position: int, task: str) -> None:
        """A chip changed to ``task`` ("" removes the step): a plan still waiting runs as edited; an
        ended one waits for Run again. Refused while the plan runs (its snapshot is taken)."""
        steps = list(run.reply.plan)
        if (
            run.archived
            or not run.reply.plan_editable
            or not 0 <= position < len(steps)
            or (not task and len(steps) == 1)
        ):
            return
        if task:
            steps[position] = steps[position].with_task(task)
        else:
            del steps[position]
        run.reply.plan = tuple(steps)
        run.reply.plan_edited = True
        if run.state is RunState.WAITING and run.interpretation is not None:
            # What it will run now, in words that match the chips.
            run.reply.text = plan_reply(run.reply.plan)
            run.interpretation = replace(run.interpretation, steps=run.reply.plan, reply=run.reply.text)
        self.changed(run)

    def run_again(self, run: Run) -> Run | None:
        """Run ``run``'s plan, as its chips show it now, on the photo as it is: a new message and step."""
        steps = run.reply.plan
        if run.archived or not run.ended or run.interpretation is None or not steps:
            return None
        edited = steps != run.interpretation.steps
        label = replies.plan_line(steps) if edited else run.step_label
        again = self._new_run(f"Run again: {label}")
        if not again.ended:
            again.label = label
            again.action = run.action
            again.strength = run.step.strength if run.step is not None else run.strength
            self._planned(again, Interpretation(label, steps, (), compose_reply(steps, ())))
        self._update_busy()
        return again

    def rerun_on_model(self, run: Run, position: int, model_id: str) -> Run | None:
        """Run ``run``'s plan again with step ``position`` on ``model_id`` (the others on the models
        they ran on), as a new message and step. When ``run``'s step is still the latest, the new
        one takes its place from the same photo and the old one stays as an alternative in the
        history, so the two results can be compared. None: it can no longer be run again."""
        ran = run.reply.ran_plan or run.reply.plan
        if run.archived or not run.ended or run.action is None or not 0 <= position < len(ran):
            return None
        steps = tuple(step.on_model(model_id) if index == position else step for index, step in enumerate(ran))
        label = rerun_label(ran[position], self.models.label(model_id))
        again = self._new_run(f"Run again: {label}")
        if not again.ended:
            again.label = label
            again.action = run.action
            again.strength = run.step.strength if run.step is not None else run.strength
            if run.step is not None and run.step is self.workspace.latest_step:
                again.replaces, again.replaces_layer = run.step, run.layer_id
            self._planned(again, Interpretation(label, steps, (), compose_reply(steps, ())))
        self._update_busy()
        return again

    def take_suggestion(self, run: Run, index: int) -> Run | None:
        """The person pressed ``run``'s suggestion ``index``: run that task (or the suggestion's own
        steps, "Fix all") now, as a new message (the person chose it, so it runs whatever the text
        model thought). None: it can no longer be taken."""
        suggestions = run.reply.suggestions
        if run.archived or not 0 <= index < len(suggestions):
            return None
        suggestion = suggestions[index]
        if suggestion.steps:
            return self.run_plan(suggestion.steps, suggestion.label or replies.plan_line(suggestion.steps), run.action)
        step = replace(step_for_task(suggestion.task), instruction=suggestion.instruction or run.text)
        return self.run_plan((step,), replies.suggestion_title(suggestion), run.action)

    def run_plan(
        self, steps: tuple[PlanStep, ...], title: str, action: ActionInfo | None = None, run: Run | None = None
    ) -> Run:
        """Run ``steps`` as the person's choice, in ``run`` or in a new message titled ``title``,
        through ``action`` or the action that takes the chat's plans."""
        taken = run if run is not None else self._new_run(title)
        if not taken.ended:
            if action is None and self.plugins is not None:
                try:
                    action = self.plugins.message_action()
                except PluginError:
                    action = None
            if action is None or action.parameter("plan") is None:
                taken.reply.text = replies.RESTORE_TURNED_OFF
                self.end_run(taken, RunState.FAILED, "", error="no plugin takes a plan")
            else:
                taken.action = action
                taken.label = title
                self._planned(taken, Interpretation(title, steps, (), compose_reply(steps, ())))
        self._update_busy()
        return taken

    def answer(self, run: Run, text: str, suggestions: tuple[Suggestion, ...] = ()) -> None:
        """Reply to ``run`` in words (a question about the photo), offering ``suggestions`` as chips."""
        if run.ended:
            return
        run.reply.text = text
        run.reply.progress = None
        run.reply.suggestions = suggestions
        self.end_run(run, RunState.NOTHING, "")
        self._update_busy()

    def set_run_strength(self, run: Run, strength: float) -> bool:
        if run.archived:
            return False
        return self.followups.set_run_strength(run, strength)

    def strength_blocked(self, run: Run) -> str:
        return self.followups.strength_blocked(run)

    # ------------------------------------------------------------------ the kinds of message

    def _new_run(self, text: str) -> Run:
        """The person's message and an empty reply; ended at once when no photo is open."""
        run = Run(text, Reply())
        self.runs.append(run)
        self._dispatcher.emit(RunAdded(run))
        if self.workspace.document is None:
            run.reply.text = replies.NO_PHOTO
            self.end_run(run, RunState.FAILED, "", error="no photo is open")
        return run

    def _update_busy(self) -> None:
        busy = self.busy
        if busy != self._told_busy:
            self._told_busy = busy
            self._dispatcher.emit(BusyChanged(busy))

    def _command(self, run: Run, text: str) -> None:
        """A slash command: parsed by the plugin host now, run in turn."""
        if self.plugins is None:
            self.end_run(run, RunState.FAILED, "Commands need plugins, and none are loaded.", error="no plugin host")
            return
        try:
            parsed = self.plugins.parse_command(text)
        except PluginError as error:
            run.reply.text = str(error)
            self.end_run(run, RunState.FAILED, "", error=str(error))
            return
        assert parsed is not None
        action, values = parsed
        if self._is_chat_action(action) and self.photo_questions is not None:
            # "/restore what ISO is it?" asks the same question as the plain message would: the
            # answer comes from the open photo, as in the chat, not a reply for the command line.
            words = values.get(text_parameter.name) if (text_parameter := action.parameter("text")) else None
            if isinstance(words, str) and words.strip() and self.photo_questions(run, words):
                return
        self._queue_action(run, action, values)

    def _is_chat_action(self, action: ActionInfo) -> bool:
        try:
            chat_action = self.plugins.message_action() if self.plugins is not None else None
        except PluginError:
            return False
        return chat_action is not None and chat_action.id == action.id

    def _message(self, run: Run, text: str) -> None:
        """A plain message goes to the action that takes the chat's messages, in its text parameter.
        An action that takes a plan gets it read first (chips); with no such action enabled, the
        reply says how to turn restoration back on."""
        if self.photo_questions is not None and self.photo_questions(run, text):
            return
        problem = ""
        action = None
        if self.plugins is not None:
            try:
                action = self.plugins.message_action()
            except PluginError as error:
                problem = str(error)
        if action is None:
            run.reply.text = replies.RESTORE_TURNED_OFF
            self.end_run(run, RunState.FAILED, "", error=problem or "no plugin takes chat messages")
            return
        if action.parameter("plan") is not None:
            run.action = action
            self._interpret(run, text)
            return
        text_parameter = action.parameter("text")
        assert text_parameter is not None  # the manifest's chat_messages requires one
        try:
            params = action.resolve_params({text_parameter.name: text})
        except PluginError as error:
            run.reply.text = str(error)
            self.end_run(run, RunState.FAILED, "", error=str(error))
            return
        self._queue_action(run, action, params)

    def _interpret(self, run: Run, text: str) -> None:
        document = self.workspace.document
        assert document is not None
        run.reply.text = replies.READING
        run.reply.progress = ProgressView(None, replies.READING)
        run.interpret_job = self.client.interpret(InterpretRequest(text, document.size, self.confidence_threshold))
        when_done(run.interpret_job.end, lambda end: self._interpreted(run, end))
        self.changed(run)

    def _interpreted(self, run: Run, end: Finished[Interpretation] | Cancelled | Failed) -> None:
        if run.ended:
            return
        if isinstance(end, Finished) and not run.cancel_requested:
            self._planned(run, end.result)
        else:
            self._job_failed_or_cancelled(run, end)

    def _planned(self, run: Run, interpretation: Interpretation) -> None:
        """Run the steps the interpreter decided on; its suggestions are only offered (``intent.gate``,
        applied at this assistant's threshold when the message was read)."""
        run.interpretation = interpretation
        run.reply.text = interpretation.reply
        run.reply.plan = interpretation.steps
        run.reply.suggestions = interpretation.suggestions
        run.reply.plan_editable = True  # until its snapshot is taken
        if not interpretation.steps:
            # An answer in words: no step, no layer, nothing changes.
            self.end_run(run, RunState.NOTHING, "")
            return
        self._enqueue(run)

    def _queue_action(self, run: Run, action: ActionInfo, params: dict[str, ParameterValue]) -> None:
        run.action, run.params = action, params
        run.reply.text = replies.describe_action(action, params)
        self._enqueue(run)

    def _enqueue(self, run: Run) -> None:
        """In turn after the runs before it: their results land first, then this one takes its snapshot."""
        run.state = RunState.WAITING
        run.reply.progress = ProgressView(None, replies.WAITING if self.queue.active else replies.STARTING)
        self.queue.add(run)
        self.changed(run)
        self._start_next()

    def _start_next(self) -> None:
        run = self.queue.next()
        if run is None:
            return
        document = self.workspace.document
        if document is None:
            self.end_run(run, RunState.FAILED, "There is no photo to restore.", error="no photo")
        elif run.followup is not None:
            self.followups.answer(run, document)
        else:
            self.start(run, document)
        self._start_next()

    # ------------------------------------------------------------------ running

    def start(self, run: Run, document: Document) -> None:
        """Take the run's snapshot of the document now and hand it to the engine."""
        action = run.action
        if action is None or self.plugins is None:
            self.end_run(run, RunState.FAILED, "There is nothing to run this with.", error="no action")
            return
        layer = document.active_layer
        # Shared with the worker, not copied (a 24 MP copy would freeze the window): the next
        # edit of this layer writes into a copy instead.
        pixels, alpha = layer.freeze()
        layer_id = layer.id
        plan = run.interpretation.steps if run.interpretation is not None else ()
        upscaling = any(step.task == "upscale" for step in plan)
        selection = document.selection
        mask = None if selection is None or selection.is_empty or upscaling else selection.mask
        if run.selection_only and mask is None:
            self.end_run(run, RunState.NOTHING, replies.NO_SELECTION)
            return
        base = self.followups.replaced_base(run, document)
        if base is not None:
            pixels, alpha, layer_id = base.pixels, base.alpha, base.id
        params = dict(run.params)
        if run.interpretation is not None:
            text_parameter = action.parameter("text")
            plan_parameter = action.parameter("plan")
            assert plan_parameter is not None
            if text_parameter is not None:
                params[text_parameter.name] = run.text
            params[plan_parameter.name] = plan
            if any(parameter.name == "strength" for parameter in action.parameters):
                params["strength"] = run.strength
        in_place = not self.workspace.restore_into_new_layer
        try:
            given = ActionInput(pixels, mask, alpha, self._preview_bounds(document, plan))
            request = action_request(
                self.plugins,
                action.id,
                given,
                params,
                then=lambda outcome: make_ready(outcome, given.image if in_place else None),
                label=run.step_label,
                revision=document.revision,
            )
        except PluginError as error:  # e.g. its plugin was disabled while the run waited
            self.end_run(run, RunState.FAILED, f"Something went wrong: {error}", error=str(error))
            return
        run.document = document
        run.layer_id = layer_id
        run.revision = document.revision
        run.state = RunState.RUNNING
        run.started = time.monotonic()
        run.reply.plan_editable = False  # the snapshot is taken: this plan is what runs
        run.reply.progress = ProgressView(None, replies.STARTING)
        self.queue.active = run
        run.job = job = self.client.submit(request)
        when_done(job.end, lambda end: self._ran(run, end))
        self.changed(run)
        self.followups.refresh_strength()

    def _preview_bounds(self, document: Document, plan: Sequence[PlanStep]) -> Bounds | None:
        """The visible part of the photo to preview first; None: no preview (small photo, upscale,
        a command, nothing in view)."""
        if self.viewport is None or not plan or document.width * document.height < self.preview_min_pixels:
            return None
        if any(step.task == "upscale" for step in plan):
            return None  # the preview shows a restoration at the photo's size, not an enlargement
        return self.viewport()

    def _ran(self, run: Run, end: Finished[ReadyResult] | Cancelled | Failed) -> None:
        if run.ended:
            return
        if not isinstance(end, Finished) or run.cancel_requested:
            # A cancel that came too late still drops the result.
            self._job_failed_or_cancelled(run, end)
            return
        if not self.still_current(run):
            # Another photo opened, an undo, any edit: the result no longer fits what is on screen.
            self.end_run(run, RunState.STALE, replies.STALE)
            return
        ready = end.result
        replaced = self.followups.take_replaced(run)
        step = self.workspace.apply(ready, run.layer_id, label=run.step_label)
        if replaced and step is None:
            self.workspace.redo()  # nothing took its place after all
        run.step, run.history = step, self.workspace.history
        if step is not None and step.can_reblend:
            run.reply.strength = step.strength
        outcome = ready.outcome
        if outcome.plan and len(outcome.plan) == len(run.reply.plan):
            run.reply.ran_plan = tuple(outcome.plan)
        self.end_run(run, RunState.DONE, replies.done(outcome.seconds, outcome.device, outcome.notices))

    def _job_failed_or_cancelled(self, run: Run, end: Finished[object] | Cancelled | Failed) -> None:
        if isinstance(end, Failed) and not run.cancel_requested:
            self.end_run(run, RunState.FAILED, f"Something went wrong: {end.message}", error=end.message)
        else:
            self.end_run(run, RunState.CANCELLED, replies.CANCELLED)

    def still_current(self, run: Run) -> bool:
        """The photo is still the one, at the revision, that ``run`` took its snapshot from."""
        document = self.workspace.document
        return document is not None and document is run.document and document.revision == run.revision

    def end_run(self, run: Run, state: RunState, status: str, *, error: str = "") -> None:
        self._clear_preview(run)  # a result in its place, or the photo as it was
        run.state = state
        run.error = error
        run.reply.progress = None
        run.reply.cancelling = False
        run.reply.status = status
        if self.queue.active is run:
            self.queue.active = None
        if run.interpretation is not None and run.reply.plan and not run.archived:
            run.reply.plan_editable = True
            run.reply.can_run_again = True
        self.changed(run)
        self._dispatcher.emit(RunEnded(run))
        self.followups.refresh_strength()
        self._start_next()
        self._update_busy()

    # ------------------------------------------------------------------ engine events

    def _run_of(self, request_id: int) -> Run | None:
        for run in reversed(self.runs):
            for job in (run.job, run.interpret_job):
                if job is not None and job.request_id == request_id:
                    return run
        return None

    def _on_progress(self, event: Progress) -> None:
        run = self._run_of(event.request_id)
        if run is None or run.ended or run.cancel_requested:
            return
        if run.job is None:  # reading the message: loading the model has no fraction to show
            run.reply.progress = ProgressView(None, event.stage or replies.READING)
        else:
            run.reply.progress = ProgressView(
                event.fraction, replies.progress_line(event, time.monotonic() - run.started)
            )
        self.changed(run)

    def _on_preview(self, event: Preview) -> None:
        run = self._run_of(event.request_id)
        if run is None or run.ended or run.cancel_requested or run.job is None or not self.still_current(run):
            return
        run.preview_shown = True
        run.reply.status = replies.PREVIEW_STATUS
        self._dispatcher.emit(PreviewShown(event.pixels, event.bounds))
        self.changed(run)

    def _on_notice(self, event: Notice) -> None:
        run = self._run_of(event.request_id)
        if run is not None and not run.ended:
            run.reply.status = event.message
            self.changed(run)

    def _clear_preview(self, run: Run) -> None:
        if run.preview_shown:
            run.preview_shown = False
            self._dispatcher.emit(PreviewCleared())
            if not run.ended and run.reply.status == replies.PREVIEW_STATUS:
                run.reply.status = ""

    def _document_changed(self) -> None:
        run = self.queue.active
        # The photo changed under a preview (an undo, another photo): it no longer shows what will come.
        if run is not None and run.preview_shown and not self.still_current(run):
            self._clear_preview(run)
            self.changed(run)
        self.followups.refresh_strength()


def when_done(future: asyncio.Future[EndT], then: Callable[[EndT], None]) -> None:
    """Call ``then`` with ``future``'s result on the loop's thread once it has one."""
    future.add_done_callback(lambda done: then(done.result()))
