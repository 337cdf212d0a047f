"""What one history step changed, and how it is kept: compressed rectangles of a layer
(``PatchChange``) or the layer stack (``StackChange``), and restorations kept at full strength so
their strength can change later (``StoredRestoration``, ``prepare_restoration``).

Every pixel these apply is on the 16-bit grid of ``codec.snap``; see ``codec`` for why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from instructir_desktop.core.compositing import blend, composite
from instructir_desktop.core.document import Document, Layer
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.history.codec import EncodedArray, decode, encode, snap


class HistoryError(RuntimeError):
    """An undo, redo, jump or re-blend the history cannot do (say, a step dropped by the memory cap)."""


def reblend(original: np.ndarray, restored: np.ndarray, mask: np.ndarray | None, strength: float) -> np.ndarray:
    """What a restoration looks like at ``strength``, through ``mask``, on the history's 16-bit grid."""
    return snap(composite(original, blend(original, restored, strength), mask))


@dataclass(frozen=True, eq=False)
class Restoration:
    """What a restoration produced for one rectangle: enough to re-blend it at any strength.

    ``original`` and ``restored`` are (h, w, 3), ``mask`` (h, w) or None for the whole rectangle.
    """

    original: np.ndarray
    restored: np.ndarray
    mask: np.ndarray | None = None
    strength: float = 1.0

    def check(self, height: int, width: int) -> None:
        for name, values in (("original", self.original), ("restored", self.restored)):
            if np.shape(values) != (height, width, 3):
                raise ValueError(f"the {name} pixels are {np.shape(values)}, expected {(height, width, 3)}")
        if self.mask is not None and np.shape(self.mask) != (height, width):
            raise ValueError(f"the mask is {np.shape(self.mask)}, expected {(height, width)}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {self.strength}")


# ---------------------------------------------------------------------------------------------- changes


def total_bytes(*arrays: EncodedArray | None) -> int:
    return sum(array.nbytes for array in arrays if array is not None)


def decoded(array: EncodedArray | None) -> np.ndarray | None:
    return None if array is None else decode(array)


def layer_in(document: Document, layer_id: str) -> Layer:
    try:
        return document.layer(layer_id)
    except KeyError:
        raise HistoryError(f"the document has no layer {layer_id!r}: the history does not match it") from None


def whole_if_inside(layer: Layer, region: Bounds) -> Bounds:
    """The layer's whole rectangle, after checking ``region`` is a non-empty rectangle inside it."""
    whole = Bounds.of_image(layer.height, layer.width)
    if region.intersect(whole) != region or region.empty:
        raise ValueError(f"{region} is not a non-empty rectangle inside the layer ({whole})")
    return whole


@dataclass(eq=False)
class StoredRestoration:
    """A restoration as the history keeps it (``original`` None: the same as the patch's before)."""

    original: EncodedArray | None
    restored: EncodedArray
    mask: EncodedArray | None
    strength: float

    @property
    def nbytes(self) -> int:
        return total_bytes(self.original, self.restored, self.mask)

    def result(self, before: Callable[[], np.ndarray] | None = None) -> np.ndarray:
        if self.original is not None:
            original = decode(self.original)
        elif before is not None:
            original = before()
        else:
            raise HistoryError("this restoration's original pixels are missing")
        return reblend(original, decode(self.restored), decoded(self.mask), self.strength)


