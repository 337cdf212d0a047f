"""The undo history: compact exact steps, undo/redo/jumps, re-blending, the memory cap, project files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from history_builders import (
    GRID_STEP,
    RNG,
    H,
    W,
    assert_same_document,
    network_output,
    new_history,
    photo,
)

from instructir_desktop.core.compositing import blend, composite
from instructir_desktop.core.document import Document, Layer
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.history import (
    History,
    HistoryError,
    Restoration,
    codec,
    load_project,
    prepare_restoration,
    save_project,
)
from instructir_desktop.history.codec import decode, encode, snap

# ---------------------------------------------------------------------------------------------- codec


def test_codec_is_exact_and_uses_the_narrowest_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "_CHUNK_VALUES", 500)  # several chunks, coded on threads
    eight_bit = photo()
    sixteen_bit = np.divide(RNG.integers(0, 65536, (H, W), dtype=np.uint16), np.float32(65535), dtype=np.float32)
    arbitrary = network_output(H, W) * 1.5 - 0.25  # off the grid and outside [0, 1]
    for values, expected in ((eight_bit, "u8"), (sixteen_bit, "u16dz"), (arbitrary, "f32")):
        stored = encode(values)
        assert len(stored.chunks) > 1 and {name for name, _ in stored.chunks} == {expected}
        np.testing.assert_array_equal(decode(stored), values)
    # Noise does not compress: what is left is the width of each encoding, 1, 2 and 4 bytes a value.
    assert encode(eight_bit).nbytes < 1.1 * eight_bit.size
    assert encode(sixteen_bit).nbytes < 2.2 * sixteen_bit.size


def test_snap_moves_values_by_at_most_half_a_grid_step() -> None:
    values = network_output(H, W)
    snapped = snap(values)
    assert np.abs(snapped - values).max() <= 0.5 * GRID_STEP + 1e-9
    np.testing.assert_array_equal(snap(snapped), snapped)
    assert {name for name, _ in encode(snapped).chunks} == {"u16dz"}
    eight_bit = photo()
    np.testing.assert_array_equal(snap(eight_bit), eight_bit)  # 8-bit values already lie on the grid
    assert snap(np.array([np.nan, -1.0, 2.0], np.float32)).tolist() == [0.0, 0.0, 1.0]


def test_damaged_codec_data_raises_value_error() -> None:
    for stored in (encode(photo()), encode(snap(network_output(H, W)))):
        name, data = stored.chunks[0]
        for chunks in (((name, data[:-3]),), ((name, b"garbage"),), (("png", data),), ((name, data + b"xx"),), ()):
            with pytest.raises(ValueError, match="damaged"):
                decode(codec.EncodedArray(stored.shape, stored.rows_per_chunk, chunks))


def test_plain_zlib_16_bit_chunks_of_older_projects_still_decode() -> None:
    import zlib

    values = snap(network_output(H, W))
    words = np.round(values * 65535).astype("<u2")
    older = codec.EncodedArray(values.shape, H, (("u16", zlib.compress(words.tobytes(), 1)),))
    np.testing.assert_array_equal(decode(older), values)


# ---------------------------------------------------------------------------------------------- pixel steps


def test_patch_step_undoes_and_redoes_exactly() -> None:
    history = new_history()
    layer = history.document.active_layer
    original = layer.pixels.copy()
    region = Bounds(8, 4, 20, 12)
    new_pixels = network_output(region.height, region.width)
    step = history.push_patch(layer.id, new_pixels, region, label="paint", tasks=["brush"], seconds=0.5)
    assert step is not None and step.bounds == region and step.kind == "pixels"
    assert step.label == "paint" and step.tasks == ("brush",) and step.seconds == 0.5 and step.strength == 1.0
    applied = layer.pixels.copy()
    np.testing.assert_allclose(applied[region.slices], new_pixels, atol=0.5 * GRID_STEP)
    np.testing.assert_array_equal(np.delete(applied, np.s_[4:16], axis=0), np.delete(original, np.s_[4:16], axis=0))
    assert history.index == 1 and history.can_undo and not history.can_redo
    assert history.undo() is step
    np.testing.assert_array_equal(layer.pixels, original)
    assert history.redo() is step
    np.testing.assert_array_equal(layer.pixels, applied)


def test_patch_step_of_a_float_photo_is_exact_too() -> None:
    # A photo read from a floating-point file is on no grid: its "before" is kept as float32.
    pixels = network_output(H, W)
    history = History(Document.from_image(pixels.copy()))
    layer_id = history.document.active_layer.id
    history.push_patch(layer_id, photo(10, 10), Bounds(0, 0, 10, 10), label="paint")
    history.undo()
    np.testing.assert_array_equal(history.document.active_layer.pixels, pixels)


def test_patch_step_finds_the_changed_rectangle() -> None:
    history = new_history()
    layer = history.document.active_layer
    assert history.push_patch(layer.id, layer.pixels.copy(), label="nothing") is None
    assert len(history) == 0
    edited = layer.pixels.copy()
    edited[10:14, 30:41] = 0.5
    step = history.push_patch(layer.id, edited, label="fill")
    assert step is not None and step.bounds == Bounds(30, 10, 11, 4)
    with pytest.raises(ValueError, match="inside"):
        history.push_patch(layer.id, photo(4, 4), Bounds(W - 2, 0, 4, 4), label="outside")
    with pytest.raises(ValueError, match="no alpha"):
        history.push_patch(layer.id, photo(4, 4), Bounds(0, 0, 4, 4), alpha=np.ones((4, 4)), label="alpha")


def test_patch_step_restores_alpha() -> None:
    base = Layer(photo(), np.full((H, W), 0.5, np.float32))
    history = History(Document(H, W, [base]))
    alpha_before = base.alpha.copy() if base.alpha is not None else None
    region = Bounds(0, 0, 5, 5)
    history.push_patch(base.id, photo(5, 5), region, alpha=np.zeros((5, 5), np.float32), label="erase")
    assert base.alpha is not None and not base.alpha[region.slices].any()
    history.undo()
    np.testing.assert_array_equal(base.alpha, alpha_before)


def test_a_local_step_stores_only_its_patch() -> None:
    height, width = 256, 384
    history = new_history(height, width)
    layer = history.document.active_layer
    region = Bounds(100, 80, 40, 30)
    mask = np.zeros((region.height, region.width), np.float32)
    mask[5:25, 5:35] = 1.0
    original = layer.pixels[region.slices].copy()
    restoration = Restoration(original, network_output(region.height, region.width), mask, 0.8)
    step = history.push_restoration(layer.id, region, restoration, label="remove noise here")
    assert step.change is not None
    full_layer_bytes = layer.pixels.nbytes
    # The original is the layer's own pixels, so it is stored once (as "before").
    assert step.change.restoration is not None and step.change.restoration.original is None
    assert step.change.nbytes < full_layer_bytes / 20
    assert step.nbytes == step.change.nbytes + step.thumbnail.nbytes


def test_new_step_after_undo_ends_the_line_there() -> None:
    history = new_history()
    layer_id = history.document.active_layer.id
    for number in range(3):
        history.push_patch(layer_id, photo(4, 4), Bounds(number, 0, 4, 4), label=f"step {number}")
    history.undo()
    history.undo()
    assert history.index == 1 and len(history) == 3 and history.can_redo
    history.push_patch(layer_id, photo(4, 4), Bounds(20, 20, 4, 4), label="branch")
    assert [step.label for step in history.steps] == ["step 0", "branch"]
    assert not history.can_redo
    with pytest.raises(HistoryError):
        history.redo()
    # The undone steps are kept as an alternative (tests/test_history_branches.py).
    assert [[step.label for step in branch.steps] for branch in history.branches] == [["step 1", "step 2"]]


# ---------------------------------------------------------------------------------------------- re-blending


def test_set_strength_reblends_without_the_network() -> None:
    history = new_history()
    layer = history.document.active_layer
    region = Bounds(4, 6, 30, 20)
    original = layer.pixels[region.slices].copy()
    restored = network_output(region.height, region.width)
    mask = RNG.random((region.height, region.width), dtype=np.float32)
    history.push_restoration(layer.id, region, Restoration(original, restored, mask, 1.0), label="sharpen")
    history.set_strength(0, 0.3)
    expected = composite(original, blend(original, restored, 0.3), mask)
    np.testing.assert_allclose(layer.pixels[region.slices], expected, atol=2 * GRID_STEP)
    assert history.steps[0].strength == 0.3
    stored_mask = history.steps[0].mask()
    assert stored_mask is not None
    np.testing.assert_allclose(stored_mask, mask, atol=0.5 * GRID_STEP)

    # Exactly what pushing the restoration at that strength in the first place gives.
    direct = new_history()
    direct.document.active_layer.pixels[...] = history.state_at(0).active_layer.pixels
    direct_layer = direct.document.active_layer
    direct.push_restoration(direct_layer.id, region, Restoration(original, restored, mask, 0.3), label="sharpen")
    np.testing.assert_array_equal(direct_layer.pixels, layer.pixels)

    # Undo and redo keep the new strength.
    history.undo()
    np.testing.assert_array_equal(layer.pixels[region.slices], original)
    history.redo()
    np.testing.assert_array_equal(direct_layer.pixels, layer.pixels)


@pytest.mark.parametrize(
    ("whole", "give_layer"),
    [(True, False), (False, False), (False, True)],
    ids=["whole layer", "rectangle", "rectangle, new layer built on the worker"],
)
def test_a_restoration_prepared_on_another_thread_lands_like_a_direct_one(whole: bool, give_layer: bool) -> None:
    """The editor prepares a step on the engine's worker; the result must not differ in any way."""
    from concurrent.futures import ThreadPoolExecutor

    direct = new_history()
    prepared_history = History(direct.document.copy())
    region = Bounds.of_image(H, W) if whole else Bounds(4, 6, 30, 20)
    layer = prepared_history.document.active_layer
    snapshot = layer.pixels[region.slices].copy()  # what a request carries to the worker
    restored = network_output(region.height, region.width)
    mask = None if whole else RNG.random((region.height, region.width), dtype=np.float32)
    restoration = Restoration(snapshot, restored, mask, 0.8)
    revision = prepared_history.document.revision
    whole_layer = layer.pixels.copy() if give_layer else None
    with ThreadPoolExecutor(1) as worker:
        job = worker.submit(prepare_restoration, snapshot, restoration, layer=whole_layer, bounds=region)
        prepared = job.result()
    assert prepared_history.document.revision == revision  # preparing touched nothing

    direct_layer = direct.document.active_layer
    direct.push_restoration(direct_layer.id, region, restoration, label="denoise")
    prepared_history.push_prepared(layer.id, region, prepared, label="denoise")
    assert_same_document(prepared_history.document, direct.document)
    assert prepared_history.document.revision == revision + 1
    # A whole-layer result, or a layer built on the worker, is swapped in: no full-size copy here.
    assert (layer.pixels is prepared.pixels) == whole
    assert (layer.pixels is prepared.layer) == give_layer
    if give_layer:
        prepared_history.undo()
        np.testing.assert_array_equal(layer.pixels[region.slices], snapshot)
        prepared_history.redo()
        assert layer.pixels is prepared.layer  # swapped back, not rebuilt
        assert_same_document(prepared_history.document, direct.document)
    step = prepared_history.steps[0]
    assert step.can_reblend and step.strength == 0.8
    assert step.change is not None and step.change.nbytes == direct.steps[0].change.nbytes

    for history in (direct, prepared_history):
        history.set_strength(0, 0.25)
    assert_same_document(prepared_history.document, direct.document)
    prepared_history.undo()
    np.testing.assert_array_equal(prepared_history.document.active_layer.pixels[region.slices], snapshot)
    prepared_history.redo()
    assert_same_document(prepared_history.document, direct.document)


