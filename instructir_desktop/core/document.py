"""The document: an ordered stack of layers over one canvas size, and how it flattens to one image.

Layers are ordered bottom (index 0) to top. Pixels are float32 (H, W, 3) in [0, 1] with straight
(not premultiplied) colour; an optional (H, W) alpha plane and a layer opacity say how much of a
layer covers the ones below.

The layer operations here never write into an existing pixel array: they build new arrays or move
whole layers. Edits to pixels in place go through the history (or are followed by ``touch()``), so
the history can tell what a stack operation changed by comparing array identity.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from instructir_desktop.core.compositing import to_uint8
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.selection import Selection

BLEND_MODES = ("normal",)
THUMBNAIL_SIDE = 160
# Flattening works through horizontal bands of about this many pixels: the scratch arrays stay in
# the processor's cache and the extra memory stays a few MB, whatever the photo's size.
_BAND_PIXELS = 1 << 18
# Thumbnails average this many samples per side of each thumbnail pixel (cheap, and far less
# aliased than picking one pixel).
_THUMBNAIL_SAMPLES = 4


def new_layer_id() -> str:
    return uuid.uuid4().hex


def _pixel_array(values: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``values`` as a float32 array of ``shape``, copied only when it must be.

    A read-only array is kept as it is: it is shared with a snapshot (``Layer.freeze``), and
    whoever writes into the layer next writes into a copy (``Layer.writable_pixels``).
    """
    array = np.asarray(values, dtype=np.float32)
    if array.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {array.shape}")
    return array


def _frozen(array: np.ndarray) -> np.ndarray:
    """``array`` itself made read-only when it owns its memory (else a read-only copy that does)."""
    if not array.flags.owndata:
        array = array.copy()  # a view: its base could still be written through
    array.flags.writeable = False
    return array


@dataclass(eq=False)
class Layer:
    """One layer: colour, optional alpha, and how it is mixed into the layers below.

    The layer holds the arrays it is given, without copying them when they already are float32
    (a 24 MP layer is 288 MB): hand it arrays it may own. Read-only arrays are shared with a
    snapshot (``freeze``); writes in place go through ``writable_pixels``/``writable_alpha``,
    which copy them first.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    name: str = "Layer"
    opacity: float = 1.0
    visible: bool = True
    blend_mode: str = "normal"
    id: str = field(default_factory=new_layer_id)

    def __post_init__(self) -> None:
        pixels = np.asarray(self.pixels)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"layer pixels must be H×W×3, got {pixels.shape}")
        self.pixels = _pixel_array(pixels, pixels.shape, "layer pixels")
        if self.alpha is not None:
            self.alpha = _pixel_array(self.alpha, pixels.shape[:2], "a layer's alpha")
        if not 0.0 <= float(self.opacity) <= 1.0:
            raise ValueError(f"opacity must be between 0 and 1, got {self.opacity}")
        self.opacity = float(self.opacity)
        if self.blend_mode not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {self.blend_mode!r}; known: {', '.join(BLEND_MODES)}")

    @classmethod
    def transparent(cls, height: int, width: int, name: str = "Layer") -> Layer:
        return cls(
            np.zeros((height, width, 3), dtype=np.float32), np.zeros((height, width), dtype=np.float32), name=name
        )

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def opaque(self) -> bool:
        """True when this layer, shown, hides everything below it."""
        return self.visible and self.alpha is None and self.opacity >= 1.0

    def with_content(self, pixels: np.ndarray, alpha: np.ndarray | None, *, new_id: bool = False) -> Layer:
        """This layer (name, opacity, visibility, mode, id) holding other pixel arrays."""
        return Layer(
            pixels,
            alpha,
            name=self.name,
            opacity=self.opacity,
            visible=self.visible,
            blend_mode=self.blend_mode,
            id=new_layer_id() if new_id else self.id,
        )

    def freeze(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The layer's pixels and alpha as arrays that will never change, at no cost.

        A worker can read them while the person goes on editing: the arrays become read-only,
        and the next write into this layer writes into a copy instead (copy-on-write).
        """
        self.pixels = _frozen(self.pixels)
        if self.alpha is not None:
            self.alpha = _frozen(self.alpha)
        return self.pixels, self.alpha

    def writable_pixels(self) -> np.ndarray:
        """The pixel array, to write into in place (a private copy first if a snapshot shares it)."""
        if not self.pixels.flags.writeable:
            self.pixels = self.pixels.copy()
        return self.pixels

    def writable_alpha(self) -> np.ndarray:
        if self.alpha is None:
            raise ValueError(f"layer {self.name!r} has no alpha plane")
        if not self.alpha.flags.writeable:
            self.alpha = self.alpha.copy()
        return self.alpha

    def copy(self, *, new_id: bool = False) -> Layer:
        """A copy with its own pixel arrays (and a fresh id when asked)."""
        alpha = None if self.alpha is None else self.alpha.copy()
        return self.with_content(self.pixels.copy(), alpha, new_id=new_id)