@dataclass(eq=False)
class PatchChange:
    """A rectangle of one layer changed: its pixels (and alpha, when that changed) before and after."""

    layer_id: str
    bounds: Bounds
    before: EncodedArray
    after: EncodedArray | None  # None: ``restoration`` computes it
    alpha_before: EncodedArray | None = None
    alpha_after: EncodedArray | None = None
    restoration: StoredRestoration | None = None
    # The whole layer's array on the side this step is not showing, kept from the last swap, so
    # undoing or redoing the latest step is a swap instead of decompressing (or copying) a
    # full-size photo. Only for steps without alpha; the history keeps one such array.
    swapped_out: np.ndarray | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        restoration = 0 if self.restoration is None else self.restoration.nbytes
        return total_bytes(self.before, self.after, self.alpha_before, self.alpha_after) + restoration

    def after_pixels(self) -> np.ndarray:
        if self.restoration is not None:
            return self.restoration.result(lambda: decode(self.before))
        if self.after is None:
            raise HistoryError("this step's result is missing")
        return decode(self.after)

    def undo(self, document: Document, *, keep_swapped: bool = False) -> None:
        """Put the before pixels back. ``keep_swapped``: ``document`` is the history's own, so the
        whole-layer array taken out may be kept for the way back (never for a copy of the document)."""
        if not (keep_swapped and self._swap(document)):
            self._write(document, decode(self.before), decoded(self.alpha_before), keep_swapped)

    def redo(self, document: Document, *, keep_swapped: bool = False) -> None:
        if not (keep_swapped and self._swap(document)):
            self._write(document, self.after_pixels(), decoded(self.alpha_after), keep_swapped)

    def _swap(self, document: Document) -> bool:
        """Put ``swapped_out`` back into the layer, keeping the array it replaces (False: nothing kept)."""
        if self.swapped_out is None:
            return False
        layer = layer_in(document, self.layer_id)
        if layer.pixels.shape != self.swapped_out.shape:
            self.swapped_out = None
            return False
        layer.pixels, self.swapped_out = self.swapped_out, layer.pixels
        document.touch()
        return True

    def _write(self, document: Document, pixels: np.ndarray, alpha: np.ndarray | None, keep_swapped: bool) -> None:
        layer = layer_in(document, self.layer_id)
        region = self.bounds.slices
        if layer.pixels[region].shape != pixels.shape:
            raise HistoryError(f"layer {layer.name!r} does not hold the rectangle {self.bounds}")
        if keep_swapped and self.bounds == Bounds.of_image(layer.height, layer.width) and self.alpha_after is None:
            # A whole-layer step: swap in the decoded array and keep the old one for the way back.
            self.swapped_out, layer.pixels = layer.pixels, pixels
            document.touch()
            return
        layer.writable_pixels()[region] = pixels
        if alpha is not None:
            if layer.alpha is None:
                raise HistoryError(f"layer {layer.name!r} has no alpha plane to restore")
            layer.writable_alpha()[region] = alpha
        document.touch()


@dataclass(frozen=True, eq=False)
class PreparedRestoration:
    """A restoration made ready for the history away from the GUI thread (``prepare_restoration``).

    Everything slow is done: the arrays are snapped, blended at ``strength`` and compressed, so
    ``History.push_prepared`` only has to put ``pixels`` into the layer. ``pixels`` is a new array
    nobody else writes to; the history takes it over.
    """

    before: EncodedArray  # the layer's pixels under the rectangle when the restoration was asked for
    stored: StoredRestoration
    pixels: np.ndarray  # what the rectangle shows at ``stored.strength``
    # For a rectangle smaller than the layer, when the whole layer was given: the layer with the
    # rectangle replaced, so that pushing swaps it in instead of copying a full-size layer.
    layer: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def prepare_restoration(
    before: np.ndarray, restoration: Restoration, *, layer: np.ndarray | None = None, bounds: Bounds | None = None
) -> PreparedRestoration:
    """Do a restoration step's heavy work (snapping, blending, compression) on any thread.

    ``before`` is what the layer holds under the rectangle at the moment the restoration was
    requested; the step must be pushed while the layer still holds exactly that (check the
    document's revision), or undoing it would bring back the wrong pixels. With the whole
    ``layer`` (as it was then) and the rectangle's ``bounds`` in it, the new layer is built here
    too (``PreparedRestoration.layer``).
    """
    height, width = np.shape(before)[:2]
    if np.shape(before) != (height, width, 3):
        raise ValueError(f"before pixels are {np.shape(before)}, expected (h, w, 3)")
    restoration.check(height, width)
    original, restored = snap(restoration.original), snap(restoration.restored)
    mask = None if restoration.mask is None else snap(restoration.mask)
    # The original usually is the layer's own pixels: then it is stored once, as "before".
    shared = np.array_equal(before, original)
    stored = StoredRestoration(
        None if shared else encode(original),
        encode(restored),
        None if mask is None else encode(mask),
        float(restoration.strength),
    )
    pixels = reblend(original, restored, mask, stored.strength)
    whole_layer = None
    if layer is not None and bounds is not None and np.shape(layer)[:2] != (height, width):
        if (bounds.height, bounds.width) != (height, width):
            raise ValueError(f"{bounds} does not match the {height}×{width} rectangle")
        whole_layer = np.array(layer, dtype=np.float32, order="C")
        whole_layer[bounds.slices] = pixels
    return PreparedRestoration(encode(before), stored, pixels, whole_layer)


