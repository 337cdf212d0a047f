"""Project files store each distinct pixel array once (format 2) and still open format 1 files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from instructir_desktop.core.document import Document
from instructir_desktop.history import FORMAT_VERSION, History, Restoration, read_project, save_project


def whole_photo_session(steps: int = 3, seed: int = 0) -> History:
    """A photo and ``steps`` restorations of all of it at full strength, each from the last result."""
    rng = np.random.default_rng(seed)
    photo = (np.round(rng.random((40, 56, 3)) * 255) / 255).astype(np.float32)
    history = History(Document.from_image(photo))
    for number in range(steps):
        layer = history.document.active_layer
        restored = np.clip(layer.pixels * (0.9 - 0.1 * number) + 0.05 * rng.random(layer.pixels.shape), 0, 1)
        history.push_restoration(
            layer.id, history.document.bounds, Restoration(layer.pixels.copy(), restored), label=f"step {number}"
        )
    return history


def blob_uses(manifest: object) -> list[str]:
    uses: list[str] = []
    if isinstance(manifest, dict):
        if "entry" in manifest and "chunks" in manifest:
            uses.append(manifest["entry"])
        for value in manifest.values():
            uses += blob_uses(value)
    elif isinstance(manifest, list):
        for value in manifest:
            uses += blob_uses(value)
    return uses


def test_each_distinct_array_is_written_once_and_the_history_comes_back_whole(tmp_path: Path) -> None:
    history = whole_photo_session(3)
    states = [history.image_at(index).rgb for index in range(4)]
    path = tmp_path / "session.irproject"
    save_project(path, history)
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        entries = [name for name in archive.namelist() if name.startswith("blobs/")]
    uses = blob_uses(manifest)
    # The photo, then three results: each step's "before" is the previous result, and the layer
    # is the last one; each of the four arrays is one entry, named by every use.
    assert manifest["version"] == FORMAT_VERSION == 2
    assert len(entries) == 4 and len(uses) == 7 and set(uses) == set(entries)

    reopened = read_project(path).history
    assert len(reopened) == 3 and reopened.index == 3
    for index, expected in enumerate(states):
        np.testing.assert_array_equal(reopened.image_at(index).rgb, expected)
    reopened.undo()
    np.testing.assert_array_equal(reopened.document.flatten().rgb, states[2])


def as_format_1(path: Path, target: Path) -> None:
    """Rewrite a project the way format 1 stored it: every use of a blob its own entry."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        files = {name: archive.read(name) for name in archive.namelist()}
    copies: dict[str, bytes] = {}

    def separate(node: object) -> None:
        if isinstance(node, dict):
            if "entry" in node and "chunks" in node:
                name = f"blobs/{len(copies) + 1:06d}.v1"
                copies[name] = files[node["entry"]]
                node["entry"] = name
            for value in node.values():
                separate(value)
        elif isinstance(node, list):
            for value in node:
                separate(value)

    separate(manifest)
    manifest["version"] = 1
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files.items():
            if name != "manifest.json" and not name.startswith("blobs/"):
                archive.writestr(name, data)
        for name, data in copies.items():
            archive.writestr(name, data)
        archive.writestr("manifest.json", json.dumps(manifest))


def test_a_format_1_project_still_opens_and_is_larger(tmp_path: Path) -> None:
    history = whole_photo_session(3, seed=1)
    states = [history.image_at(index).rgb for index in range(4)]
    current = tmp_path / "new.irproject"
    save_project(current, history)
    old = tmp_path / "old.irproject"
    as_format_1(current, old)
    assert old.stat().st_size > current.stat().st_size * 1.5

    reopened = read_project(old).history
    for index, expected in enumerate(states):
        np.testing.assert_array_equal(reopened.image_at(index).rgb, expected)


def test_a_step_holds_the_step_befores_result_once_in_memory_too() -> None:
    history = whole_photo_session(3, seed=2)
    first, second, third = (step.change for step in history.steps)
    assert second.before is first.restoration.restored and third.before is second.restoration.restored
    arrays = [first.before, first.restoration.restored, second.restoration.restored, third.restoration.restored]
    thumbnails = sum(step.thumbnail.nbytes for step in history.steps)
    assert history.memory_used == sum(array.nbytes for array in arrays) + thumbnails
    # The cap counts what dropping a step frees: the first step's "before" only (its result is the
    # second step's "before", still needed).
    history.memory_limit = history.memory_used - 1
    assert [step.kept for step in history.steps] == [False, True, True]
    assert history.memory_used == sum(array.nbytes for array in arrays[1:]) + thumbnails
