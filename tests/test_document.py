"""The Qt-free document model: layers, flattening, layer operations, selections and masks."""

from __future__ import annotations

import numpy as np
import pytest

from instructir_desktop.core import compositing, document
from instructir_desktop.core.compositing import feather, rectangle_mask, stroke_mask
from instructir_desktop.core.document import Document, Flattened, Layer
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.selection import Selection

RNG = np.random.default_rng(20240612)
H, W = 24, 32


def colour(height: int = H, width: int = W) -> np.ndarray:
    return RNG.random((height, width, 3), dtype=np.float32)


def plane(height: int = H, width: int = W) -> np.ndarray:
    return RNG.random((height, width), dtype=np.float32)


def reference_over(layers: list[Layer]) -> tuple[np.ndarray, np.ndarray]:
    """Straight-alpha "over", bottom to top, written out the textbook way (float64)."""
    rgb = np.zeros((H, W, 3))
    alpha = np.zeros((H, W))
    for layer in layers:
        if not layer.visible:
            continue
        a = np.ones((H, W)) if layer.alpha is None else layer.alpha.astype(np.float64)
        a = a * layer.opacity
        out_alpha = a + alpha * (1 - a)
        premultiplied = layer.pixels * a[..., None] + rgb * (alpha * (1 - a))[..., None]
        rgb = np.divide(premultiplied, out_alpha[..., None], out=np.zeros_like(rgb), where=out_alpha[..., None] > 0)
        alpha = out_alpha
    return rgb, alpha


# ---------------------------------------------------------------------------------------------- layers


def test_layer_checks_its_arrays_and_properties() -> None:
    with pytest.raises(ValueError, match="H×W×3"):
        Layer(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="alpha"):
        Layer(np.zeros((4, 4, 3), np.float32), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="opacity"):
        Layer(np.zeros((4, 4, 3), np.float32), opacity=1.5)
    with pytest.raises(ValueError, match="blend mode"):
        Layer(np.zeros((4, 4, 3), np.float32), blend_mode="multiply")


def test_layer_keeps_float32_arrays_without_copying() -> None:
    pixels = colour()
    assert Layer(pixels).pixels is pixels
    frozen = colour()
    frozen.setflags(write=False)
    assert Layer(frozen).pixels is frozen  # shared with a snapshot: copied only when written
    assert Layer(pixels.astype(np.float64)).pixels.dtype == np.float32


def test_a_frozen_snapshot_never_changes_and_costs_no_copy() -> None:
    """A restore request shares the layer's arrays with the worker instead of copying 24 MP."""
    layer = Layer(colour(), np.full((24, 32), 0.5, np.float32))
    pixels_before, alpha_before = layer.pixels, layer.alpha
    snapshot_pixels, snapshot_alpha = layer.freeze()
    assert snapshot_pixels is pixels_before and snapshot_alpha is alpha_before
    assert not snapshot_pixels.flags.writeable and snapshot_pixels.flags.owndata
    kept = snapshot_pixels.copy()
    layer.writable_pixels()[0:4, 0:4] = 0.0  # the next edit copies first
    layer.writable_alpha()[0:4, 0:4] = 1.0
    np.testing.assert_array_equal(snapshot_pixels, kept)
    assert float(snapshot_alpha[0, 0]) == 0.5
    assert layer.pixels is not snapshot_pixels and float(layer.pixels[0, 0, 0]) == 0.0
    assert layer.writable_pixels() is layer.pixels  # a private copy is not copied again
    with pytest.raises(ValueError):
        snapshot_pixels[0, 0, 0] = 1.0
    # A view is frozen as a copy of its own, since its base could still be written through.
    base = colour()
    view_layer = Layer(base[:, :])
    frozen_view, _ = view_layer.freeze()
    base[...] = 0.0
    assert frozen_view.any()


# ---------------------------------------------------------------------------------------------- flatten


def test_flatten_of_one_opaque_layer_is_a_copy_of_its_pixels() -> None:
    pixels = colour()
    rgb, alpha = Document.from_image(pixels).flatten()
    np.testing.assert_array_equal(rgb, pixels)
    assert alpha is None
    assert not np.shares_memory(rgb, pixels)


def test_flatten_honours_opacity() -> None:
    bottom, top = colour(), colour()
    doc = Document(H, W, [Layer(bottom), Layer(top, opacity=0.25)])
    rgb, alpha = doc.flatten()
    np.testing.assert_allclose(rgb, bottom + 0.25 * (top - bottom), atol=1e-6)
    assert alpha is None