@dataclass(frozen=True, eq=False)
class StoredLayer:
    """A layer as a stack change keeps it. ``kept``: the step left its pixels alone, so they are
    taken from the document; otherwise ``pixels`` holds them (None: the step's restoration does)."""

    id: str
    name: str
    opacity: float
    visible: bool
    blend_mode: str
    kept: bool
    pixels: EncodedArray | None = None
    alpha: EncodedArray | None = None

    @property
    def nbytes(self) -> int:
        return total_bytes(self.pixels, self.alpha)


@dataclass(frozen=True, eq=False)
class StoredStack:
    height: int
    width: int
    active_index: int
    layers: tuple[StoredLayer, ...]

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)


@dataclass(eq=False)
class StackChange:
    """The layer stack before and after a step; ``restoration`` computes ``restored_layer_id``'s pixels."""

    before: StoredStack
    after: StoredStack
    restored_layer_id: str | None = None
    restoration: StoredRestoration | None = None

    @property
    def nbytes(self) -> int:
        restoration = 0 if self.restoration is None else self.restoration.nbytes
        return self.before.nbytes + self.after.nbytes + restoration

    def undo(self, document: Document, *, keep_swapped: bool = False) -> None:
        rebuild(document, self.before, None)

    def redo(self, document: Document, *, keep_swapped: bool = False) -> None:
        rebuild(document, self.after, self.restoration)


Change = PatchChange | StackChange


def stored_arrays(change: Change | None) -> list[EncodedArray]:
    """Every compressed array ``change`` holds (an array shared with another step is the same object)."""
    if change is None:
        return []
    arrays: list[EncodedArray | None] = []
    restoration = change.restoration
    if restoration is not None:
        arrays += [restoration.original, restoration.restored, restoration.mask]
    if isinstance(change, PatchChange):
        arrays += [change.before, change.after, change.alpha_before, change.alpha_after]
    else:
        for stack in (change.before, change.after):
            for layer in stack.layers:
                arrays += [layer.pixels, layer.alpha]
    return [array for array in arrays if array is not None]


def detached(change: Change | None) -> Change | None:
    """A copy of ``change`` whose mutable parts (a re-blend's strength, kept arrays) are its own;
    the stored arrays, which never change, are shared."""
    if change is None:
        return None
    restoration = None if change.restoration is None else replace(change.restoration)
    if isinstance(change, PatchChange):
        return replace(change, restoration=restoration, swapped_out=None)
    return replace(change, restoration=restoration)


