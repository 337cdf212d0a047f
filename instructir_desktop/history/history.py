"""The undo history of one document: steps that store only what changed, capped by memory.

It speaks QUndoStack's words, so the GUI can wrap it: ``index`` is the number of steps applied
(0 = the photo as opened, ``len(history)`` = every step), ``push`` adds a step, ``undo``/``redo``/
``set_index`` move through it, ``set_clean``/``is_clean`` track the saved state. Unlike
QUndoStack, a push after an undo keeps the undone steps as an alternative (``branches``) the
person can switch back to (``switch_branch``) and compare against (``image_at(tip_state(n))``).

A step's change is one of two kinds:

* ``PatchChange``: a rectangle of one layer (a restoration of the whole photo or of a selection,
  a brush edit). Before and after pixels of only that rectangle are stored; a restoration stores
  its original and full-strength result instead of the after pixels, so its strength can be
  changed later without running the network again (``set_strength``).
* ``StackChange``: the layer stack itself (add, remove, move, merge, duplicate, properties, an
  upscale that resizes every layer). Only the pixels of layers the step created, replaced or
  removed are stored; layers it left alone are taken back from the document when undoing.

History writes every pixel it applies on the 16-bit grid of ``codec.snap`` (error ≤ 7.6e-6), which
lets it store everything exactly at 16 bits or less; see ``codec`` for why.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from instructir_desktop.core.document import Document, Flattened, Layer
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.history.branches import (
    Branch,
    all_branches,
    detached_branch,
    detached_step,
    release_swapped,
    split_at,
    without,
)
from instructir_desktop.history.changes import (
    HistoryError,
    PatchChange,
    PreparedRestoration,
    Restoration,
    StackSnapshot,
    StoredRestoration,
    layer_in,
    prepare_restoration,
    reblend,
    stack_change,
    stored_arrays,
    whole_if_inside,
)
from instructir_desktop.history.codec import encode, snap
from instructir_desktop.history.steps import Recording, Step

DEFAULT_MEMORY_LIMIT = 512 * 1024 * 1024
# A history state as ``History.saved_state`` identifies it: (index, ids of the applied steps, their strengths).
SavedState = tuple[int, tuple[int, ...], tuple[float, ...]]


class History:
    """Undo history of ``document``. Changes made through the history are applied to it at once."""

    def __init__(self, document: Document, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
        self._document = document
        self._steps: list[Step] = []
        self._index = 0
        self._clean_index = 0
        self._memory_limit = int(memory_limit)
        self._branches: list[Branch] = []

    # ------------------------------------------------------------------ state

    @property
    def document(self) -> Document:
        return self._document

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def index(self) -> int:
        """Steps applied: 0 is the photo as opened, ``len(self)`` every step."""
        return self._index

    @property
    def clean_index(self) -> int:
        """The index last marked clean (saved), or -1 when that state is gone."""
        return self._clean_index

    @property
    def is_clean(self) -> bool:
        return self._index == self._clean_index

    def set_clean(self, index: int | None = None) -> None:
        """The state after ``index`` steps (default: now) is the saved one; -1: none of them is."""
        index = self._index if index is None else index
        if not -1 <= index <= len(self._steps):
            raise IndexError(f"history index {index} is outside -1..{len(self._steps)}")
        self._clean_index = index
        for branch in all_branches(self._branches):
            branch.clean = None  # the saved state is on the line now (or nowhere)

    def saved_state(self) -> SavedState:
        """What identifies the current state for a save that finishes later: ``clean_after_save``."""
        return self._state_after(self._index)

    def clean_after_save(self, state: SavedState) -> None:
        """A save of ``state`` (from ``saved_state``) finished: mark that state clean if the history
        still holds it (the person may have undone or redone meanwhile), else nothing is clean."""
        index = state[0]
        self.set_clean(index if index <= len(self._steps) and self._state_after(index) == state else -1)

    def _state_after(self, index: int) -> SavedState:
        # The steps themselves and their strengths (a re-blend changes the pixels, not the steps).
        applied = self._steps[:index]
        return index, tuple(id(step) for step in applied), tuple(step.strength for step in applied)

    @property
    def memory_limit(self) -> int:
        return self._memory_limit

    @memory_limit.setter
    def memory_limit(self, limit: int) -> None:
        self._memory_limit = int(limit)
        self._enforce_memory_limit()

    @property
    def memory_used(self) -> int:
        """Bytes held by the steps: compressed changes and thumbnails. An array several steps share
        (a step's "before" is usually the step before's result) is held, and counted, once."""
        steps = self._every_step()
        unique = {id(array): array.nbytes for step in steps for array in stored_arrays(step.change)}
        return sum(unique.values()) + sum(int(step.thumbnail.nbytes) for step in steps)

    def _every_step(self) -> list[Step]:
        """The line's steps and every branch's."""
        return self._steps + [step for branch in all_branches(self._branches) for step in branch.steps]

    @property
    def oldest_index(self) -> int:
        """The earliest index still reachable from the current one."""
        index = self._index
        while index > 0 and self._steps[index - 1].change is not None:
            index -= 1
        return index

    @property
    def newest_index(self) -> int:
        """The latest index still reachable from the current one."""
        index = self._index
        while index < len(self._steps) and self._steps[index].change is not None:
            index += 1
        return index

    @property
    def can_undo(self) -> bool:
        return self._index > 0 and self._steps[self._index - 1].change is not None

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._steps) and self._steps[self._index].change is not None

    # ------------------------------------------------------------------ moving

    def undo(self) -> Step:
        if not self.can_undo:
            raise HistoryError("nothing to undo" if self._index == 0 else "this step was dropped to save memory")
        step = self._steps[self._index - 1]
        assert step.change is not None
        self._keep_swapped_out_only_for(step)
        with _damage_named(step):
            step.change.undo(self._document, keep_swapped=True)
        self._index -= 1
        return step

    def redo(self) -> Step:
        if not self.can_redo:
            raise HistoryError("nothing to redo")
        step = self._steps[self._index]
        assert step.change is not None
        self._keep_swapped_out_only_for(step)
        with _damage_named(step):
            step.change.redo(self._document, keep_swapped=True)
        self._index += 1
        return step

    def _keep_swapped_out_only_for(self, step: Step) -> None:
        """At most one full-size array is kept for fast undo/redo: the latest moved step's."""
        for other in self._steps:
            if other is not step and isinstance(other.change, PatchChange):
                other.change.swapped_out = None

    def set_index(self, index: int) -> None:
        """Undo or redo until ``index`` steps are applied."""
        self.check_reachable(index)
        while self._index > index:
            self.undo()
        while self._index < index:
            self.redo()

    def snapshot(self) -> History:
        """A copy to save on another thread while editing goes on: it shares the stored changes
        and, copy-on-write, the layers' pixels (``Document.frozen_copy``), so it costs no pixel copy."""
        twin = History(self._document.frozen_copy(), self._memory_limit)
        twin._steps = [detached_step(step) for step in self._steps]
        twin._index = self._index
        twin._clean_index = self._clean_index
        twin._branches = [detached_branch(branch) for branch in self._branches]
        return twin

    def state_at(self, index: int) -> Document:
        """A copy of the document as it was with ``index`` steps applied; the document is untouched."""
        self.check_reachable(index)
        state = self._document.copy()
        for position in range(self._index - 1, index - 1, -1):
            change = self._steps[position].change
            assert change is not None
            with _damage_named(self._steps[position]):
                change.undo(state)
        for position in range(self._index, index):
            change = self._steps[position].change
            assert change is not None
            with _damage_named(self._steps[position]):
                change.redo(state)
        return state

    def image_at(self, index: int) -> Flattened:
        """The flattened image with ``index`` steps applied (to compare any two steps); an index
        from ``tip_state`` is the end of that branch."""
        if index > len(self._steps):
            return self._branch_tip(index - len(self._steps) - 1).flatten()
        if index == self._index:
            return self._document.flatten()
        return self.state_at(index).flatten()

    def check_comparable(self, index: int) -> None:
        """Like ``check_reachable``, also for an index from ``tip_state`` (a branch's end)."""
        if index > len(self._steps):
            self._branch_to_show(index - len(self._steps) - 1)
        else:
            self.check_reachable(index)

    def check_reachable(self, index: int) -> None:
        """Raise IndexError or HistoryError unless ``state_at(index)`` can be built."""
        if not 0 <= index <= len(self._steps):
            raise IndexError(f"history index {index} is outside 0..{len(self._steps)}")
        if not self.oldest_index <= index <= self.newest_index:
            raise HistoryError(f"the state after step {index} was dropped to save memory")

    # ------------------------------------------------------------------ recording

    def push_patch(
        self,
        layer_id: str,
        pixels: np.ndarray,
        bounds: Bounds | None = None,
        *,
        alpha: np.ndarray | None = None,
        label: str,
        tasks: Sequence[str] = (),
        seconds: float = 0.0,
        model_id: str = "",
    ) -> Step | None:
        """Write new pixels into a layer as one step.

        With ``bounds``, ``pixels`` (and ``alpha``) cover just that rectangle. Without, they cover
        the whole layer and the changed rectangle is found by comparison; nothing changed → None.
        """
        layer = layer_in(self._document, layer_id)
        if alpha is not None and layer.alpha is None:
            raise ValueError(f"layer {layer.name!r} has no alpha plane; give it one with a layer step")
        region = Bounds.of_image(layer.height, layer.width) if bounds is None else bounds
        whole_if_inside(layer, region)
        if np.shape(pixels) != (region.height, region.width, 3):
            raise ValueError(f"pixels are {np.shape(pixels)}, expected {(region.height, region.width, 3)}")
        if alpha is not None and np.shape(alpha) != (region.height, region.width):
            raise ValueError(f"alpha is {np.shape(alpha)}, expected {(region.height, region.width)}")
        after = snap(pixels)
        after_alpha = None if alpha is None else snap(alpha)
        if bounds is None:
            changed = Bounds.of_difference(layer.pixels, after) or Bounds(0, 0, 0, 0)
            if after_alpha is not None and layer.alpha is not None:
                changed = changed.union(Bounds.of_difference(layer.alpha, after_alpha) or Bounds(0, 0, 0, 0))
            if changed.empty:
                return None
            region = changed
            after = after[region.slices]
            after_alpha = None if after_alpha is None else after_alpha[region.slices]
        change = PatchChange(
            layer_id,
            region,
            before=encode(layer.pixels[region.slices]),
            after=encode(after),
            alpha_before=None if after_alpha is None or layer.alpha is None else encode(layer.alpha[region.slices]),
            alpha_after=None if after_alpha is None else encode(after_alpha),
        )
        change.redo(self._document)
        return self._push(Step(label, change, self._document.thumbnail(), tuple(tasks), 1.0, seconds, model_id))

    def push_restoration(
        self,
        layer_id: str,
        bounds: Bounds,
        restoration: Restoration,
        *,
        label: str,
        tasks: Sequence[str] = (),
        seconds: float = 0.0,
        model_id: str = "",
    ) -> Step:
        """Apply a restoration of ``bounds`` of a layer at its strength, keeping what re-blending needs."""
        layer = layer_in(self._document, layer_id)
        whole_if_inside(layer, bounds)  # before slicing: a slice would silently shrink
        prepared = prepare_restoration(layer.pixels[bounds.slices], restoration)
        return self.push_prepared(
            layer_id, bounds, prepared, label=label, tasks=tasks, seconds=seconds, model_id=model_id
        )

    def push_prepared(
        self,
        layer_id: str,
        bounds: Bounds,
        prepared: PreparedRestoration,
        *,
        label: str,
        tasks: Sequence[str] = (),
        seconds: float = 0.0,
        model_id: str = "",
    ) -> Step:
        """``push_restoration`` for a restoration prepared off the GUI thread: no pixel work here.

        A rectangle covering the whole layer swaps the layer's array for ``prepared.pixels``
        (no copy); a smaller one is copied in. The layer must still hold, under ``bounds``, the
        pixels ``prepared`` was made from (see ``prepare_restoration``).
        """
        layer = layer_in(self._document, layer_id)
        whole = whole_if_inside(layer, bounds)
        if prepared.shape != (bounds.height, bounds.width):
            raise ValueError(f"the prepared restoration is {prepared.shape}, expected {(bounds.height, bounds.width)}")
        change = PatchChange(layer_id, bounds, before=prepared.before, after=None, restoration=prepared.stored)
        if bounds == whole and prepared.pixels.flags.c_contiguous:
            change.swapped_out, layer.pixels = layer.pixels, prepared.pixels
        elif prepared.layer is not None and prepared.layer.shape == layer.pixels.shape:
            change.swapped_out, layer.pixels = layer.pixels, prepared.layer
        else:
            layer.writable_pixels()[bounds.slices] = prepared.pixels
        self._document.touch()
        strength = prepared.stored.strength
        step = Step(label, change, self._document.thumbnail(), tuple(tasks), strength, seconds, model_id)
        return self._push(step)

    def push_layers(
        self,
        layers: Sequence[Layer],
        active_index: int | None = None,
        *,
        restoration: Restoration | None = None,
        restored_layer_id: str | None = None,
        label: str,
        tasks: Sequence[str] = (),
        seconds: float = 0.0,
        model_id: str = "",
    ) -> Step | None:
        """Replace the whole layer stack as one step (an upscale: every layer at the new size).

        A layer whose pixel arrays are the document's own is kept as it is. With ``restoration``,
        the pixels of ``restored_layer_id`` are that restoration (covering the whole layer) at its
        strength, and the step can be re-blended.
        """
        if (restoration is None) != (restored_layer_id is None):
            raise ValueError("give a restoration together with the id of the layer it restored")
        before = StackSnapshot.of(self._document)
        current_arrays = {id(layer.pixels) for layer in self._document.layers}
        current_arrays |= {id(layer.alpha) for layer in self._document.layers if layer.alpha is not None}

        def own(values: np.ndarray) -> np.ndarray:
            return values if id(values) in current_arrays else snap(values)

        stored = None
        new_layers = []
        for layer in layers:
            pixels = layer.pixels
            if layer.id == restored_layer_id and restoration is not None:
                restoration.check(layer.height, layer.width)
                original, restored = snap(restoration.original), snap(restoration.restored)
                mask = None if restoration.mask is None else snap(restoration.mask)
                stored = StoredRestoration(
                    encode(original),
                    encode(restored),
                    None if mask is None else encode(mask),
                    float(restoration.strength),
                )
                pixels = reblend(original, restored, mask, stored.strength)
            else:
                pixels = own(pixels)
            alpha = None if layer.alpha is None else own(layer.alpha)
            new_layers.append(layer.with_content(pixels, alpha))
        if restored_layer_id is not None and stored is None:
            raise ValueError(f"no layer {restored_layer_id!r} among the new layers")
        self._document.replace_layers(new_layers, active_index)
        change = stack_change(before, StackSnapshot.of(self._document), restored_layer_id, stored)
        if change is None:
            return None
        strength = 1.0 if stored is None else stored.strength
        return self._push(Step(label, change, self._document.thumbnail(), tuple(tasks), strength, seconds, model_id))

    @contextmanager
    def record(
        self, label: str, *, tasks: Sequence[str] = (), seconds: float = 0.0, model_id: str = ""
    ) -> Iterator[Recording]:
        """Make the layer operations done inside the block one step::

            with history.record("Merge down") as recording:
                history.document.merge_down(2)

        The block must change pixels only through ``Document`` methods (which replace arrays, never
        write into them). If it raises, the stack is put back as it was and no step is made.
        """
        before = StackSnapshot.of(self._document)
        recording = Recording()
        try:
            yield recording
        except BaseException:
            before.restore_into(self._document)
            raise
        arrays_before = {id(snapshot.pixels) for snapshot in before.layers}
        arrays_before |= {id(snapshot.alpha) for snapshot in before.layers if snapshot.alpha is not None}
        # New pixels go on the 16-bit grid like every other change, so they are stored exactly and compactly.
        for layer in self._document.layers:
            if id(layer.pixels) not in arrays_before:
                layer.pixels = snap(layer.pixels)
            if layer.alpha is not None and id(layer.alpha) not in arrays_before:
                layer.alpha = snap(layer.alpha)
        change = stack_change(before, StackSnapshot.of(self._document))
        if change is not None:
            step = Step(label, change, self._document.thumbnail(), tuple(tasks), 1.0, seconds, model_id)
            recording.step = self._push(step)

    def set_strength(self, step_index: int, strength: float) -> None:
        """Re-blend the latest applied step (a restoration) at another strength, without the network.

        Only the latest step: later steps were computed from its result. Steps undone after it
        are discarded, as with any new change.
        """
        if not 0 <= step_index < len(self._steps):
            raise IndexError(f"step {step_index} is outside 0..{len(self._steps) - 1}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {strength}")
        step = self._steps[step_index]
        change = step.change
        if change is None or change.restoration is None:
            raise HistoryError(f"step {step_index} ({step.label!r}) cannot be re-blended")
        if step_index != self._index - 1:
            raise HistoryError("only the latest applied step can be re-blended")
        self._discard_redo_branch()
        change.restoration.strength = float(strength)
        step.strength = float(strength)
        if isinstance(change, PatchChange):
            before = change.swapped_out  # the before side stays valid; the after side is rewritten
            change.swapped_out = None
            change.redo(self._document)
            change.swapped_out = before
        else:
            assert change.restored_layer_id is not None
            layer = layer_in(self._document, change.restored_layer_id)
            layer.writable_pixels()[...] = change.restoration.result()
            self._document.touch()
        if self._clean_index == self._index:
            self._clean_index = -1
        step.thumbnail = self._document.thumbnail()

    def _push(self, step: Step) -> Step:
        self._set_redo_branch_aside()
        self._keep_swapped_out_only_for(step)
        self._steps.append(step)
        self._index += 1
        self._enforce_memory_limit()
        return step

    def _discard_redo_branch(self) -> None:
        """Forget the undone steps and the branches that grew from the current state or later (a
        re-blend changed the state they were computed from, so they no longer apply to it)."""
        del self._steps[self._index :]
        self._branches = [branch for branch in self._branches if branch.fork < self._index]
        if self._clean_index > self._index:
            self._clean_index = -1

    def _set_redo_branch_aside(self) -> None:
        """The undone steps become a branch forking at the current index, with the branches that
        fork inside them; the line then ends here."""
        if self._index == len(self._steps):
            return
        tail = self._steps[self._index :]
        release_swapped(tail)
        kept, later = split_at(self._branches, self._index)
        clean = self._clean_index if self._clean_index > self._index else None
        self._branches = [*kept, Branch(self._index, tail, later, clean=clean)]
        del self._steps[self._index :]
        if clean is not None:
            self._clean_index = -1

    # ------------------------------------------------------------------ branches

    @property
    def branches(self) -> tuple[Branch, ...]:
        """The alternatives to the line: each forks after ``fork`` of its steps (oldest first)."""
        return tuple(self._branches)

    def tip_state(self, branch: int) -> int:
        """An index naming the end of branch ``branch`` for ``image_at``/``check_comparable``: past
        the line's own indices, so it is never mistaken for one."""
        if not 0 <= branch < len(self._branches):
            raise IndexError(f"there is no alternative {branch + 1}")
        return len(self._steps) + 1 + branch

    def _branch_to_show(self, number: int) -> Branch:
        if not 0 <= number < len(self._branches):
            raise IndexError(f"there is no alternative {number + 1}")
        branch = self._branches[number]
        self.check_reachable(branch.fork)
        if not branch.kept:
            raise HistoryError("this alternative was dropped to save memory")
        return branch

    def _branch_tip(self, number: int) -> Document:
        """A copy of the document as it is at the end of branch ``number``; the document is untouched."""
        branch = self._branch_to_show(number)
        state = self.state_at(branch.fork)
        for step in branch.steps:
            assert step.change is not None
            with _damage_named(step):
                step.change.redo(state)
        return state

    def switch_branch(self, number: int) -> None:
        """Make branch ``number`` the line and show its end; the line's steps after the fork become
        a branch in its place, so switching back returns to them."""
        branch = self._branch_to_show(number)
        self.set_index(branch.fork)
        fork = branch.fork
        kept, later = split_at(self._branches, fork)
        kept.remove(branch)
        tail = self._steps[fork:]
        release_swapped(tail)
        clean = self._clean_index if self._clean_index > fork else None
        if tail:
            kept.append(Branch(fork, tail, later, clean=clean))
        self._steps[fork:] = branch.steps
        self._branches = kept + branch.branches
        if branch.clean is not None:
            self._clean_index = branch.clean
        elif clean is not None:
            self._clean_index = -1
        self.set_index(len(self._steps))

    def _enforce_memory_limit(self) -> None:
        """Drop the oldest steps' changes until the history fits its memory limit.

        Thumbnails and labels stay (they are small), so dropped steps still show in the list.
        """
        used = self.memory_used
        # Alternatives go first, the oldest first: the line is what the person is working on.
        for branch in sorted(all_branches(self._branches), key=lambda branch: branch.created):
            if used <= self._memory_limit:
                return
            without(self._branches, branch)
            used = self.memory_used
        for step in self._steps:
            if used <= self._memory_limit:
                break
            if step.change is not None:
                step.change = None
                used = self.memory_used  # what it shared with a kept step is still held

    # ------------------------------------------------------------------ loading

    @classmethod
    def restored(
        cls,
        document: Document,
        steps: Sequence[Step],
        index: int,
        clean_index: int = -1,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
        branches: Sequence[Branch] = (),
    ) -> History:
        """A history rebuilt from stored steps (a project file); ``document`` is the state at ``index``."""
        if not 0 <= index <= len(steps):
            raise ValueError(f"history index {index} is outside 0..{len(steps)}")
        history = cls(document, memory_limit)
        history._steps = list(steps)
        history._branches = list(branches)
        history._index = index
        history._clean_index = clean_index if -1 <= clean_index <= len(steps) else -1
        history._enforce_memory_limit()
        return history


@contextmanager
def _damage_named(step: Step) -> Iterator[None]:
    """Stored pixels that no longer decode (a damaged project file; decoding raises ValueError)
    are this step's HistoryError: the document is left as it was before the step was tried."""
    try:
        yield
    except ValueError as error:
        raise HistoryError(f"step {step.label!r} cannot be shown: {error}") from None
