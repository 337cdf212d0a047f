"""What happens when the person sends a message: interpret it, run the plan, apply the result.

Snapshot, compute, apply (DESIGN.md §3.2). The request is built on the GUI thread from the
document as it is when the plan is ready; the engine works on its own frozen copy; the result is
applied here, on the GUI thread, as one history step — or dropped when the person cancelled it or
the document changed meanwhile (its revision moved), so the photo is never changed behind their back.

Restorations run one at a time: the next message's snapshot is taken only after the previous
result has been applied, so "denoise" then "brighten" chain as the person expects.

A restoration of a big photo asks the engine for a quick preview of the area visible on the canvas
first (the same job: a Preview event, then the full result). The preview is shown over the canvas
with a "Preview" badge — never in the document or the history — and removed when the run ends,
whichever way, or when the photo changes under it.

After a step is applied its message offers a strength slider (a re-blend of the latest step, no
network), chips that can be changed, and Run again. Follow-ups ("undo that", "a bit less", "only
the selection": ``instructions.followups``) are answered here, in turn with the queue, and never
reach the text model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from instructir_desktop.core.document import Document
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.history import History, HistoryError, Step
from instructir_desktop.inference.requests import (
    Cancelled,
    Failed,
    Finished,
    InterpretRequest,
    Preview,
    Progress,
    RestoreRequest,
    RestoreResult,
)
from instructir_desktop.instructions.followups import (
    REDO,
    SELECTION,
    STRONGER,
    UNDO,
    WEAKER,
    FollowUp,
    adjusted_strength,
    parse_followup,
)
from instructir_desktop.instructions.interpret import Interpretation, PlanStep, compose_reply, describe_step
from instructir_desktop.plugins.api import ActionInfo, PluginError
from instructir_desktop.plugins.host import BUILTIN_RESTORE_ACTION, PluginHost
from instructir_desktop.plugins.jobs import plugin_request
from instructir_desktop.ui.canvas import Canvas
from instructir_desktop.ui.chat_panel import ChatPanel, MessageWidget, format_eta
from instructir_desktop.ui.engine_bridge import EngineBridge
from instructir_desktop.ui.session import Session

# How a run ended (``Run.state`` once it is over).
DONE = "done"
CANCELLED = "cancelled"
FAILED = "failed"
STALE = "stale"
NOTHING = "nothing"  # the message asked for nothing the network can do
ENDED = frozenset({DONE, CANCELLED, FAILED, STALE, NOTHING})

NO_SELECTION_MESSAGE = (
    "There is no selection yet. Draw one with the rectangle or brush tool (Select menu or toolbar), "
    'then say "only the selection" again.'
)
# Photos smaller than this restore quickly enough whole: no preview first.
PREVIEW_MIN_PIXELS = 2_000_000
PREVIEW_STATUS = "Preview of the visible area · full resolution on its way…"
STALE_MESSAGE = (
    "The photo changed while this was running, so the result was not applied. Send the message again to redo it."
)


def describe_action(action: ActionInfo, params: Mapping[str, Any]) -> str:
    """``Unsharp mask (amount 0.8, radius 1.5)``: the chat's text and the history's label for an action."""
    settings = ", ".join(f"{name} {value}" for name, value in params.items())
    return action.title + (f" ({settings})" if settings else "")


@dataclass(eq=False)
class Run:
    """One message on its way through interpretation and restoration."""

    text: str
    reply: MessageWidget
    state: str = "interpreting"  # interpreting → waiting → restoring → one of ENDED
    interpret_id: int | None = None
    restore_id: int | None = None
    interpretation: Interpretation | None = None
    document: Document | None = None  # the document the snapshot was taken from
    layer_id: str = ""
    revision: int = -1
    strength: float = 1.0
    started: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False
    error: str = ""
    # A slash command ("/sharpen 0.5") runs a plugin action instead of the network.
    action: ActionInfo | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # What was applied: the history step (its strength can be changed while it is the latest).
    step: Step | None = None
    history: History | None = None
    # A follow-up ("undo that", "a bit less", "only the selection") instead of a request.
    followup: FollowUp | None = None
    label: str = ""  # the history's label, when not the message itself
    selection_only: bool = False  # must run through the selection ("only the selection")
    replaces: Step | None = None  # the step this run's result replaces, when still the latest
    replaces_layer: str = ""
    preview_shown: bool = False  # its preview is on the canvas now

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def step_label(self) -> str:
        return self.label or self.text


class Conversation(QObject):
    run_ended = Signal(object)  # Run
    busy_changed = Signal(bool)

    # Restorations of photos with at least this many pixels show a preview first (needs a canvas).
    preview_min_pixels = PREVIEW_MIN_PIXELS

    def __init__(
        self,
        session: Session,
        bridge: EngineBridge,
        chat: ChatPanel,
        parent: QObject | None = None,
        plugins: PluginHost | None = None,
        canvas: Canvas | None = None,
    ) -> None:
        super().__init__(parent)
        self.plugins = plugins
        self.session = session
        self.bridge = bridge
        self.chat = chat
        self.canvas = canvas  # where previews show; without one, none are asked for
        self.runs: list[Run] = []
        self._by_request: dict[int, Run] = {}
        self._waiting: list[Run] = []
        self._active: Run | None = None
        chat.message_sent.connect(self.send)
        bridge.progress.connect(self._on_progress)
        bridge.preview.connect(self._on_preview)
        bridge.finished.connect(self._on_finished)
        bridge.cancelled.connect(self._on_cancelled)
        bridge.failed.connect(self._on_failed)
        bridge.notice.connect(self._on_notice)
        session.changed.connect(self.refresh_strength_controls)
        session.changed.connect(self._drop_stale_preview)

    @property
    def busy(self) -> bool:
        return any(not run.ended for run in self.runs)

    # ------------------------------------------------------------------ sending

    def send(self, text: str) -> Run:
        was_busy = self.busy
        run = self._new_run(text)
        document = self.session.document
        if run.ended or document is None:
            return run
        reply = run.reply
        if text.startswith("/"):
            self._command(run, text)
            if not run.ended and not was_busy:
                self.busy_changed.emit(True)
            return run
        followup = parse_followup(text)
        if followup is not None:
            run.followup = followup
            self._enqueue(run)
            if not run.ended and not was_busy:
                self.busy_changed.emit(True)
            return run
        if self.plugins is not None and not self._message_to_restore(run, text):
            if not run.ended and not was_busy:
                self.busy_changed.emit(True)
            return run
        reply.set_text("Reading your request…")
        reply.start_progress("Reading your request…")
        run.interpret_id = self.bridge.submit(InterpretRequest(text, document.size))
        self._by_request[run.interpret_id] = run
        if not was_busy:
            self.busy_changed.emit(True)
        return run

    def _message_to_restore(self, run: Run, text: str) -> bool:
        """Dispatch a plain message through the plugin host: True when it goes to the built-in
        restore action, which runs on the engine's own restore pipeline (the action's
        implementation with planning, plan chips, previews and per-step progress). Another
        plugin's message action is queued here like a command; with none enabled, the reply says
        how to turn restoration back on."""
        assert self.plugins is not None
        try:
            action = self.plugins.message_action()
        except PluginError as error:
            action, problem = None, str(error)
        else:
            problem = ""
        if action is not None and action.id == BUILTIN_RESTORE_ACTION:
            return True
        if action is None:
            run.reply.set_text(
                "Restoring from a message is turned off: the InstructIR restore plugin is disabled. "
                "Turn it on in Plugins → Manage Plugins…, or use a /command."
            )
            self._end(run, FAILED, "", error=problem or "no plugin takes chat messages")
            return False
        text_parameter = next(p.name for p in action.parameters if p.kind == "text")
        try:
            params = action.resolve_params({text_parameter: text})
        except PluginError as error:
            run.reply.set_text(str(error))
            self._end(run, FAILED, "", error=str(error))
            return False
        self._queue_action(run, action, params)
        return False

    def _command(self, run: Run, text: str) -> None:
        """A slash command: parsed by the plugin host now, run in turn like a restoration."""
        if self.plugins is None:
            self._end(run, FAILED, "Commands need plugins, and none are loaded.", error="no plugin host")
            return
        try:
            parsed = self.plugins.parse_command(text)
        except PluginError as error:
            run.reply.set_text(str(error))
            self._end(run, FAILED, "", error=str(error))
            return
        assert parsed is not None
        self._queue_action(run, *parsed)

    def run_action(self, action: ActionInfo, params: Mapping[str, Any] | None = None, label: str = "") -> Run:
        """Run a plugin action (chosen from a menu) exactly like a slash command: queued in turn,
        on the engine's worker with progress and cancel in the chat, on the selection if there is
        one, applied as one undoable step labelled ``label`` (default: the action and its values)."""
        was_busy = self.busy
        try:
            values = action.resolve_params(params or {})
        except PluginError as error:
            run = self._new_run(label or action.title)
            if not run.ended:
                run.reply.set_text(str(error))
                self._end(run, FAILED, "", error=str(error))
            return run
        run = self._new_run(label or describe_action(action, values))
        if run.ended:
            return run
        if self.plugins is None:
            self._end(run, FAILED, "Actions need plugins, and none are loaded.", error="no plugin host")
            return run
        self._queue_action(run, action, values)
        if not run.ended and not was_busy:
            self.busy_changed.emit(True)
        return run

    def _new_run(self, text: str) -> Run:
        """The person's message and an empty reply in the chat; ended at once when no photo is open."""
        self.chat.add_message("user", text)
        reply = self.chat.add_message("assistant", "")
        run = Run(text, reply)
        self.runs.append(run)
        reply.cancel_requested.connect(lambda: self.cancel(run))
        reply.plan_edited.connect(lambda steps: self._plan_edited(run, steps))
        reply.run_again_requested.connect(lambda: self.run_again(run))
        reply.strength_changed.connect(lambda strength: self.set_run_strength(run, strength))
        if self.session.document is None:
            reply.set_text("Open a photo first (Ctrl+O, or drop one on the window), then tell me what to fix.")
            self._end(run, FAILED, "", error="no photo is open")
        return run

    def _queue_action(self, run: Run, action: ActionInfo, params: dict[str, Any]) -> None:
        run.action, run.params = action, params
        run.reply.set_text(describe_action(action, params))
        self._enqueue(run)

    def _enqueue(self, run: Run) -> None:
        """In turn after the runs before it: their results land first, then this one takes its snapshot."""
        run.state = "waiting"
        run.reply.start_progress("Waiting for the previous request…" if self._active else "Starting…")
        self._waiting.append(run)
        self._start_next()

    def cancel(self, run: Run) -> None:
        """Cooperative: the engine stops at its next check; the result, if it still comes, is dropped."""
        if run.ended:
            return
        run.cancel_requested = True
        self._clear_preview(run)  # at once: the photo as it is is what stays
        if run in self._waiting:
            self._waiting.remove(run)
            self._end(run, CANCELLED, "Cancelled. The photo is unchanged.")
            return
        request_id = run.restore_id if run.restore_id is not None else run.interpret_id
        if request_id is not None:
            self.bridge.cancel(request_id)

    def cancel_all(self) -> None:
        for run in list(self.runs):
            self.cancel(run)

    # ------------------------------------------------------------------ engine events (GUI thread)

    def _on_progress(self, event: Progress) -> None:
        run = self._by_request.get(event.request_id)
        if run is None or run.ended or run.cancel_requested:
            return
        if event.request_id == run.interpret_id:
            run.reply.set_progress(0.0, event.stage or "Reading your request…")
            run.reply.progress_bar.setRange(0, 0)  # loading the model has no fraction to show
            return
        eta = event.eta_seconds
        elapsed = time.monotonic() - run.started
        if eta is None and event.fraction > 0.05:
            eta = elapsed * (1.0 - event.fraction) / event.fraction
        parts = [event.stage or "Restoring", f"{round(event.fraction * 100)}%"]
        if event.tiles_total > 1:
            parts.append(f"tile {event.tiles_done}/{event.tiles_total}")
        if eta_text := format_eta(eta):
            parts.append(eta_text)
        run.reply.set_progress(event.fraction, " · ".join(parts))

    def _on_preview(self, event: Preview) -> None:
        run = self._by_request.get(event.request_id)
        if (
            run is None
            or run.ended
            or run.cancel_requested
            or event.request_id != run.restore_id
            or self.canvas is None
            or not self._still_current(run)
        ):
            return
        self.canvas.show_result_preview(event.pixels, event.bounds)
        run.preview_shown = True
        run.reply.set_status(PREVIEW_STATUS)

    def _still_current(self, run: Run) -> bool:
        """The photo is still the one, at the revision, that ``run`` took its snapshot from."""
        document = self.session.document
        return document is not None and document is run.document and document.revision == run.revision

    def _clear_preview(self, run: Run) -> None:
        if run.preview_shown:
            run.preview_shown = False
            if self.canvas is not None:
                self.canvas.clear_result_preview()
            if not run.ended and run.reply.status == PREVIEW_STATUS:
                run.reply.set_status("")

    def _drop_stale_preview(self) -> None:
        """The photo changed under a preview (an undo, another photo): it no longer shows what will come."""
        run = self._active
        if run is not None and run.preview_shown and not self._still_current(run):
            self._clear_preview(run)

    def _preview_bounds(self, document: Document, plan: Sequence[PlanStep]) -> Bounds | None:
        """The visible part of the photo to preview first; None: no preview (small photo, upscale)."""
        if self.canvas is None or document.width * document.height < self.preview_min_pixels:
            return None
        if any(step.task == "upscale" for step in plan):
            return None  # the preview shows a restoration at the photo's size, not an enlargement
        bounds = self.canvas.visible_image_bounds()
        if bounds is None or (self.canvas.image_size != (document.width, document.height)):
            return None  # nothing in view, or the canvas shows something else (comparing other sizes)
        return bounds

    def _on_finished(self, event: Finished) -> None:
        run = self._by_request.pop(event.request_id, None)
        if run is None or run.ended:
            return
        if run.cancel_requested:
            # The job ended before the cancel reached it: drop its result all the same.
            self._end(run, CANCELLED, "Cancelled. The photo is unchanged.")
            return
        if event.request_id == run.interpret_id:
            self._planned(run, event.result)
        else:
            self._restored(run, event.result)

    def _on_cancelled(self, event: Cancelled) -> None:
        run = self._by_request.pop(event.request_id, None)
        if run is not None and not run.ended:
            self._end(run, CANCELLED, "Cancelled. The photo is unchanged.")

    def _on_failed(self, event: Failed) -> None:
        run = self._by_request.pop(event.request_id, None)
        if run is not None and not run.ended:
            self._end(run, FAILED, f"Something went wrong: {event.message}", error=event.message)

    def _on_notice(self, event: object) -> None:
        run = self._by_request.get(getattr(event, "request_id", -1))
        if run is not None:
            run.reply.set_status(getattr(event, "message", ""))

    # ------------------------------------------------------------------ the steps of a run

    def _planned(self, run: Run, interpretation: Interpretation) -> None:
        run.interpretation = interpretation
        run.reply.set_text(interpretation.reply)
        run.reply.set_plan_editable(True)  # until its snapshot is taken
        run.reply.set_plan(interpretation.steps)
        if not interpretation.steps:
            self._end(run, NOTHING, "")
            return
        self._enqueue(run)

    def _start_next(self) -> None:
        if self._active is not None or not self._waiting:
            return
        run = self._waiting.pop(0)
        document = self.session.document
        if document is not None and run.action is not None and self.plugins is not None:
            self._start_action(run, document)
            return
        if document is not None and run.followup is not None:
            self._follow_up(run, document)
            return
        if document is None or run.interpretation is None:
            self._end(run, FAILED, "There is no photo to restore.", error="no photo")
            self._start_next()
            return
        self._start_restore(run, document)

    def _start_restore(self, run: Run, document: Document) -> None:
        assert run.interpretation is not None
        layer = document.active_layer
        # Shared with the worker, not copied (a 24 MP copy would freeze the window): the next
        # edit of this layer writes into a copy instead.
        layer_pixels, layer_alpha = layer.freeze()
        layer_id = layer.id
        plan = run.interpretation.steps
        upscaling = any(step.task == "upscale" for step in plan)
        selection = document.selection
        mask = None if selection is None or selection.is_empty or upscaling else selection.mask
        if run.selection_only and mask is None:
            self._end(run, NOTHING, NO_SELECTION_MESSAGE)
            return
        history = self.session.history
        if run.replaces is not None and history is not None and self._latest_step() is run.replaces:
            # The photo as it was before the step this run replaces; the step is undone when the result lands.
            try:
                base = history.state_at(history.index - 1).layer(run.replaces_layer)
            except (HistoryError, KeyError, ValueError):
                run.replaces = None
            else:
                if base.pixels.shape[:2] == document.size:
                    layer_pixels, layer_alpha, layer_id = base.pixels, base.alpha, base.id
                else:
                    run.replaces = None
        else:
            run.replaces = None
        preview_bounds = self._preview_bounds(document, plan)
        try:
            request = RestoreRequest(
                layer_pixels,
                plan,
                strength=run.strength,
                mask=mask,
                alpha=layer_alpha,
                preview=preview_bounds is not None,
                preview_bounds=preview_bounds,
                revision=document.revision,
                label=run.step_label,
                prepare_history=not self.session.restore_into_new_layer,
            )
        except ValueError as error:
            self._end(run, FAILED, f"I can't do that: {error}", error=str(error))
            self._start_next()
            return
        run.document = document
        run.layer_id = layer_id
        run.revision = document.revision
        run.state = "restoring"
        run.started = time.monotonic()
        run.reply.set_plan_editable(False)  # the snapshot is taken: this plan is what runs
        self._active = run
        run.restore_id = self.bridge.submit(request)
        self._by_request[run.restore_id] = run
        run.reply.start_progress("Starting…")
        self.refresh_strength_controls()

    def _start_action(self, run: Run, document: Document) -> None:
        assert run.action is not None and self.plugins is not None
        layer = document.active_layer
        selection = document.selection
        mask = None if selection is None or selection.is_empty else selection.mask
        try:
            request = plugin_request(self.plugins, run.action.id, layer.pixels, mask, run.params, document.revision)
        except PluginError as error:  # e.g. its plugin was disabled while the run waited
            self._end(run, FAILED, f"Something went wrong: {error}", error=str(error))
            return
        run.document = document
        run.layer_id = layer.id
        run.revision = document.revision
        run.state = "restoring"
        run.started = time.monotonic()
        self._active = run
        run.restore_id = self.bridge.submit(request)
        self._by_request[run.restore_id] = run
        run.reply.start_progress("Starting…")
        self.refresh_strength_controls()

    def _restored(self, run: Run, result: RestoreResult | np.ndarray) -> None:
        document = self.session.document
        # Another photo opened, an undo, any edit: the result no longer fits what is on screen.
        if document is None or document is not run.document or document.revision != run.revision:
            self._end(run, STALE, STALE_MESSAGE)
            return
        if isinstance(result, np.ndarray):
            assert run.action is not None
            seconds = time.monotonic() - run.started
            step = self.session.apply_action_result(
                result, run.layer_id, label=run.step_label, action_id=run.action.id, seconds=seconds
            )
            self._applied(run, step)
            self._end(run, DONE, f"Done in {seconds:.1f} s. Ctrl+Z undoes it.")
            return
        assert run.interpretation is not None
        tasks = [step.task for step in run.interpretation.steps]
        if run.replaces is not None and self._latest_step() is run.replaces:
            self.session.undo()  # "only the selection": this result takes the replaced step's place
        step = self.session.apply_restoration(
            result, run.layer_id, label=run.step_label, tasks=tasks, strength=run.strength
        )
        self._applied(run, step)
        where = f" on {result.device}" if result.device else ""
        self._end(run, DONE, f"Done in {result.seconds:.1f} s{where}. Ctrl+Z undoes it.")

    def _applied(self, run: Run, step: Step | None) -> None:
        run.step = step
        run.history = self.session.history
        if step is not None and step.can_reblend:
            run.reply.show_strength(step.strength)

    def _end(self, run: Run, state: str, status: str, *, error: str = "") -> None:
        self._clear_preview(run)  # a result in its place, or the photo as it was
        run.state = state
        run.error = error
        run.reply.finish(status)
        for request_id in (run.interpret_id, run.restore_id):
            if request_id is not None:
                self._by_request.pop(request_id, None)
        if self._active is run:
            self._active = None
        if run.interpretation is not None and run.reply.plan:
            run.reply.set_plan_editable(True)
            run.reply.show_run_again(True)
        self.run_ended.emit(run)
        self.refresh_strength_controls()
        self._start_next()
        if not self.busy:
            self.busy_changed.emit(False)

    # ------------------------------------------------------------------ editing and rerunning a plan

    def _plan_edited(self, run: Run, steps: Sequence[PlanStep]) -> None:
        """A chip changed: a plan still waiting runs as edited; an ended one waits for Run again."""
        if run.state == "waiting" and run.interpretation is not None:
            steps = tuple(steps)
            run.interpretation = replace(run.interpretation, steps=steps, reply=compose_reply(steps, ()))

    def run_again(self, run: Run) -> Run | None:
        """Run ``run``'s plan, as its chips show it now, on the photo as it is: a new message and step."""
        steps = tuple(run.reply.plan)
        if not run.ended or run.interpretation is None or not steps:
            return None
        was_busy = self.busy
        edited = steps != run.interpretation.steps
        label = ", then ".join(describe_step(step) for step in steps) if edited else run.step_label
        again = self._new_run(f"Run again: {label}")
        if again.ended:
            return again
        again.label = label
        again.strength = run.step.strength if run.step is not None else run.strength
        self._planned(again, Interpretation(label, steps, (), compose_reply(steps, ())))
        if not again.ended and not was_busy:
            self.busy_changed.emit(True)
        return again

    # ------------------------------------------------------------------ strength

    def _latest_step(self) -> Step | None:
        history = self.session.history
        if history is None or history.index == 0:
            return None
        return history.steps[history.index - 1]

    def strength_blocked(self, run: Run) -> str:
        """Why ``run``'s strength cannot be changed now ("" when it can)."""
        history, step = self.session.history, run.step
        if step is None:
            return "This message did not change the photo."
        if history is None or history is not run.history:
            return "This step belongs to a photo that is no longer open."
        if not step.can_reblend:
            return "This step was dropped from the history to save memory, so it cannot be re-blended."
        steps = history.steps
        if step not in steps:
            return "This step is no longer in the history."
        if steps.index(step) >= history.index:
            return "This step is undone: redo it (Ctrl+Shift+Z) to change its strength."
        if self._latest_step() is not step:
            return (
                "Only the latest step can be re-blended: the steps after it were made from its result. Undo them first."
            )
        if self._active is not None:
            return "Wait for the running request to finish (or cancel it): it works on the photo as it is now."
        return ""

    def refresh_strength_controls(self) -> None:
        """Enable the slider of the latest step only, each showing its step's strength."""
        for run in self.runs:
            if run.step is None or run.reply.strength_row.isHidden():
                continue
            reason = self.strength_blocked(run)
            run.reply.set_strength_enabled(not reason, reason)
            if not run.reply.strength_slider.isSliderDown():
                run.reply.set_strength_value(run.step.strength)

    def set_run_strength(self, run: Run, strength: float) -> bool:
        """Re-blend ``run``'s step at ``strength`` (0..1) without the network; False when it cannot be."""
        reason = self.strength_blocked(run)
        if reason or run.step is None:
            run.reply.set_status(reason)
            self.refresh_strength_controls()
            return False
        return self._set_step_strength(run.step, strength)

    def _set_step_strength(self, step: Step, strength: float) -> bool:
        history = self.session.history
        assert history is not None and self._latest_step() is step
        try:
            history.set_strength(history.index - 1, strength)
        except (HistoryError, ValueError, IndexError) as error:
            self.refresh_strength_controls()
            for run in self.runs:
                if run.step is step:
                    run.reply.set_status(f"Could not change the strength: {error}")
            return False
        for run in self.runs:
            if run.step is step:
                run.strength = step.strength
        # Session has no re-blend method of its own: its signal tells the canvas and the panels.
        self.session.changed.emit()
        return True

    # ------------------------------------------------------------------ follow-ups

    def _follow_up(self, run: Run, document: Document) -> None:
        """Answer a follow-up in turn: undo, redo, a weaker or stronger last step, or the selection."""
        assert run.followup is not None
        kind = run.followup.kind
        history = self.session.history
        latest = self._latest_step()
        if kind == UNDO:
            if history is None or not history.can_undo or latest is None:
                self._end(run, NOTHING, "There is nothing to undo.")
                return
            self.session.undo()
            self._end(run, DONE, f'Undone: "{latest.label}". Say "redo" to bring it back.')
        elif kind == REDO:
            if history is None or not history.can_redo:
                self._end(run, NOTHING, "There is nothing to redo.")
                return
            self.session.redo()
            redone = self._latest_step()
            self._end(run, DONE, f'Redone: "{redone.label if redone else ""}".')
        elif kind in (WEAKER, STRONGER):
            self._follow_up_strength(run, latest)
        elif kind == SELECTION:
            self._follow_up_selection(run, document)
        else:  # pragma: no cover - parse_followup returns only the kinds above
            self._end(run, NOTHING, "")

    def _follow_up_strength(self, run: Run, latest: Step | None) -> None:
        assert run.followup is not None
        if latest is None:
            self._end(run, NOTHING, "Nothing has been done to the photo yet, so there is no strength to change.")
            return
        if not latest.can_reblend:
            self._end(run, NOTHING, f'The last step ("{latest.label}") has no strength to change.')
            return
        strength = adjusted_strength(latest.strength, run.followup)
        if strength == latest.strength:
            limit = "full strength" if run.followup.kind == STRONGER else "0%: it is switched off"
            self._end(run, NOTHING, f'"{latest.label}" is already at {limit}.')
            return
        if not self._set_step_strength(latest, strength):
            self._end(run, FAILED, "The strength could not be changed.", error="re-blend failed")
            return
        self._end(run, DONE, f'"{latest.label}" is now at {round(strength * 100)}% strength.')

    def _follow_up_selection(self, run: Run, document: Document) -> None:
        selection = document.selection
        if selection is None or selection.is_empty:
            self._end(run, NOTHING, NO_SELECTION_MESSAGE)
            return
        source = next(
            (
                earlier
                for earlier in reversed(self.runs)
                if earlier.state == DONE and earlier.interpretation is not None and earlier.interpretation.steps
            ),
            None,
        )
        if source is None or source.interpretation is None:
            self._end(run, NOTHING, "There is no earlier request to repeat on the selection: tell me what to fix.")
            return
        steps = source.interpretation.steps
        if any(step.task == "upscale" for step in steps):
            self._end(run, NOTHING, "An upscale changes the whole photo, so it cannot be limited to a selection.")
            return
        run.interpretation = Interpretation(source.step_label, steps, (), compose_reply(steps, ()))
        run.label = f"{source.step_label} (selection only)"
        run.selection_only = True
        run.strength = source.step.strength if source.step is not None else source.strength
        if source.step is not None and source.step is self._latest_step():
            run.replaces, run.replaces_layer = source.step, source.layer_id
            where = "only inside the selection, in place of the last step"
        else:
            where = "only inside the selection"
        plan = ", then ".join(describe_step(step) for step in steps)
        run.reply.set_text(f"I'll redo {plan} {where}.")
        run.reply.set_plan(steps)
        self._start_restore(run, document)
