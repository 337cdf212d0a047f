"""The open photo: its document and undo history, where it came from, and every change to it.

Every change goes through here, so that one event (``DocumentChanged``) tells whoever draws the
photo, its history and its layers to refresh.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from instructir_desktop.core.document import Document, Layer
from instructir_desktop.core.selection import Selection
from instructir_desktop.editing.applying import ReadyResult, restoration_of
from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.editing.events import (
    ActiveLayerChanged,
    DocumentChanged,
    DocumentOpened,
    SelectionChanged,
)
from instructir_desktop.editing.projects import OpenedFile
from instructir_desktop.editing.recipes import recorded_plan
from instructir_desktop.editing.transcript import TranscriptEntry
from instructir_desktop.history import History, HistoryError, Restoration, SavedState, Step
from instructir_desktop.io import ImageMetadata

ImageKey = tuple[int, int]
HistoryKey = tuple[int, int, int, int]


def branch_name(history: History, number: int) -> str:
    """How alternative ``number`` is called: its last step and where it forks."""
    branch = history.branches[number]
    where = "the original" if branch.fork == 0 else f"step {branch.fork}"
    return f"Alternative after {where}: {branch.tip.label}"


def _enlarge(values: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of the layers an upscale did not restore (cheap enough for
    the loop's thread)."""
    enlarged: np.ndarray = np.repeat(np.repeat(values, factor, axis=0), factor, axis=1)
    return enlarged