def test_undo_and_redo_of_the_latest_whole_photo_step_swap_arrays_and_stay_exact() -> None:
    """Undoing a 24 MP restoration must not decompress 24 MP: the array it replaced is kept."""
    history = new_history()
    layer = history.document.active_layer
    first = layer.pixels
    whole = Bounds.of_image(H, W)
    restoration = Restoration(first.copy(), network_output(H, W), None, 1.0)
    history.push_restoration(layer.id, whole, restoration, label="denoise")
    after = history.document.active_layer.pixels
    expected_before, expected_after = first.copy(), after.copy()

    assert history.state_at(0).active_layer.pixels is not first  # a copy never takes the kept array
    history.undo()
    assert history.document.active_layer.pixels is first  # swapped back, not decoded
    history.redo()
    assert history.document.active_layer.pixels is after
    np.testing.assert_array_equal(after, expected_after)
    history.set_strength(0, 0.5)
    half = history.document.active_layer.pixels.copy()
    history.undo()
    np.testing.assert_array_equal(history.document.active_layer.pixels, expected_before)
    history.redo()
    np.testing.assert_array_equal(history.document.active_layer.pixels, half)

    # A second step: only one full-size array is kept, and undoing past it decodes exactly.
    history.push_restoration(layer.id, whole, Restoration(half, network_output(H, W)), label="sharpen")
    kept = [s.change.swapped_out is not None for s in history.steps if s.change is not None]
    assert kept == [False, True]
    history.set_index(0)
    np.testing.assert_array_equal(history.document.active_layer.pixels, expected_before)
    history.set_index(1)
    np.testing.assert_array_equal(history.document.active_layer.pixels, half)