def rebuild(document: Document, stack: StoredStack, restoration: StoredRestoration | None) -> None:
    current = {layer.id: layer for layer in document.layers}
    layers = []
    for stored in stack.layers:
        if stored.kept:
            source = current.get(stored.id)
            if source is None:
                raise HistoryError(f"the document has no layer {stored.id!r}: the history does not match it")
            pixels, alpha = source.pixels, source.alpha
        elif stored.pixels is not None:
            pixels, alpha = decode(stored.pixels), decoded(stored.alpha)
        elif restoration is not None:
            pixels, alpha = restoration.result(), decoded(stored.alpha)
        else:
            raise HistoryError(f"the pixels of layer {stored.name!r} are missing")
        layers.append(
            Layer(
                pixels,
                alpha,
                name=stored.name,
                opacity=stored.opacity,
                visible=stored.visible,
                blend_mode=stored.blend_mode,
                id=stored.id,
            )
        )
    document.replace_layers(layers, stack.active_index, height=stack.height, width=stack.width)


@dataclass(frozen=True, eq=False)
class LayerSnapshot:
    """A layer's properties and references to (not copies of) its arrays."""

    layer: Layer
    pixels: np.ndarray
    alpha: np.ndarray | None
    properties: tuple[str, float, bool, str]

    @classmethod
    def of(cls, layer: Layer) -> LayerSnapshot:
        return cls(layer, layer.pixels, layer.alpha, (layer.name, layer.opacity, layer.visible, layer.blend_mode))

    def same_pixels(self, other: LayerSnapshot) -> bool:
        return self.pixels is other.pixels and self.alpha is other.alpha


@dataclass(frozen=True, eq=False)
class StackSnapshot:
    height: int
    width: int
    active_index: int
    layers: tuple[LayerSnapshot, ...]

    @classmethod
    def of(cls, document: Document) -> StackSnapshot:
        return cls(
            document.height,
            document.width,
            document.active_index,
            tuple(LayerSnapshot.of(layer) for layer in document.layers),
        )

    def restore_into(self, document: Document) -> None:
        layers = []
        for snapshot in self.layers:
            layer = snapshot.layer
            layer.pixels, layer.alpha = snapshot.pixels, snapshot.alpha
            layer.name, layer.opacity, layer.visible, layer.blend_mode = snapshot.properties
            layers.append(layer)
        document.replace_layers(layers, self.active_index, height=self.height, width=self.width)


def stack_change(
    before: StackSnapshot,
    after: StackSnapshot,
    restored_layer_id: str | None = None,
    restoration: StoredRestoration | None = None,
) -> StackChange | None:
    """What changed between two snapshots; None when nothing did."""
    before_by_id = {snapshot.layer.id: snapshot for snapshot in before.layers}
    after_by_id = {snapshot.layer.id: snapshot for snapshot in after.layers}
    kept = {
        layer_id
        for layer_id, snapshot in before_by_id.items()
        if layer_id in after_by_id and layer_id != restored_layer_id and snapshot.same_pixels(after_by_id[layer_id])
    }
    unchanged = (
        (before.height, before.width, before.active_index) == (after.height, after.width, after.active_index)
        and [s.layer.id for s in before.layers] == [s.layer.id for s in after.layers]
        and all(s.properties == after_by_id[s.layer.id].properties for s in before.layers)
        and len(kept) == len(before.layers)
    )
    if unchanged and restoration is None:
        return None

    def stored(stack: StackSnapshot, computed: str | None) -> StoredStack:
        layers = []
        for snapshot in stack.layers:
            layer_id = snapshot.layer.id
            name, opacity, visible, blend_mode = snapshot.properties
            if layer_id in kept:
                layers.append(StoredLayer(layer_id, name, opacity, visible, blend_mode, kept=True))
                continue
            pixels = None if layer_id == computed else encode(snapshot.pixels)
            alpha = None if snapshot.alpha is None else encode(snapshot.alpha)
            layers.append(StoredLayer(layer_id, name, opacity, visible, blend_mode, False, pixels, alpha))
        return StoredStack(stack.height, stack.width, stack.active_index, tuple(layers))

    return StackChange(stored(before, None), stored(after, restored_layer_id), restored_layer_id, restoration)