class Flattened(NamedTuple):
    """A flattened image: straight RGB (H, W, 3) and coverage (H, W), or None where fully opaque."""

    rgb: np.ndarray
    alpha: np.ndarray | None


class Document:
    """An ordered stack of same-sized layers, the active layer, and the current selection."""

    def __init__(self, height: int, width: int, layers: Iterable[Layer] = (), active_index: int | None = None) -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"a document needs a positive size, got {height}×{width}")
        self._height = int(height)
        self._width = int(width)
        self._layers: list[Layer] = []
        self._active = 0
        self._selection: Selection | None = None
        # Bumped by every change to the layers (pixels, stack, properties), so a result computed from
        # an older state can be recognised as stale and the display knows when to reconvert. Choosing
        # a selection or another active layer changes neither, so it does not move.
        self.revision = 0
        self.replace_layers(layers, active_index, height=height, width=width)

    @classmethod
    def from_image(cls, pixels: np.ndarray, alpha: np.ndarray | None = None, name: str = "Background") -> Document:
        layer = Layer(pixels, alpha, name=name)
        return cls(layer.height, layer.width, [layer])

    # ------------------------------------------------------------------ size, layers, selection

    @property
    def height(self) -> int:
        return self._height

    @property
    def width(self) -> int:
        return self._width

    @property
    def size(self) -> tuple[int, int]:
        """(height, width), in numpy's order."""
        return self._height, self._width

    @property
    def bounds(self) -> Bounds:
        return Bounds.of_image(self._height, self._width)

    @property
    def layers(self) -> tuple[Layer, ...]:
        """Bottom to top. Change the stack through the methods, so sizes and ids stay checked."""
        return tuple(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    @property
    def active_index(self) -> int:
        return self._active

    @active_index.setter
    def active_index(self, index: int) -> None:
        self._active = self._checked_index(index)

    @property
    def active_layer(self) -> Layer:
        return self._layers[self._active]

    def index_of(self, layer_id: str) -> int:
        for index, layer in enumerate(self._layers):
            if layer.id == layer_id:
                return index
        raise KeyError(f"no layer with id {layer_id!r}")

    def layer(self, layer_id: str) -> Layer:
        return self._layers[self.index_of(layer_id)]

    @property
    def selection(self) -> Selection | None:
        return self._selection

    @selection.setter
    def selection(self, selection: Selection | None) -> None:
        if selection is not None and (selection.height, selection.width) != self.size:
            raise ValueError(f"the selection is {selection.height}×{selection.width}, the document {self.size}")
        self._selection = selection

    def touch(self) -> None:
        """Record that something changed (call after writing into a layer's pixels directly)."""
        self.revision += 1

    # ------------------------------------------------------------------ layer operations

    def add_layer(self, layer: Layer | None = None, index: int | None = None, name: str | None = None) -> Layer:
        """Insert ``layer`` (default: a new transparent one) at ``index`` (default: above the active
        layer) and make it active."""
        if layer is None:
            layer = Layer.transparent(self._height, self._width, name or f"Layer {len(self._layers) + 1}")
        elif name is not None:
            layer.name = name
        self._check_layer(layer)
        if any(existing.id == layer.id for existing in self._layers):
            raise ValueError(f"the document already has a layer with id {layer.id!r}")
        position = self._active + 1 if index is None else index
        if not 0 <= position <= len(self._layers):
            raise IndexError(f"layer position {position} is outside 0..{len(self._layers)}")
        self._layers.insert(position, layer)
        self._active = position
        self.touch()
        return layer

    def remove_layer(self, index: int) -> Layer:
        """Take a layer out; the active layer stays the same one, or the next one down."""
        index = self._checked_index(index)
        if len(self._layers) == 1:
            raise ValueError("a document keeps at least one layer")
        removed = self._layers.pop(index)
        if index < self._active or self._active >= len(self._layers):
            self._active -= 1
        self.touch()
        return removed

    def move_layer(self, from_index: int, to_index: int) -> None:
        """Move a layer to another position in the stack; the active layer stays the same one."""
        from_index = self._checked_index(from_index)
        to_index = self._checked_index(to_index)
        if from_index == to_index:
            return
        active = self._layers[self._active]
        self._layers.insert(to_index, self._layers.pop(from_index))
        self._active = self._layers.index(active)
        self.touch()

    def duplicate_layer(self, index: int) -> Layer:
        """A copy of a layer placed just above it, made active."""
        source = self._layers[self._checked_index(index)]
        copy = source.copy(new_id=True)
        copy.name = f"{source.name} copy"
        return self.add_layer(copy, index + 1)

    def merge_down(self, index: int) -> Layer:
        """Merge a layer into the one below, as they look now: the document's appearance is unchanged.

        The merged layer keeps the lower layer's id and name, with opacity and visibility baked into
        its pixels and alpha (so it is visible, at full opacity).
        """
        index = self._checked_index(index)
        if index == 0:
            raise ValueError("the bottom layer has no layer below to merge into")
        lower, upper = self._layers[index - 1], self._layers[index]
        rgb, alpha = _flatten_layers([lower, upper], self.bounds)
        merged = Layer(rgb, alpha, name=lower.name, id=lower.id)
        self._layers[index - 1 : index + 1] = [merged]
        if self._active >= index:
            self._active -= 1
        self.touch()
        return merged

    def replace_layers(
        self,
        layers: Iterable[Layer],
        active_index: int | None = None,
        *,
        height: int | None = None,
        width: int | None = None,
    ) -> None:
        """Replace the whole stack, for example with every layer resized after an upscale.

        The new size is the layers' (all must agree); ``height``/``width`` are only needed for an
        empty stack. A selection of another size is dropped.
        """
        stack = list(layers)
        if stack:
            height, width = stack[0].height, stack[0].width
        if height is None or width is None:
            raise ValueError("an empty layer stack needs an explicit size")
        ids = [layer.id for layer in stack]
        if len(set(ids)) != len(ids):
            raise ValueError("layer ids must be unique")
        for layer in stack:
            if (layer.height, layer.width) != (height, width):
                raise ValueError(f"layer {layer.name!r} is {layer.height}×{layer.width}, not {height}×{width}")
            self._check_blend_mode(layer)
        active = len(stack) - 1 if active_index is None else active_index
        if stack and not 0 <= active < len(stack):
            raise IndexError(f"active layer {active} is outside 0..{len(stack) - 1}")
        self._height, self._width = int(height), int(width)
        self._layers = stack
        self._active = max(0, active)
        if self._selection is not None and (self._selection.height, self._selection.width) != self.size:
            self._selection = None
        self.touch()

    def copy(self) -> Document:
        """A deep copy: every layer gets its own pixel arrays."""
        twin = Document(self._height, self._width, [layer.copy() for layer in self._layers], self._active)
        twin._selection = self._selection  # selections are immutable
        twin.revision = self.revision
        return twin

    def frozen_copy(self) -> Document:
        """A copy that shares the layers' arrays instead of copying them, for another thread to read.

        The arrays become read-only (``Layer.freeze``), so neither document can change the other's
        pixels: whichever writes into a layer first writes into a copy of its own.
        """
        for layer in self._layers:
            layer.freeze()
        return self.shared_copy()

    def shared_copy(self) -> Document:
        """A copy whose layers hold this document's very arrays: the stack, names and opacities
        are its own, the pixels are not (use ``frozen_copy`` unless torn reads are harmless)."""
        layers = [layer.with_content(layer.pixels, layer.alpha) for layer in self._layers]
        twin = Document(self._height, self._width, layers, self._active)
        twin._selection = self._selection
        twin.revision = self.revision
        return twin

    # ------------------------------------------------------------------ rendering

    def flatten(self, region: Bounds | None = None) -> Flattened:
        """The visible layers composited into one image (of ``region``, default all of it).

        Hidden layers and zero opacity contribute nothing; alpha and opacity mix "over" the layers
        below. The result is new float32 arrays; alpha is None when a shown layer without an alpha
        plane, at full opacity, covers everything (the usual photo), else the coverage (H, W).
        """
        area = self.bounds if region is None else region.intersect(self.bounds)
        return _flatten_layers(self._layers, area)

    def thumbnail(self, max_side: int = THUMBNAIL_SIDE) -> np.ndarray:
        """A small uint8 RGBA (h, w, 4) picture of the document, longest side at most ``max_side``."""
        scale = min(1.0, max_side / max(self._height, self._width))
        out_h, out_w = max(1, round(self._height * scale)), max(1, round(self._width * scale))
        if scale >= 1.0:
            rgb, alpha = self.flatten()
            coverage = np.ones((out_h, out_w), np.float32) if alpha is None else alpha
            return to_uint8(np.concatenate([rgb, coverage[..., None]], axis=2))
        # Sample a grid a few times finer than the thumbnail, composite only those samples, then
        # average blocks of samples (weighted by coverage, so transparent samples add no colour).
        samples = _THUMBNAIL_SAMPLES
        rows = ((np.arange(out_h * samples) + 0.5) * (self._height / (out_h * samples))).astype(np.intp)
        cols = ((np.arange(out_w * samples) + 0.5) * (self._width / (out_w * samples))).astype(np.intp)
        grid = np.ix_(rows, cols)
        sampled = [
            Layer(
                layer.pixels[grid],
                None if layer.alpha is None else layer.alpha[grid],
                opacity=layer.opacity,
                visible=layer.visible,
                id=layer.id,
            )
            for layer in self._layers
        ]
        rgb, alpha = _flatten_layers(sampled, Bounds.of_image(out_h * samples, out_w * samples))
        coverage = np.ones(rgb.shape[:2], np.float32) if alpha is None else alpha
        weighted = _block_mean(rgb * coverage[..., None], samples)
        mean_coverage = _block_mean(coverage, samples)
        colour = np.divide(
            weighted, mean_coverage[..., None], out=np.zeros_like(weighted), where=mean_coverage[..., None] > 0
        )
        return to_uint8(np.concatenate([colour, mean_coverage[..., None]], axis=2))

    # ------------------------------------------------------------------ checks

    def _checked_index(self, index: int) -> int:
        if not 0 <= index < len(self._layers):
            raise IndexError(f"layer index {index} is outside 0..{len(self._layers) - 1}")
        return index

    def _check_layer(self, layer: Layer) -> None:
        if (layer.height, layer.width) != self.size:
            raise ValueError(f"the layer is {layer.height}×{layer.width}, the document {self._height}×{self._width}")
        self._check_blend_mode(layer)

    @staticmethod
    def _check_blend_mode(layer: Layer) -> None:
        if layer.blend_mode not in BLEND_MODES:
            raise ValueError(f"unknown blend mode {layer.blend_mode!r}")


def _block_mean(values: np.ndarray, samples: int) -> np.ndarray:
    """Means of ``samples`` × ``samples`` blocks: (h·s, w·s, …) → (h, w, …).

    Summing rows of blocks first, then columns, keeps both reductions over nearly contiguous
    memory: several times faster than one ``mean`` over two strided axes.
    """
    height, width = values.shape[0] // samples, values.shape[1] // samples
    rest = values.shape[2:]
    rows = values.reshape(height, samples, width * samples, *rest).sum(axis=1)
    means: np.ndarray = rows.reshape(height, width, samples, *rest).sum(axis=2) / np.float32(samples * samples)
    return means


def _flatten_layers(layers: Sequence[Layer], area: Bounds) -> Flattened:
    """Composite ``layers`` (bottom to top) over ``area`` with the "over" operator.

    Colour accumulates premultiplied by coverage, so each layer is one lerp: ``acc += a·(src − acc)``.
    Below the topmost opaque layer nothing shows, so compositing starts there; when it exists the
    coverage is 1 everywhere and neither the coverage plane nor the final un-premultiply is needed.
    """
    height, width = area.height, area.width
    rgb = np.zeros((height, width, 3), dtype=np.float32)
    shown = [layer for layer in layers if layer.visible and layer.opacity > 0.0]
    start = max((i for i, layer in enumerate(shown) if layer.opaque), default=0)
    shown = shown[start:]
    opaque = bool(shown) and shown[0].opaque
    coverage = None if opaque else np.zeros((height, width), dtype=np.float32)
    if height == 0 or width == 0 or not shown:
        return Flattened(rgb, coverage)
    band = max(1, _BAND_PIXELS // width)
    scratch = np.empty((band, width, 3), dtype=np.float32)
    weight = np.empty((band, width), dtype=np.float32)
    uncovered = np.empty((band, width), dtype=np.float32)
    for top in range(0, height, band):
        bottom = min(height, top + band)
        count = bottom - top
        rows, cols = slice(area.y + top, area.y + bottom), slice(area.x, area.right)
        out = rgb[top:bottom]
        covered = None if coverage is None else coverage[top:bottom]
        for position, layer in enumerate(shown):
            source = layer.pixels[rows, cols]
            if position == 0 and opaque:
                out[...] = source
                continue
            amount: np.ndarray | float
            if layer.alpha is None:
                amount = layer.opacity
            else:
                amount = np.multiply(layer.alpha[rows, cols], np.float32(layer.opacity), out=weight[:count])
            delta = np.subtract(source, out, out=scratch[:count])
            delta *= amount[..., None] if isinstance(amount, np.ndarray) else np.float32(amount)
            out += delta
            if covered is not None:
                # coverage += a·(1 − coverage)
                gap = np.subtract(np.float32(1.0), covered, out=uncovered[:count])
                gap *= amount if isinstance(amount, np.ndarray) else np.float32(amount)
                covered += gap
        if covered is not None:
            np.divide(out, covered[..., None], out=out, where=covered[..., None] > 0)
            np.clip(out, 0.0, 1.0, out=out)
    return Flattened(rgb, coverage)