def test_a_snapshot_shares_pixels_but_never_sees_later_edits(tmp_path: Path) -> None:
    """What an autosave thread writes while the person goes on editing."""
    history = new_history()
    layer = history.document.active_layer
    region = Bounds(4, 6, 30, 20)
    history.push_restoration(
        layer.id, region, Restoration(layer.pixels[region.slices].copy(), network_output(20, 30)), label="denoise"
    )
    snapshot = history.snapshot()
    assert snapshot.document.active_layer.pixels is history.document.active_layer.pixels  # no copy
    frozen_pixels = snapshot.document.active_layer.pixels.copy()
    history.set_strength(0, 0.4)  # writes into the layer: into a copy of it
    history.push_restoration(
        layer.id, region, Restoration(layer.pixels[region.slices].copy(), network_output(20, 30)), label="x"
    )
    np.testing.assert_array_equal(snapshot.document.active_layer.pixels, frozen_pixels)
    assert len(snapshot) == 1 and snapshot.steps[0].change.restoration.strength == 1.0
    save_project(tmp_path / "snap.irproject", snapshot, mark_clean=False)
    np.testing.assert_array_equal(load_project(tmp_path / "snap.irproject").document.active_layer.pixels, frozen_pixels)


def test_a_save_that_finishes_later_marks_the_state_it_holds_clean() -> None:
    history = new_history()
    layer = history.document.active_layer
    for label in ("one", "two"):
        history.push_restoration(
            layer.id, Bounds(0, 0, 8, 8), Restoration(layer.pixels[:8, :8].copy(), network_output(8, 8)), label=label
        )
    state = history.saved_state()  # a save of "after two steps" starts
    history.undo()
    history.clean_after_save(state)
    assert not history.is_clean and history.clean_index == 2
    history.redo()
    assert history.is_clean
    # The saved state no longer exists (a new branch, or a re-blend): nothing is clean.
    state = history.saved_state()
    history.set_strength(1, 0.5)
    history.clean_after_save(state)
    assert history.clean_index == -1 and not history.is_clean
    history.set_clean(0)
    assert history.clean_index == 0
    with pytest.raises(IndexError):
        history.set_clean(5)


