"""Answers about what was just done: "undo that", "redo", "a bit less", "a bit more", "only the
selection", and the strength slider of each step. None of them reaches the text model; they
take their turn in the queue like any run, so they act on the photo as the person sees it."""

from __future__ import annotations

from typing import Protocol

from instructir_desktop.core.document import Document, Layer
from instructir_desktop.editing import replies
from instructir_desktop.editing.conversation import Run, RunState
from instructir_desktop.editing.workspace import Workspace
from instructir_desktop.history import HistoryError, Step
from instructir_desktop.instructions.followups import REDO, SELECTION, STRONGER, UNDO, WEAKER, adjusted_strength
from instructir_desktop.instructions.interpret import Interpretation, compose_reply, describe_step


class Conversing(Protocol):
    """What follow-ups use of the assistant: the photo, the runs, and how a run starts and ends."""

    workspace: Workspace
    runs: list[Run]

    @property
    def active(self) -> Run | None: ...

    def changed(self, run: Run) -> None: ...

    def start(self, run: Run, document: Document) -> None: ...

    def end_run(self, run: Run, state: RunState, status: str, *, error: str = "") -> None: ...


class FollowUps:
    def __init__(self, assistant: Conversing) -> None:
        self._assistant = assistant

    # ------------------------------------------------------------------ follow-ups

    def answer(self, run: Run, document: Document) -> None:
        """Answer a follow-up in its turn: undo, redo, a weaker or stronger last step, or the selection."""
        assert run.followup is not None
        kind = run.followup.kind
        workspace = self._assistant.workspace
        history = workspace.history
        latest = workspace.latest_step
        end = self._assistant.end_run
        if kind == UNDO:
            if history is None or not history.can_undo or latest is None:
                end(run, RunState.NOTHING, "There is nothing to undo.")
                return
            workspace.undo()
            end(run, RunState.DONE, f'Undone: "{latest.label}". Say "redo" to bring it back.')
        elif kind == REDO:
            if history is None or not history.can_redo:
                end(run, RunState.NOTHING, "There is nothing to redo.")
                return
            workspace.redo()
            redone = workspace.latest_step
            end(run, RunState.DONE, f'Redone: "{redone.label if redone else ""}".')
        elif kind in (WEAKER, STRONGER):
            self._strength(run, latest)
        elif kind == SELECTION:
            self._selection(run, document)
        else:  # pragma: no cover - parse_followup returns only the kinds above
            end(run, RunState.NOTHING, "")

    def _strength(self, run: Run, latest: Step | None) -> None:
        assert run.followup is not None
        end = self._assistant.end_run
        if latest is None:
            end(run, RunState.NOTHING, "Nothing has been done to the photo yet, so there is no strength to change.")
            return
        if not latest.can_reblend:
            end(run, RunState.NOTHING, f'The last step ("{latest.label}") has no strength to change.')
            return
        strength = adjusted_strength(latest.strength, run.followup)
        if strength == latest.strength:
            limit = "full strength" if run.followup.kind == STRONGER else "0%: it is switched off"
            end(run, RunState.NOTHING, f'"{latest.label}" is already at {limit}.')
            return
        if not self._set_latest_strength(latest, strength):
            end(run, RunState.FAILED, "The strength could not be changed.", error="re-blend failed")
            return
        end(run, RunState.DONE, f'"{latest.label}" is now at {round(strength * 100)}% strength.')

    def _selection(self, run: Run, document: Document) -> None:
        """Redo the last plan inside the selection, in place of the last step when it still is."""
        assistant = self._assistant
        selection = document.selection
        if selection is None or selection.is_empty:
            assistant.end_run(run, RunState.NOTHING, replies.NO_SELECTION)
            return
        source = next(
            (
                earlier
                for earlier in reversed(assistant.runs)
                if earlier.state is RunState.DONE
                and not earlier.archived
                and earlier.interpretation is not None
                and earlier.interpretation.steps
            ),
            None,
        )
        if source is None or source.interpretation is None:
            assistant.end_run(
                run, RunState.NOTHING, "There is no earlier request to repeat on the selection: tell me what to fix."
            )
            return
        steps = source.interpretation.steps
        if any(step.task == "upscale" for step in steps):
            assistant.end_run(
                run, RunState.NOTHING, "An upscale changes the whole photo, so it cannot be limited to a selection."
            )
            return
        run.interpretation = Interpretation(source.step_label, steps, (), compose_reply(steps, ()))
        run.action = source.action
        run.label = f"{source.step_label} (selection only)"
        run.selection_only = True
        run.strength = source.step.strength if source.step is not None else source.strength
        if source.step is not None and source.step is assistant.workspace.latest_step:
            run.replaces, run.replaces_layer = source.step, source.layer_id
            where = "only inside the selection, in place of the last step"
        else:
            where = "only inside the selection"
        plan = ", then ".join(describe_step(step) for step in steps)
        run.reply.text = f"I'll redo {plan} {where}."
        run.reply.plan = steps
        assistant.start(run, document)

    def replaced_base(self, run: Run, document: Document) -> Layer | None:
        """The layer as it was before the step ``run`` replaces, when that step is still the latest
        (the step is undone when the result lands); None: the run works on the photo as it is."""
        history = self._assistant.workspace.history
        if run.replaces is None or history is None or self._assistant.workspace.latest_step is not run.replaces:
            run.replaces = None
            return None
        try:
            base = history.state_at(history.index - 1).layer(run.replaces_layer)
        except (HistoryError, KeyError, ValueError):
            run.replaces = None
            return None
        if base.pixels.shape[:2] != document.size:
            run.replaces = None
            return None
        return base

    def take_replaced(self, run: Run) -> bool:
        """Undo the step ``run``'s result takes the place of, if it still is the latest."""
        workspace = self._assistant.workspace
        if run.replaces is None or workspace.latest_step is not run.replaces:
            return False
        workspace.undo()
        return True

    # ------------------------------------------------------------------ strength

    def strength_blocked(self, run: Run) -> str:
        """Why ``run``'s strength cannot be changed now ("" when it can)."""
        workspace = self._assistant.workspace
        history, step = workspace.history, run.step
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
        if workspace.latest_step is not step:
            return (
                "Only the latest step can be re-blended: the steps after it were made from its result. Undo them first."
            )
        if self._assistant.active is not None:
            return "Wait for the running request to finish (or cancel it): it works on the photo as it is now."
        return ""

    def refresh_strength(self) -> None:
        """Each step's slider shows its step's strength, and can be moved only for the latest step."""
        for run in self._assistant.runs:
            if run.step is None or run.reply.strength is None:
                continue
            blocked = self.strength_blocked(run)
            if (blocked, run.step.strength) != (run.reply.strength_blocked, run.reply.strength):
                run.reply.strength_blocked = blocked
                run.reply.strength = run.step.strength
                self._assistant.changed(run)

    def set_run_strength(self, run: Run, strength: float) -> bool:
        """Re-blend ``run``'s step at ``strength`` (0..1) without the network; False when it cannot be."""
        reason = self.strength_blocked(run)
        if reason or run.step is None:
            run.reply.status = reason
            self._assistant.changed(run)
            self.refresh_strength()
            return False
        return self._set_latest_strength(run.step, strength)

    def _set_latest_strength(self, step: Step, strength: float) -> bool:
        assistant = self._assistant
        try:
            assistant.workspace.set_latest_strength(strength)
        except (HistoryError, ValueError, IndexError) as error:
            for run in assistant.runs:
                if run.step is step:
                    run.reply.status = f"Could not change the strength: {error}"
                    assistant.changed(run)
            self.refresh_strength()
            return False
        for run in assistant.runs:
            if run.step is step:
                run.strength = step.strength
        self.refresh_strength()
        return True
