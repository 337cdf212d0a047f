"""What happens when the person sends a message: interpret it, run the plan, apply the result.

Snapshot, compute, apply (DESIGN.md §3.2). The request is built on the GUI thread from the
document as it is when the plan is ready; the engine works on its own frozen copy; the result is
applied here, on the GUI thread, as one history step — or dropped when the person cancelled it or
the document changed meanwhile (its revision moved), so the photo is never changed behind their back.

Restorations run one at a time: the next message's snapshot is taken only after the previous
result has been applied, so "denoise" then "brighten" chain as the person expects.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from instructir_desktop.core.document import Document
from instructir_desktop.inference.requests import (
    Cancelled,
    Failed,
    Finished,
    InterpretRequest,
    Progress,
    RestoreRequest,
    RestoreResult,
)
from instructir_desktop.instructions.interpret import Interpretation
from instructir_desktop.plugins.api import ActionInfo, PluginError
from instructir_desktop.plugins.host import PluginHost
from instructir_desktop.plugins.jobs import plugin_request
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

    @property
    def ended(self) -> bool:
        return self.state in ENDED


class Conversation(QObject):
    run_ended = Signal(object)  # Run
    busy_changed = Signal(bool)

    def __init__(
        self,
        session: Session,
        bridge: EngineBridge,
        chat: ChatPanel,
        parent: QObject | None = None,
        plugins: PluginHost | None = None,
    ) -> None:
        super().__init__(parent)
        self.plugins = plugins
        self.session = session
        self.bridge = bridge
        self.chat = chat
        self.runs: list[Run] = []
        self._by_request: dict[int, Run] = {}
        self._waiting: list[Run] = []
        self._active: Run | None = None
        chat.message_sent.connect(self.send)
        bridge.progress.connect(self._on_progress)
        bridge.finished.connect(self._on_finished)
        bridge.cancelled.connect(self._on_cancelled)
        bridge.failed.connect(self._on_failed)
        bridge.notice.connect(self._on_notice)

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
        reply.set_text("Reading your request…")
        reply.start_progress("Reading your request…")
        run.interpret_id = self.bridge.submit(InterpretRequest(text, document.size))
        self._by_request[run.interpret_id] = run
        if not was_busy:
            self.busy_changed.emit(True)
        return run

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
        if self.session.document is None:
            reply.set_text("Open a photo first (Ctrl+O, or drop one on the window), then tell me what to fix.")
            self._end(run, FAILED, "", error="no photo is open")
        return run

    def _queue_action(self, run: Run, action: ActionInfo, params: dict[str, Any]) -> None:
        run.action, run.params = action, params
        run.reply.set_text(describe_action(action, params))
        run.state = "waiting"
        run.reply.start_progress("Waiting for the previous request…" if self._active else "Starting…")
        self._waiting.append(run)
        self._start_next()

    def cancel(self, run: Run) -> None:
        """Cooperative: the engine stops at its next check; the result, if it still comes, is dropped."""
        if run.ended:
            return
        run.cancel_requested = True
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
        run.reply.set_plan(interpretation.steps)
        if not interpretation.steps:
            self._end(run, NOTHING, "")
            return
        run.state = "waiting"
        run.reply.start_progress("Waiting for the previous request…" if self._active else "Starting…")
        self._waiting.append(run)
        self._start_next()

    def _start_next(self) -> None:
        if self._active is not None or not self._waiting:
            return
        run = self._waiting.pop(0)
        document = self.session.document
        if document is not None and run.action is not None and self.plugins is not None:
            self._start_action(run, document)
            return
        if document is None or run.interpretation is None:
            self._end(run, FAILED, "There is no photo to restore.", error="no photo")
            self._start_next()
            return
        layer = document.active_layer
        plan = run.interpretation.steps
        upscaling = any(step.task == "upscale" for step in plan)
        selection = document.selection
        mask = None if selection is None or selection.is_empty or upscaling else selection.mask
        try:
            request = RestoreRequest(
                layer.pixels,
                plan,
                strength=run.strength,
                mask=mask,
                alpha=layer.alpha,
                revision=document.revision,
                label=run.text,
            )
        except ValueError as error:
            self._end(run, FAILED, f"I can't do that: {error}", error=str(error))
            self._start_next()
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

    def _restored(self, run: Run, result: RestoreResult | np.ndarray) -> None:
        document = self.session.document
        # Another photo opened, an undo, any edit: the result no longer fits what is on screen.
        if document is None or document is not run.document or document.revision != run.revision:
            self._end(run, STALE, STALE_MESSAGE)
            return
        if isinstance(result, np.ndarray):
            assert run.action is not None
            seconds = time.monotonic() - run.started
            self.session.apply_action_result(
                result, run.layer_id, label=run.text, action_id=run.action.id, seconds=seconds
            )
            self._end(run, DONE, f"Done in {seconds:.1f} s. Ctrl+Z undoes it.")
            return
        assert run.interpretation is not None
        tasks = [step.task for step in run.interpretation.steps]
        self.session.apply_restoration(result, run.layer_id, label=run.text, tasks=tasks, strength=run.strength)
        where = f" on {result.device}" if result.device else ""
        self._end(run, DONE, f"Done in {result.seconds:.1f} s{where}. Ctrl+Z undoes it.")

    def _end(self, run: Run, state: str, status: str, *, error: str = "") -> None:
        run.state = state
        run.error = error
        run.reply.finish(status)
        for request_id in (run.interpret_id, run.restore_id):
            if request_id is not None:
                self._by_request.pop(request_id, None)
        if self._active is run:
            self._active = None
        self.run_ended.emit(run)
        self._start_next()
        if not self.busy:
            self.busy_changed.emit(False)