def test_a_prepared_restoration_must_fit_its_rectangle() -> None:
    history = new_history()
    layer = history.document.active_layer
    region = Bounds(0, 0, 10, 10)
    revision = history.document.revision
    prepared = prepare_restoration(
        layer.pixels[region.slices].copy(), Restoration(layer.pixels[region.slices], network_output(10, 10))
    )
    with pytest.raises(ValueError, match="expected"):
        history.push_prepared(layer.id, Bounds(0, 0, 12, 10), prepared, label="x")
    with pytest.raises(ValueError, match="inside the layer"):
        history.push_prepared(layer.id, Bounds(W - 5, 0, 10, 10), prepared, label="x")
    assert len(history) == 0 and history.document.revision == revision


def test_set_strength_only_for_the_latest_restoration() -> None:
    history = new_history()
    layer = history.document.active_layer
    region = Bounds(0, 0, 8, 8)
    restoration = Restoration(layer.pixels[region.slices].copy(), network_output(8, 8))
    history.push_restoration(layer.id, region, restoration, label="denoise")
    history.push_patch(layer.id, photo(4, 4), Bounds(20, 20, 4, 4), label="paint")
    with pytest.raises(HistoryError, match="latest"):
        history.set_strength(0, 0.5)
    with pytest.raises(HistoryError, match="cannot be re-blended"):
        history.set_strength(1, 0.5)
    history.undo()
    history.set_strength(0, 0.5)  # the latest applied one now; the undone paint step is discarded
    assert len(history) == 1 and history.steps[0].strength == 0.5
    with pytest.raises(ValueError):
        history.set_strength(0, 1.5)