def test_flatten_honours_visibility() -> None:
    bottom, top = colour(), colour()
    doc = Document(H, W, [Layer(bottom), Layer(top, visible=False)])
    np.testing.assert_array_equal(doc.flatten().rgb, bottom)
    doc.layers[1].visible = True
    doc.layers[0].visible = False
    np.testing.assert_array_equal(doc.flatten().rgb, top)
    doc.layers[1].visible = False
    rgb, alpha = doc.flatten()
    assert alpha is not None and not alpha.any() and not rgb.any()


def test_flatten_honours_alpha_over_an_opaque_base() -> None:
    bottom, top, top_alpha = colour(), colour(), plane()
    doc = Document(H, W, [Layer(bottom), Layer(top, top_alpha, opacity=0.5)])
    rgb, alpha = doc.flatten()
    weight = (top_alpha * 0.5)[..., None]
    np.testing.assert_allclose(rgb, bottom + weight * (top - bottom), atol=1e-6)
    assert alpha is None


def test_flatten_of_transparent_layers_matches_straight_alpha_over() -> None:
    layers = [
        Layer(colour(), plane(), opacity=0.9),
        Layer(colour(), visible=False),
        Layer(colour(), plane() * (plane() > 0.3), opacity=0.6),
        Layer(colour(), plane()),
    ]
    rgb, alpha = Document(H, W, layers).flatten()
    expected_rgb, expected_alpha = reference_over(layers)
    assert alpha is not None
    np.testing.assert_allclose(alpha, expected_alpha, atol=1e-5)
    covered = expected_alpha > 1e-3
    np.testing.assert_allclose(rgb[covered], expected_rgb[covered], atol=1e-4)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0


def test_layers_below_an_opaque_layer_do_not_matter() -> None:
    top = colour()
    doc = Document(H, W, [Layer(colour(), plane()), Layer(colour()), Layer(top)])
    rgb, alpha = doc.flatten()
    np.testing.assert_array_equal(rgb, top)
    assert alpha is None


def test_flatten_of_a_region_is_that_crop_of_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    layers = [Layer(colour(), plane(), opacity=0.7), Layer(colour(), plane(), opacity=0.8)]
    doc = Document(H, W, layers)
    whole = doc.flatten()
    region = Bounds(5, 3, 20, 17)
    part = doc.flatten(region)
    assert whole.alpha is not None and part.alpha is not None
    np.testing.assert_array_equal(part.rgb, whole.rgb[region.slices])
    np.testing.assert_array_equal(part.alpha, whole.alpha[region.slices])
    # Working band by band (a few rows at a time) gives the same result as one band.
    monkeypatch.setattr(document, "_BAND_PIXELS", 3 * W + 5)
    banded = doc.flatten()
    assert banded.alpha is not None
    np.testing.assert_array_equal(banded.rgb, whole.rgb)
    np.testing.assert_array_equal(banded.alpha, whole.alpha)


def test_thumbnail_is_small_rgba_and_averages_colour() -> None:
    doc = Document.from_image(np.full((400, 1000, 3), (0.2, 0.4, 0.6), np.float32))
    thumb = doc.thumbnail()
    assert thumb.dtype == np.uint8 and thumb.shape == (64, 160, 4)
    np.testing.assert_array_equal(thumb[0, 0], [51, 102, 153, 255])
    small = Document.from_image(colour()).thumbnail()
    assert small.shape == (H, W, 4)
    half = Document(40, 400, [Layer(np.ones((40, 400, 3), np.float32), np.full((40, 400), 0.5, np.float32))])
    assert abs(int(half.thumbnail()[5, 5, 3]) - 128) <= 1


# ---------------------------------------------------------------------------------------------- layer operations


def test_add_layer_inserts_above_the_active_one_and_activates_it() -> None:
    doc = Document.from_image(colour())
    base = doc.active_layer
    revision = doc.revision
    added = doc.add_layer(name="Paint")
    assert doc.layers == (base, added) and doc.active_layer is added and added.name == "Paint"
    assert added.alpha is not None and not added.alpha.any()
    assert doc.revision > revision
    doc.active_index = 0
    middle = doc.add_layer()
    assert doc.layers == (base, middle, added) and doc.active_index == 1
    with pytest.raises(ValueError, match="already has"):
        doc.add_layer(middle)
    with pytest.raises(ValueError, match="the layer is"):
        doc.add_layer(Layer(colour(H + 1, W)))


