"""What a plugin action's dialog says it will change, and a live preview of it on the photo.

An action changes the active layer (inside the selection, when there is one). A dialog that does
not say so lets a person sharpen a faint 30 % layer and see nothing happen, so ``target`` says
which layer, and whether its opacity or visibility will hide the change.

While the dialog is open, every change of its values runs the action on a small snapshot (the
part on screen at full resolution when that is small, else the whole layer at reduced
resolution), composites it into the other layers as the photo would show it, and shows that over
the photo (``PreviewShown``) until the dialog closes. Only the newest preview is kept: a new value
cancels the one still running. Nothing reaches the document or the history.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from instructir_desktop.core.document import Document, Layer
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.editing.engine_client import EngineClient, EngineJob
from instructir_desktop.editing.events import PreviewCleared, PreviewShown, StatusMessage
from instructir_desktop.editing.workspace import Workspace
from instructir_desktop.inference.requests import Cancelled, Failed, Finished, JobEnd
from instructir_desktop.plugins.api import ActionInfo, PluginError
from instructir_desktop.plugins.host import PluginHost
from instructir_desktop.plugins.jobs import action_request
from instructir_desktop.plugins.outcome import ActionInput, ActionOutcome

# At most this many pixels go through a preview: quick enough to follow a spin box.
PREVIEW_PIXELS = 1_000_000

Viewport = Callable[[], Bounds | None]


def target_text(document: Document | None) -> str:
    """``Applies to layer 'Background'``: where an action's change goes, and what would hide it."""
    if document is None:
        return "Open a photo first."
    layer = document.active_layer
    where = "the selection on layer" if document.selection is not None and not document.selection.is_empty else "layer"
    text = f"Applies to {where} ‘{layer.name}’"
    if len(document.layers) > 1:
        text += f" ({document.active_index + 1} of {len(document.layers)})"
    if not layer.visible:
        text += ". The layer is hidden, so the change will not show until you show it"
    elif layer.opacity < 1.0:
        text += f". The layer is at {round(layer.opacity * 100)} % opacity, so the change shows only that much"
    return text + "."


def previewable(action: ActionInfo) -> bool:
    """Actions that run the restoration model (they take a plan) are too slow to follow a value."""
    return action.parameter("plan") is None


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """The layers under the previewed region, at the preview's resolution (views, no copies)."""

    layers: tuple[Layer, ...]
    active_index: int
    region: Bounds
    step: int

    @classmethod
    def of(cls, document: Document, visible: Bounds | None) -> _Snapshot:
        whole = document.bounds
        region = whole
        if whole.area > PREVIEW_PIXELS and visible is not None and 0 < visible.area <= PREVIEW_PIXELS:
            region = visible.intersect(whole)  # zoomed in: what is on screen, at full resolution
        step = max(1, math.ceil(math.sqrt(region.area / PREVIEW_PIXELS)))
        frozen = document.frozen_copy()
        slices = region.slices
        layers = tuple(
            layer.with_content(
                layer.pixels[slices][::step, ::step],
                None if layer.alpha is None else layer.alpha[slices][::step, ::step],
            )
            for layer in frozen.layers
        )
        return cls(layers, frozen.active_index, region, step)

    def given(self, mask: np.ndarray | None) -> ActionInput:
        active = self.layers[self.active_index]
        small_mask = None if mask is None else mask[self.region.slices][:: self.step, :: self.step]
        return ActionInput(active.pixels, small_mask, active.alpha)

    def composited(self, outcome: ActionOutcome) -> np.ndarray | None:
        """The photo as it would look with the action applied (None: it enlarges, nothing to overlay)."""
        if outcome.scale != 1:
            return None
        layers = list(self.layers)
        active = layers[self.active_index]
        layers[self.active_index] = active.with_content(outcome.applied_to(active.pixels), active.alpha)
        height, width = active.pixels.shape[:2]
        return Document(height, width, layers, self.active_index).flatten().rgb


class ActionPreviews:
    def __init__(self, workspace: Workspace, client: EngineClient, dispatcher: Dispatcher) -> None:
        self._workspace = workspace
        self._client = client
        self._dispatcher = dispatcher
        self.plugins: Callable[[], PluginHost | None] = lambda: None  # set by the session
        self.viewport: Viewport | None = None  # the part of the photo on screen (set by whoever draws it)
        self._job: EngineJob[np.ndarray | None] | None = None
        self._generation = 0
        self.shown = False

    def target(self) -> str:
        return target_text(self._workspace.document)

    def show(self, action: ActionInfo, params: Mapping[str, object]) -> bool:
        """Preview ``action`` with ``params`` (replacing any preview running). False: no preview."""
        self._cancel_running()
        host = self.plugins()
        document = self._workspace.document
        if host is None or document is None or not previewable(action):
            return False
        selection = document.selection
        mask = None if selection is None or selection.is_empty else selection.mask
        snapshot = _Snapshot.of(document, self.viewport() if self.viewport is not None else None)
        self._generation += 1
        generation, revision = self._generation, document.revision
        try:
            request = action_request(
                host,
                action.id,
                snapshot.given(mask),
                dict(params),
                then=snapshot.composited,
                label=f"Preview of {action.title}",
                revision=revision,
            )
        except PluginError as error:  # a value the action refuses: say why, keep the last preview
            self._dispatcher.emit(StatusMessage(f"No preview: {error}"))
            return False
        job = self._client.submit(request)
        self._job = job
        job.end.add_done_callback(
            lambda done: self._finished(done.result(), generation, document, revision, snapshot.region)
        )
        return True

    def end(self) -> None:
        """The dialog closed: stop any preview and take it off the photo."""
        self._generation += 1
        self._cancel_running()
        if self.shown:
            self.shown = False
            self._dispatcher.emit(PreviewCleared())

    def _cancel_running(self) -> None:
        if self._job is not None:
            self._client.cancel(self._job)
            self._job = None

    def _finished(
        self, end: JobEnd[np.ndarray | None], generation: int, document: Document, revision: int, region: Bounds
    ) -> None:
        if generation != self._generation:
            return  # a newer value, or the dialog closed
        self._job = None
        current = self._workspace.document
        if current is not document or document.revision != revision:
            return  # the photo changed under it
        if isinstance(end, Finished) and end.result is not None:
            self.shown = True
            self._dispatcher.emit(PreviewShown(end.result, region))
        elif isinstance(end, Failed):
            self._dispatcher.emit(StatusMessage(f"No preview: {end.message}"))
        elif isinstance(end, Cancelled):
            pass