# ---------------------------------------------------------------------------------------------- layer steps


def test_layer_operations_are_steps_that_undo_exactly() -> None:
    history = new_history()
    doc = history.document
    states = [doc.copy()]
    with history.record("Add layer"):
        added = doc.add_layer(name="Paint")
    states.append(doc.copy())
    history.push_patch(added.id, photo(10, 10), Bounds(5, 5, 10, 10), alpha=np.ones((10, 10)), label="paint")
    states.append(doc.copy())
    with history.record("Duplicate"):
        doc.duplicate_layer(0)
    states.append(doc.copy())
    with history.record("Layer properties"):
        doc.layers[2].opacity = 0.4
        doc.layers[2].name = "Paint, faded"
    states.append(doc.copy())
    with history.record("Move"):
        doc.move_layer(2, 0)
    states.append(doc.copy())
    with history.record("Merge down"):
        doc.merge_down(2)
    states.append(doc.copy())
    with history.record("Delete layer"):
        doc.remove_layer(0)
    states.append(doc.copy())
    assert [step.kind for step in history.steps] == ["layers", "pixels", *["layers"] * 5]
    for index in range(len(states) - 1, 0, -1):
        assert_same_document(doc, states[index])
        history.undo()
    assert_same_document(doc, states[0])
    for index in range(1, len(states)):
        history.redo()
        assert_same_document(doc, states[index])


def test_layers_a_step_did_not_touch_are_not_stored() -> None:
    history = new_history(200, 300)
    with history.record("Properties") as recording:
        history.document.active_layer.name = "Photo"
    step = recording.step
    assert step is not None and step.change is not None and step.change.nbytes == 0
    with history.record("Add layer") as recording:
        history.document.add_layer()
    assert recording.step is not None and recording.step.change is not None
    # The new, empty layer compresses to almost nothing; the untouched photo is not stored at all.
    assert recording.step.change.nbytes < 2_000
    with history.record("Nothing") as recording:
        pass
    assert recording.step is None and len(history) == 2


def test_a_failed_recording_puts_the_stack_back() -> None:
    history = new_history()
    doc = history.document
    before = doc.copy()
    with pytest.raises(RuntimeError, match="boom"), history.record("Broken"):
        doc.add_layer()
        doc.layers[0].opacity = 0.1
        raise RuntimeError("boom")
    assert_same_document(doc, before)
    assert len(history) == 0


def test_upscale_replaces_every_layer_and_can_be_reblended() -> None:
    history = new_history()
    doc = history.document
    with history.record("Add layer"):
        top = doc.add_layer(Layer(photo(), np.full((H, W), 0.5, np.float32), name="Top"))
    before = doc.copy()
    base = doc.layers[0]
    original = np.repeat(np.repeat(base.pixels, 2, axis=0), 2, axis=1)  # the caller resizes
    restored = network_output(2 * H, 2 * W)
    resized_top = Layer(
        np.repeat(np.repeat(top.pixels, 2, axis=0), 2, axis=1),
        np.full((2 * H, 2 * W), 0.5, np.float32),
        name="Top",
        id=top.id,
    )
    placeholder = Layer(np.zeros((2 * H, 2 * W, 3), np.float32), name=base.name, id=base.id)
    step = history.push_layers(
        [placeholder, resized_top],
        active_index=0,
        restoration=Restoration(original, restored, None, 0.6),
        restored_layer_id=base.id,
        label="upscale ×2",
        tasks=["upscale"],
    )
    assert step is not None and step.kind == "layers" and step.strength == 0.6 and step.can_reblend
    assert doc.size == (2 * H, 2 * W) and doc.active_index == 0
    np.testing.assert_allclose(doc.layers[0].pixels, blend(original, restored, 0.6), atol=2 * GRID_STEP)
    history.set_strength(1, 0.2)
    np.testing.assert_allclose(doc.layers[0].pixels, blend(original, restored, 0.2), atol=2 * GRID_STEP)
    after = doc.copy()
    history.undo()
    assert_same_document(doc, before)
    history.redo()
    assert_same_document(doc, after)