def test_remove_layer_keeps_the_active_layer_and_at_least_one_layer() -> None:
    doc = Document(H, W, [Layer(colour()), Layer(colour()), Layer(colour())], active_index=2)
    top = doc.active_layer
    removed = doc.remove_layer(0)
    assert removed not in doc.layers and doc.active_layer is top
    doc.remove_layer(1)
    assert doc.active_index == 0 and len(doc) == 1
    with pytest.raises(ValueError, match="at least one"):
        doc.remove_layer(0)
    with pytest.raises(IndexError):
        doc.remove_layer(3)


def test_move_layer_keeps_the_active_layer() -> None:
    a, b, c = Layer(colour(), name="a"), Layer(colour(), name="b"), Layer(colour(), name="c")
    doc = Document(H, W, [a, b, c], active_index=0)
    doc.move_layer(0, 2)
    assert doc.layers == (b, c, a) and doc.active_layer is a
    doc.move_layer(1, 0)
    assert doc.layers == (c, b, a) and doc.active_layer is a


def test_duplicate_layer_copies_pixels_under_a_new_id() -> None:
    source = Layer(colour(), plane(), name="Photo", opacity=0.5)
    doc = Document(H, W, [source])
    twin = doc.duplicate_layer(0)
    assert doc.layers == (source, twin) and doc.active_layer is twin
    assert twin.id != source.id and twin.name == "Photo copy" and twin.opacity == 0.5
    np.testing.assert_array_equal(twin.pixels, source.pixels)
    assert twin.alpha is not None and source.alpha is not None
    assert not np.shares_memory(twin.pixels, source.pixels) and not np.shares_memory(twin.alpha, source.alpha)


def test_merge_down_keeps_the_look_and_the_lower_layer() -> None:
    lower = Layer(colour(), plane(), name="lower", opacity=0.8)
    upper = Layer(colour(), plane(), name="upper", opacity=0.6)
    doc = Document(H, W, [Layer(colour()), lower, upper], active_index=2)
    before = doc.flatten()
    merged = doc.merge_down(2)
    assert len(doc) == 2 and doc.active_layer is merged
    assert merged.id == lower.id and merged.name == "lower" and merged.opacity == 1.0 and merged.visible
    after = doc.flatten()
    np.testing.assert_allclose(after.rgb, before.rgb, atol=1e-5)
    with pytest.raises(ValueError, match="bottom"):
        doc.merge_down(0)


def test_merge_down_onto_an_opaque_layer_stays_opaque() -> None:
    doc = Document(H, W, [Layer(colour()), Layer(colour(), visible=False)])
    bottom = doc.layers[0].pixels.copy()
    merged = doc.merge_down(1)
    assert merged.alpha is None
    np.testing.assert_array_equal(merged.pixels, bottom)


def test_replace_layers_may_change_the_size() -> None:
    doc = Document.from_image(colour())
    doc.selection = Selection.everything(H, W)
    bigger = [Layer(colour(2 * H, 2 * W)), Layer(colour(2 * H, 2 * W))]
    doc.replace_layers(bigger, active_index=0)
    assert doc.size == (2 * H, 2 * W) and doc.active_layer is bigger[0]
    assert doc.selection is None
    with pytest.raises(ValueError, match="is "):
        doc.replace_layers([Layer(colour()), Layer(colour(H, W + 1))])
    same = Layer(colour())
    with pytest.raises(ValueError, match="unique"):
        doc.replace_layers([same, same])
    assert doc.size == (2 * H, 2 * W)


def test_copy_is_deep() -> None:
    doc = Document(H, W, [Layer(colour(), plane())])
    twin = doc.copy()
    twin.layers[0].pixels[0, 0] = 7.0
    assert twin.layers[0].id == doc.layers[0].id
    assert doc.layers[0].pixels[0, 0, 0] != 7.0


def test_flattened_is_a_named_pair() -> None:
    result = Document.from_image(colour()).flatten()
    assert isinstance(result, Flattened)
    rgb, alpha = result
    assert rgb.dtype == np.float32 and rgb.shape == (H, W, 3) and alpha is None


# ---------------------------------------------------------------------------------------------- selections and masks


def test_bounds_of_difference() -> None:
    before = colour()
    after = before.copy()
    assert Bounds.of_difference(before, after) is None
    after[3, 5, 1] += 0.1
    after[10, 20, 2] -= 0.1
    assert Bounds.of_difference(before, after) == Bounds(5, 3, 16, 8)
    with pytest.raises(ValueError):
        Bounds.of_difference(before, after[:-1])