class Workspace:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self.history: History | None = None
        self.path: Path | None = None  # the photo (or project) it was opened from
        self.project_path: Path | None = None
        self.metadata: ImageMetadata | None = None  # the source photo's, kept for export
        # The history keeps a thumbnail per step, not of the photo as opened: made once here.
        self.original_thumbnail: np.ndarray | None = None
        # A finished restoration lands as a new layer above the one it restored, instead of replacing it
        # (``as_new_layer``).
        self.restore_into_new_layer = False
        # What was said about this photo before it was opened (a project's saved conversation).
        self.transcript: tuple[TranscriptEntry, ...] = ()
        # The last export of this history, and the state it held: an export is not a save (it
        # keeps only the flattened picture), so it never makes the work count as saved.
        self.exported: tuple[History, SavedState, Path] | None = None

    @property
    def document(self) -> Document | None:
        return None if self.history is None else self.history.document

    @property
    def modified(self) -> bool:
        """The history moved since it was opened or saved as a project (only a project save cleans it)."""
        return self.history is not None and not self.history.is_clean

    @property
    def unsaved_work(self) -> bool:
        """Steps or layers exist that no project holds: closing the photo would lose them. A photo
        never saved as a project holds nothing but itself, so any step (undone ones too, still there
        for redo) or extra layer counts; an export does not change that."""
        history = self.history
        if history is None:
            return False
        if not history.is_clean:
            return True
        return self.project_path is None and (len(history) > 0 or len(history.document.layers) > 1)

    @property
    def exported_path(self) -> Path | None:
        """Where the photo as it is now was last exported (None: it was not, or it changed since)."""
        if self.exported is None or self.history is None:
            return None
        history, state, path = self.exported
        return path if history is self.history and history.saved_state() == state else None

    def unsaved_summary(self) -> str:
        """What closing the photo would lose, in a sentence or two ("" : nothing)."""
        if not self.unsaved_work or self.history is None:
            return ""
        steps, layers = len(self.history), len(self.history.document.layers)
        parts = []
        if steps:
            parts.append(f"{steps} history step{'' if steps == 1 else 's'}")
        if layers > 1:
            parts.append(f"{layers} layers")
        what = " and ".join(parts) if parts else "changes"
        where = f"the project {self.project_path.name}" if self.project_path is not None else "a project"
        summary = f"This photo's {what} are not saved in {where}."
        exported = self.exported_path
        if exported is not None:
            summary += (
                f" It was exported to {exported.name}, but an export keeps only the finished picture,"
                " not the history or the layers."
            )
        return summary

    @property
    def image_key(self) -> ImageKey | None:
        """Changes when the flattened image may have changed: a display reconverts only then."""
        document = self.document
        return None if document is None else (id(document), document.revision)

    @property
    def history_key(self) -> HistoryKey | None:
        """Moves whenever the history or the pixels move (autosave and compare are keyed on it)."""
        history = self.history
        if history is None:
            return None
        return (id(history), history.index, len(history), history.document.revision)

    def saved_state(self) -> SavedState | None:
        return None if self.history is None else self.history.saved_state()

    @property
    def latest_step(self) -> Step | None:
        """The step the photo shows last (None: the photo as opened)."""
        history = self.history
        if history is None or history.index == 0:
            return None
        return history.steps[history.index - 1]

    def changed(self) -> None:
        self._dispatcher.emit(DocumentChanged())

    # ------------------------------------------------------------------ opening

    def adopt(self, opened: OpenedFile) -> None:
        """Make a file read by ``projects.load_file`` (on any thread) the open one."""
        self.history = opened.history
        self.path = opened.path
        self.project_path = opened.project_path
        self.metadata = opened.metadata
        self.original_thumbnail = opened.thumbnail
        self.transcript = opened.transcript
        self.exported = None
        self._dispatcher.emit(DocumentOpened())
        self.changed()

    # ------------------------------------------------------------------ selection and layers

    def set_selection(self, selection: Selection | None) -> None:
        """The region the next restoration is limited to (None or empty: the whole layer)."""
        document = self.document
        if document is None:
            return
        if selection is not None and selection.is_empty:
            selection = None
        document.selection = selection
        self._dispatcher.emit(SelectionChanged())

    def set_active_layer(self, index: int) -> None:
        """The layer the next restoration applies to (not a history step: nothing changes yet)."""
        document = self.document
        if document is None or index == document.active_index:
            return
        document.active_index = index
        self._dispatcher.emit(ActiveLayerChanged())

    def edit_layers(self, label: str, change: Callable[[Document], object]) -> Step | None:
        """Run ``change`` on the document's layer stack as one undoable step (None: it changed nothing).

        ``change`` uses ``Document``'s layer methods or sets layer properties; when it raises, the
        stack is put back as it was and the error goes to the caller.
        """
        assert self.history is not None
        document = self.history.document
        with self.history.record(label) as recording:
            change(document)
            document.touch()  # a property alone (visibility, opacity) does not move the revision
        self.changed()
        return recording.step

    # ------------------------------------------------------------------ history

    def undo(self) -> bool:
        """Undo the latest step (HistoryError when it cannot be: its stored pixels are damaged)."""
        if self.history is None or not self.history.can_undo:
            return False
        self.history.undo()
        self.changed()
        return True

    def redo(self) -> bool:
        if self.history is None or not self.history.can_redo:
            return False
        self.history.redo()
        self.changed()
        return True

    def set_index(self, index: int) -> None:
        """Show the state after ``index`` steps (HistoryError if it was dropped to save memory, or
        a step on the way cannot be shown: the steps before it are then shown)."""
        assert self.history is not None
        if index != self.history.index:
            try:
                self.history.set_index(index)
            finally:
                self.changed()

    def set_latest_strength(self, strength: float) -> None:
        """Re-blend the latest step at ``strength`` (0..1), without running anything again.
        Raises HistoryError, ValueError or IndexError when it cannot be done."""
        history = self.history
        if history is None or history.index == 0:
            raise HistoryError("there is no step to re-blend")
        history.set_strength(history.index - 1, strength)
        self.changed()

    def mark_saved(self, history: History, state: SavedState, project_path: Path | None = None) -> None:
        """A save or export of ``history`` in ``state`` finished: that state no longer counts as
        unsaved (even if the person moved on meanwhile: then there is something unsaved)."""
        if history is not self.history:
            return  # another photo was opened meanwhile; the file is written all the same
        if project_path is not None:
            self.project_path = project_path
        history.clean_after_save(state)
        self.changed()

    def mark_exported(self, history: History, state: SavedState, path: Path) -> None:
        """An export of ``history`` in ``state`` finished: remembered (to say so), never a save."""
        if history is self.history:
            self.exported = (history, state, path)
            self.changed()

    # ------------------------------------------------------------------ compare

    def comparable(self, left: int, right: int) -> str:
        """Why the states after ``left`` and ``right`` steps cannot be compared ("" : they can)."""
        history = self.history
        if history is None:
            return "There is no photo to compare."
        try:
            for index in (left, right):
                history.check_comparable(index)  # a line's state, or an alternative's end
        except (HistoryError, IndexError) as error:
            return str(error)
        return ""

    def state_name(self, index: int) -> str:
        """How the state after ``index`` steps is called in a comparison."""
        history = self.history
        if history is None or index == 0:
            return "Original"
        if index > len(history):
            return branch_name(history, index - len(history) - 1)
        return f"{index}. {history.steps[index - 1].label}"

    def switch_branch(self, number: int) -> None:
        """Continue from alternative ``number`` instead of the steps after its fork, which become an
        alternative in turn (HistoryError if it cannot be shown any more)."""
        assert self.history is not None
        try:
            self.history.switch_branch(number)
        finally:
            self.changed()

    # ------------------------------------------------------------------ results

    def apply(self, ready: ReadyResult, layer_id: str, *, label: str) -> Step | None:
        """Apply an action's outcome as one undoable step (the caller has checked it is not stale).
        None when it changed nothing."""
        assert self.history is not None
        outcome = ready.outcome
        if not ready.changed:
            return None
        tasks, seconds, model_id = outcome.tasks, outcome.seconds, outcome.model_id
        if self.as_new_layer(ready):
            step = self._as_new_layer(ready, layer_id, label=label)
        elif ready.prepared is not None:
            # The worker did the pixel work and compression: only a swap happens here.
            step = self.history.push_prepared(
                layer_id, outcome.bounds, ready.prepared, label=label, tasks=tasks, seconds=seconds, model_id=model_id
            )
        elif outcome.scale == 1:
            step = self.history.push_restoration(
                layer_id,
                outcome.bounds,
                restoration_of(outcome),
                label=label,
                tasks=tasks,
                seconds=seconds,
                model_id=model_id,
            )
        else:
            step = self._enlarged(ready, layer_id, label=label)
        if step is not None and outcome.plan:
            step.plan = recorded_plan(outcome.plan)  # what the network was asked, for recipes
        self.changed()
        return step

    def as_new_layer(self, ready: ReadyResult) -> bool:
        """A restoration (an action that ran the model's plan) lands as a new layer when the person
        asked for that; everything else changes the layer it ran on."""
        return self.restore_into_new_layer and ready.outcome.scale == 1 and bool(ready.outcome.plan)

    def _enlarged(self, ready: ReadyResult, layer_id: str, *, label: str) -> Step | None:
        """An upscale changes the canvas size: every layer is replaced, the restored one by the result."""
        assert self.history is not None
        outcome = ready.outcome
        document = self.history.document
        layers = []
        for layer in document.layers:
            if layer.id == layer_id:
                alpha = None if outcome.alpha is None else np.array(outcome.alpha, dtype=np.float32)
                pixels = np.array(outcome.pixels, dtype=np.float32)
            else:
                alpha = None if layer.alpha is None else _enlarge(layer.alpha, outcome.scale)
                pixels = _enlarge(layer.pixels, outcome.scale)
            layers.append(layer.with_content(pixels, alpha))
        return self.history.push_layers(
            layers,
            document.active_index,
            restoration=restoration_of(outcome),
            restored_layer_id=layer_id,
            label=label,
            tasks=outcome.tasks,
            seconds=outcome.seconds,
            model_id=outcome.model_id,
        )

    def _as_new_layer(self, ready: ReadyResult, layer_id: str, *, label: str) -> Step | None:
        """The result as a new layer just above ``layer_id``, the document looking as if replaced.

        The new layer holds the full-strength result (re-blendable at another strength); a
        selection becomes its alpha, so it covers only the selected region and the layer below
        shows elsewhere.
        """
        assert self.history is not None
        outcome = ready.outcome
        document = self.history.document
        source = document.layer(layer_id)
        index = document.index_of(layer_id)
        region = outcome.bounds.slices
        restored = source.pixels.copy()
        restored[region] = outcome.result
        alpha = None if source.alpha is None else source.alpha.copy()
        if outcome.mask is not None:
            coverage = np.zeros(document.size, dtype=np.float32)
            coverage[region] = outcome.mask
            alpha = coverage if alpha is None else alpha * coverage
        name = label if len(label) <= 40 else label[:39] + "…"
        layer = Layer(restored, alpha, name=name or "Restored")
        layers = list(document.layers)
        layers.insert(index + 1, layer)
        return self.history.push_layers(
            layers,
            index + 1,
            restoration=Restoration(source.pixels, restored, None, outcome.strength),
            restored_layer_id=layer.id,
            label=label,
            tasks=outcome.tasks,
            seconds=outcome.seconds,
            model_id=outcome.model_id,
        )