# ---------------------------------------------------------------------------------------------- jumps and comparing


def test_state_at_and_image_at_reconstruct_any_step_without_touching_the_document() -> None:
    history = new_history()
    doc = history.document
    images = [doc.flatten().rgb]
    layer_id = doc.active_layer.id
    for number in range(3):
        history.push_patch(layer_id, network_output(8, 8), Bounds(4 * number, 2 * number, 8, 8), label=f"{number}")
        images.append(doc.flatten().rgb)
    with history.record("Half transparent"):
        doc.active_layer.opacity = 0.5
    images.append(doc.flatten().rgb)
    history.undo()  # compare across the current position, both ways
    current, revision = doc.flatten().rgb, doc.revision
    for index, expected in enumerate(images):
        np.testing.assert_array_equal(history.image_at(index).rgb, expected)
    assert history.state_at(4).active_layer.opacity == 0.5
    np.testing.assert_array_equal(doc.flatten().rgb, current)
    assert doc.revision == revision and history.index == 3
    history.set_index(0)
    np.testing.assert_array_equal(doc.flatten().rgb, images[0])
    history.set_index(4)
    np.testing.assert_array_equal(doc.flatten().rgb, images[4])
    with pytest.raises(IndexError):
        history.state_at(6)


def test_clean_index_follows_saves_and_new_steps() -> None:
    history = new_history()
    layer_id = history.document.active_layer.id
    assert history.is_clean
    history.push_patch(layer_id, photo(4, 4), Bounds(0, 0, 4, 4), label="a")
    assert not history.is_clean
    history.set_clean()
    history.undo()
    assert not history.is_clean
    history.redo()
    assert history.is_clean
    history.undo()
    history.push_patch(layer_id, photo(4, 4), Bounds(8, 8, 4, 4), label="b")
    assert history.clean_index == -1 and not history.is_clean


# ---------------------------------------------------------------------------------------------- memory cap


def test_memory_cap_drops_the_oldest_steps() -> None:
    history = new_history(96, 128)
    doc = history.document
    layer_id = doc.active_layer.id
    change_sizes = []
    for number in range(6):
        step = history.push_patch(
            layer_id, network_output(40, 40), Bounds(2 * number, number, 40, 40), label=f"{number}"
        )
        assert step is not None and step.change is not None
        change_sizes.append(step.change.nbytes)
    assert all(step.kept for step in history.steps)
    total = history.memory_used
    assert total == sum(change_sizes) + sum(step.thumbnail.nbytes for step in history.steps)
    # Room for all but about one and a half changes (thumbnails stay, so they stay counted).
    limit = total - change_sizes[0] - change_sizes[1] // 2
    history.memory_limit = limit
    kept = [step.kept for step in history.steps]
    assert kept == [False, False, True, True, True, True]
    assert history.memory_used <= limit
    assert history.steps[0].kind == "dropped" and history.steps[0].thumbnail.size > 0
    assert history.oldest_index == 2
    for _ in range(4):
        history.undo()
    assert history.index == 2 and not history.can_undo
    with pytest.raises(HistoryError, match="dropped"):
        history.undo()
    with pytest.raises(HistoryError, match="dropped"):
        history.image_at(1)
    history.set_index(6)
    # New steps keep pushing the oldest kept ones out.
    history.push_patch(layer_id, network_output(40, 40), Bounds(50, 50, 40, 40), label="6")
    assert history.memory_used <= limit and not history.steps[2].kept and history.steps[-1].kept