def test_rectangle_selection_with_feather() -> None:
    box = Bounds(40, 30, 50, 40)
    hard = Selection.rectangle(100, 130, box)
    assert hard.bounds == box
    soft = Selection.rectangle(100, 130, box, feather_radius=8)
    mask = soft.mask
    assert mask.dtype == np.float32 and mask.min() >= 0.0 and mask.max() <= 1.0
    assert mask[50, 65] == pytest.approx(1.0)
    assert mask[0, 0] == 0.0 and mask[99, 129] == 0.0
    assert 0.2 < mask[50, 40] < 0.8  # the edge is soft...
    edge = soft.bounds
    assert edge is not None and edge.x < box.x and edge.right > box.right  # ...and reaches past the box
    with pytest.raises(ValueError):
        mask[0, 0] = 1.0  # read-only, so it can go to a worker as it is


def test_feather_of_a_small_mask_equals_feathering_the_whole_image() -> None:
    mask = rectangle_mask(90, 120, Bounds(30, 20, 25, 15))
    for radius in (1, 5, 12):
        np.testing.assert_array_equal(feather(mask, radius), compositing._feather_all(mask, max(1, round(radius / 2))))
    edge = rectangle_mask(40, 50, Bounds(0, 0, 10, 10))
    np.testing.assert_array_equal(feather(edge, 6), compositing._feather_all(edge, 3))
    assert not feather(np.zeros((10, 10), np.float32), 4).any()


def test_stroke_mask_follows_its_points() -> None:
    mask = stroke_mask(60, 80, [(10.0, 10.0), (70.0, 10.0), (70.0, 50.0)], radius=4)
    assert mask[10, 40] == 1.0 and mask[30, 70] == 1.0
    assert mask[12, 40] == 1.0
    assert mask[20, 40] == 0.0 and mask[40, 20] == 0.0
    assert mask[10, 3] == 0.0 and 0.0 < mask[10, 6] <= 1.0  # round cap of 4 px past the end, antialiased
    # Pixel centres within the radius: columns 6..73 (x from 10 - 4 to 70 + 4), rows 6..53.
    assert Bounds.from_mask(mask) == Bounds(6, 6, 68, 48)
    dab = stroke_mask(20, 20, [(10.0, 10.0)], radius=3)
    assert dab[10, 10] == 1.0 and dab[10, 14] == 0.0 and dab.sum() == pytest.approx(np.pi * 9, rel=0.15)
    assert not stroke_mask(20, 20, [], radius=3).any()
    assert not stroke_mask(20, 20, [(-50.0, -50.0)], radius=3).any()


def test_stroke_selection_is_feathered() -> None:
    hard = Selection.stroke(60, 80, [(10.0, 30.0), (70.0, 30.0)], radius=12)
    soft = Selection.stroke(60, 80, [(10.0, 30.0), (70.0, 30.0)], radius=12, feather_radius=4)
    assert soft.mask[30, 40] == pytest.approx(1.0, abs=1e-6)
    assert hard.mask[43, 40] == 0.0 and soft.mask[43, 40] > 0.0
    assert 0.0 < soft.mask[40, 40] < 1.0


def test_selection_combinations() -> None:
    left = Selection.rectangle(20, 20, Bounds(0, 0, 10, 20))
    top = Selection.rectangle(20, 20, Bounds(0, 0, 20, 10))
    assert left.union(top).bounds == Bounds(0, 0, 20, 20)
    assert left.intersection(top).bounds == Bounds(0, 0, 10, 10)
    assert left.subtract(top).bounds == Bounds(0, 10, 10, 10)
    assert left.inverted().bounds == Bounds(10, 0, 10, 20)
    assert Selection.nothing(20, 20).is_empty and Selection.nothing(20, 20).bounds is None
    assert not Selection.everything(20, 20).is_empty
    np.testing.assert_array_equal(left.crop(Bounds(8, 0, 4, 1)), [[1, 1, 0, 0]])
    assert Selection(np.full((2, 2), 3.0)).mask.max() == 1.0
    with pytest.raises(ValueError):
        left.union(Selection.everything(10, 10))
    doc = Document.from_image(colour())
    with pytest.raises(ValueError, match="selection"):
        doc.selection = left
    doc.selection = Selection.everything(H, W)
    assert doc.selection is not None


def test_choosing_a_selection_or_active_layer_does_not_make_running_results_stale() -> None:
    from instructir_desktop.core.geometry import Bounds
    from instructir_desktop.core.selection import Selection

    doc = Document.from_image(colour())
    doc.add_layer()
    revision = doc.revision
    height, width = doc.size
    doc.selection = Selection.rectangle(height, width, Bounds(x=0, y=0, width=2, height=2))
    doc.active_index = 0
    assert doc.revision == revision
    doc.add_layer()
    assert doc.revision > revision
