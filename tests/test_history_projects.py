"""Project files: history, layers and selection saved and reopened exactly; damaged or newer files refused."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from history_builders import (
    GRID_STEP,
    H,
    W,
    assert_same_document,
    network_output,
    new_history,
    photo,
)

from instructir_desktop.core.document import Layer
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.history import (
    FORMAT_VERSION,
    History,
    ProjectError,
    Restoration,
    UnsupportedProjectVersion,
    load_project,
    save_project,
)

# ---------------------------------------------------------------------------------------------- project files


def build_project(tmp_path: Path) -> tuple[Path, History]:
    history = new_history()
    doc = history.document
    with history.record("Add layer"):
        doc.add_layer(Layer(photo(), np.full((H, W), 0.75, np.float32), name="Top", opacity=0.5))
    region = Bounds(3, 5, 16, 12)
    base = doc.layers[0]
    mask = np.zeros((region.height, region.width), np.float32)
    mask[2:10, 2:14] = 1.0
    restoration = Restoration(base.pixels[region.slices].copy(), network_output(12, 16), mask, 0.7)
    history.push_restoration(base.id, region, restoration, label="remove the noise", tasks=["denoise"], model_id="m1")
    history.push_patch(doc.layers[1].id, photo(6, 6), Bounds(30, 30, 6, 6), label="paint")
    history.undo()  # a redo branch to keep
    path = tmp_path / "photo.idproj"
    save_project(path, history)
    return path, history


def test_project_round_trip_keeps_the_history(tmp_path: Path) -> None:
    path, history = build_project(tmp_path)
    assert history.is_clean
    loaded = load_project(path)
    assert_same_document(loaded.document, history.document)
    assert loaded.index == history.index == 2 and len(loaded) == 3 and loaded.is_clean
    for got, want in zip(loaded.steps, history.steps, strict=True):
        assert (got.label, got.tasks, got.strength, got.seconds, got.model_id, got.created, got.kind) == (
            want.label,
            want.tasks,
            want.strength,
            want.seconds,
            want.model_id,
            want.created,
            want.kind,
        )
        np.testing.assert_array_equal(got.thumbnail, want.thumbnail)
    assert loaded.memory_used == history.memory_used
    # Undo, redo and re-blend work after reopening exactly as before saving.
    for each in (history, loaded):
        each.redo()
    assert_same_document(loaded.document, history.document)
    for each in (history, loaded):
        each.set_index(0)
    assert_same_document(loaded.document, history.document)
    for each in (history, loaded):
        each.set_index(2)
        each.set_strength(1, 0.25)
    assert_same_document(loaded.document, history.document)


def test_project_keeps_the_selection(tmp_path: Path) -> None:
    from instructir_desktop.core.selection import Selection

    history = new_history()
    selection = Selection.rectangle(H, W, Bounds(5, 7, 20, 12), feather_radius=2.5)
    history.document.selection = selection
    path = tmp_path / "selected.irproject"
    save_project(path, history)
    loaded = load_project(path).document.selection
    assert loaded is not None
    np.testing.assert_allclose(loaded.mask, selection.mask, atol=0.5 * GRID_STEP)  # feathered values kept

    history.document.selection = None
    save_project(path, history)
    assert load_project(path).document.selection is None

    # A project written before selections were kept has no such entry, and still opens.
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(entries["manifest.json"])
    del manifest["document"]["selection"]
    entries["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    assert load_project(path).document.selection is None


def test_project_keeps_dropped_steps_dropped(tmp_path: Path) -> None:
    history = new_history()
    layer_id = history.document.active_layer.id
    for number in range(3):
        history.push_patch(layer_id, network_output(20, 20), Bounds(number, number, 20, 20), label=f"{number}")
    first = history.steps[0].change
    assert first is not None
    history.memory_limit = history.memory_used - first.nbytes // 2
    assert [step.kept for step in history.steps] == [False, True, True]
    save_project(tmp_path / "p.zip", history)
    loaded = load_project(tmp_path / "p.zip")
    assert [step.kept for step in loaded.steps] == [False, True, True]
    assert loaded.oldest_index == 1
    loaded.set_index(1)
    np.testing.assert_array_equal(loaded.image_at(1).rgb, history.image_at(1).rgb)


def rewrite(path: Path, change: dict[str, bytes | None]) -> None:
    """Copy the zip with some entries replaced (bytes) or removed (None)."""
    with zipfile.ZipFile(path) as source:
        entries = {info.filename: source.read(info) for info in source.infolist()}
    for name, data in change.items():
        if data is None:
            entries.pop(name)
        else:
            entries[name] = data
    with zipfile.ZipFile(path, "w") as target:
        for name, data in entries.items():
            target.writestr(name, data)


def manifest_of(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("manifest.json"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m: m.update(version=FORMAT_VERSION + 1), "newer version"),
        (lambda m: m.update(format="something else"), "not an InstructIR Desktop project"),
        (lambda m: m.pop("history"), "history is missing"),
        (lambda m: m["document"].update(height="tall"), "document.height has the wrong type"),
        (lambda m: m["document"]["layers"][0]["pixels"].update(shape=[3, 3, 3]), r"document.layers\[0\].pixels"),
        (lambda m: m["history"]["steps"][1]["change"].update(bounds=[1, 2]), "bounds is not a rectangle"),
        (lambda m: m["history"]["steps"][1]["change"].update(type="magic"), "not a known kind"),
        (lambda m: m["history"]["steps"][0]["change"]["after"]["layers"][1].update(opacity=3), "opacity"),
        (lambda m: m["history"].update(index=9), "outside"),
        (lambda m: m["history"]["steps"][2]["change"]["before"].update(entry="blobs/none.bin"), "has no blobs"),
        (lambda m: m["history"]["steps"][2]["change"]["before"]["chunks"][0].__setitem__(1, 3), "description"),
    ],
)
def test_a_damaged_manifest_gives_a_clear_error(
    tmp_path: Path, damage: Callable[[dict[str, Any]], object], message: str
) -> None:
    path, _ = build_project(tmp_path)
    manifest = manifest_of(path)
    damage(manifest)
    rewrite(path, {"manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(ProjectError, match=message):
        load_project(path)


def test_a_newer_format_version_is_its_own_error(tmp_path: Path) -> None:
    path, _ = build_project(tmp_path)
    manifest = manifest_of(path)
    manifest["version"] = 99
    rewrite(path, {"manifest.json": json.dumps(manifest).encode()})
    with pytest.raises(UnsupportedProjectVersion) as caught:
        load_project(path)
    assert isinstance(caught.value, ValueError)


def test_corrupt_files_give_a_clear_error(tmp_path: Path) -> None:
    path, _ = build_project(tmp_path)
    good = path.read_bytes()

    not_a_zip = tmp_path / "not.zip"
    not_a_zip.write_bytes(b"hello, I am not a project")
    with pytest.raises(ProjectError, match="not a project file"):
        load_project(not_a_zip)

    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ProjectError):
        load_project(truncated)

    # Flip bytes inside a stored pixel blob: the zip's checksum catches it.
    with zipfile.ZipFile(path) as archive:
        blob = next(info for info in archive.infolist() if info.filename.startswith("blobs/"))
    flipped = bytearray(good)
    start = blob.header_offset + 30 + len(blob.filename) + len(blob.extra)
    flipped[start + 2] ^= 0xFF
    damaged = tmp_path / "flipped.zip"
    damaged.write_bytes(bytes(flipped))
    with pytest.raises(ProjectError, match="damaged"):
        load_project(damaged)

    missing = tmp_path / "missing.zip"
    missing.write_bytes(good)
    rewrite(missing, {"manifest.json": None})
    with pytest.raises(ProjectError, match=r"no manifest\.json"):
        load_project(missing)

    bad_json = tmp_path / "json.zip"
    bad_json.write_bytes(good)
    rewrite(bad_json, {"manifest.json": b"{not json"})
    with pytest.raises(ProjectError, match="not valid JSON"):
        load_project(bad_json)

    bad_thumbnail = tmp_path / "thumbnail.zip"
    bad_thumbnail.write_bytes(good)
    rewrite(bad_thumbnail, {manifest_of(path)["history"]["steps"][0]["thumbnail"]: b"\x93NUMPY garbage"})
    with pytest.raises(ProjectError, match="thumbnail"):
        load_project(bad_thumbnail)


def test_a_failed_save_leaves_the_old_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, history = build_project(tmp_path)
    good = path.read_bytes()
    history.push_patch(history.document.active_layer.id, photo(4, 4), Bounds(0, 0, 4, 4), label="more")

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("instructir_desktop.history.project.json.dumps", broken)
    with pytest.raises(OSError, match="disk full"):
        save_project(path, history)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert not history.is_clean
