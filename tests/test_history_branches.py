"""Branching history: undoing and then doing something else keeps the undone steps as an
alternative to switch back to, compare against, save and reopen."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from instructir_desktop.core.document import Document
from instructir_desktop.core.geometry import Bounds
from instructir_desktop.history import History, HistoryError, PlannedTask, load_project, save_project

H, W = 16, 20


def flat_photo(value: float) -> np.ndarray:
    return np.full((H, W, 3), value, np.float32)


def painted(history: History, value: float, label: str, x: int = 0) -> None:
    """A step that paints a 4 × 4 square at ``x`` with ``value`` (exact on the 16-bit grid)."""
    layer_id = history.document.active_layer.id
    history.push_patch(layer_id, np.full((4, 4, 3), value, np.float32), Bounds(x, 0, 4, 4), label=label)


def square(history: History, x: int = 0) -> float:
    return float(history.document.flatten().rgb[1, x + 1, 0])


def labels(steps) -> list[str]:
    return [step.label for step in steps]


def two_branches() -> History:
    """Line: A (0.2) then B (0.4); undo B; C (0.6) → line A C, alternative B forking after 1 step."""
    history = History(Document.from_image(flat_photo(0.0)))
    painted(history, 0.2, "A")
    painted(history, 0.4, "B", x=8)
    history.undo()
    painted(history, 0.6, "C", x=8)
    return history


def test_the_undone_step_becomes_an_alternative_and_switching_brings_it_back() -> None:
    history = two_branches()
    assert labels(history.steps) == ["A", "C"] and square(history, 8) == pytest.approx(0.6, abs=1e-4)
    (branch,) = history.branches
    assert branch.fork == 1 and labels(branch.steps) == ["B"]

    history.switch_branch(0)
    assert labels(history.steps) == ["A", "B"] and history.index == 2
    assert square(history, 8) == pytest.approx(0.4, abs=1e-4)
    assert square(history, 0) == pytest.approx(0.2, abs=1e-4)  # the shared step stays applied
    (branch,) = history.branches
    assert labels(branch.steps) == ["C"]

    history.switch_branch(0)
    assert labels(history.steps) == ["A", "C"] and square(history, 8) == pytest.approx(0.6, abs=1e-4)


def test_an_alternative_can_be_compared_without_switching() -> None:
    history = two_branches()
    tip = history.tip_state(0)
    history.check_comparable(tip)
    alternative = history.image_at(tip).rgb
    assert alternative[1, 9, 0] == pytest.approx(0.4, abs=1e-4) and alternative[1, 1, 0] == pytest.approx(0.2, abs=1e-4)
    assert square(history, 8) == pytest.approx(0.6, abs=1e-4)  # the document is untouched
    assert history.image_at(0).rgb.max() == 0.0  # the line's own states still compare as before
    with pytest.raises(IndexError):
        history.tip_state(1)


def test_alternatives_nest_and_none_is_lost_while_switching() -> None:
    history = History(Document.from_image(flat_photo(0.0)))
    painted(history, 0.2, "A")
    painted(history, 0.4, "B", x=8)
    history.undo()
    painted(history, 0.6, "C", x=8)  # alternative [B] after 1
    history.set_index(0)
    painted(history, 0.8, "D")  # alternative [A, C] after 0, holding [B] after 1
    assert labels(history.steps) == ["D"]
    (outer,) = history.branches
    assert outer.fork == 0 and labels(outer.steps) == ["A", "C"]
    assert [labels(b.steps) for b in outer.branches] == [["B"]]

    history.switch_branch(0)  # back to A C; D becomes the alternative after 0, B after 1
    assert labels(history.steps) == ["A", "C"]
    assert sorted(labels(b.steps)[0] for b in history.branches) == ["B", "D"]
    b_number = next(n for n, b in enumerate(history.branches) if labels(b.steps) == ["B"])
    history.switch_branch(b_number)
    assert labels(history.steps) == ["A", "B"] and square(history, 8) == pytest.approx(0.4, abs=1e-4)
    every = set(labels(history.steps))
    for branch in history.branches:
        every |= set(labels(branch.all_steps()))
    assert every == {"A", "B", "C", "D"}


def test_switching_keeps_the_saved_state_with_its_branch() -> None:
    history = two_branches()
    history.set_clean()  # saved with A C
    history.switch_branch(0)
    assert not history.is_clean
    history.switch_branch(0)
    assert history.is_clean and history.index == 2


def test_a_reblend_forgets_the_alternatives_that_grew_from_the_old_strength() -> None:
    from instructir_desktop.history import Restoration

    history = History(Document.from_image(flat_photo(0.5)))
    layer = history.document.active_layer
    whole = Bounds.of_image(H, W)
    history.push_restoration(layer.id, whole, Restoration(layer.pixels.copy(), flat_photo(0.1)), label="R")
    painted(history, 0.9, "P")
    history.undo()
    painted(history, 0.3, "Q")  # alternative [P] after 1, grown from R at full strength
    history.undo()
    history.set_strength(0, 0.5)
    assert history.branches == ()


def test_alternatives_are_dropped_before_the_line_under_the_memory_cap() -> None:
    history = two_branches()
    used = history.memory_used
    history.memory_limit = used - 1
    assert history.branches == () and all(step.kept for step in history.steps)


def test_alternatives_and_plans_survive_saving_and_reopening(tmp_path: Path) -> None:
    history = two_branches()
    history.steps[1].plan = (
        PlannedTask("denoise", "remove the grain"),
        PlannedTask("upscale", "make it larger", 3, "3f1c0a9e"),
    )
    path = tmp_path / "branches.irproject"
    save_project(path, history)
    loaded = load_project(path)
    assert labels(loaded.steps) == ["A", "C"] and [labels(b.steps) for b in loaded.branches] == [["B"]]
    assert loaded.steps[1].plan == history.steps[1].plan
    loaded.switch_branch(0)
    assert square(loaded, 8) == pytest.approx(0.4, abs=1e-4) and labels(loaded.steps) == ["A", "B"]


def test_a_project_without_branches_still_opens(tmp_path: Path) -> None:
    history = two_branches()
    path = tmp_path / "old.irproject"
    save_project(path, history)
    old = tmp_path / "older.irproject"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(data)
                del manifest["history"]["branches"]  # as written before branches existed
                for step in manifest["history"]["steps"]:
                    del step["plan"]
                data = json.dumps(manifest).encode()
            target.writestr(info, data)
    loaded = load_project(old)
    assert labels(loaded.steps) == ["A", "C"] and loaded.branches == () and loaded.steps[0].plan == ()


def test_a_branch_forking_outside_the_line_is_refused_in_one_sentence(tmp_path: Path) -> None:
    from instructir_desktop.history import ProjectError

    history = two_branches()
    path = tmp_path / "bad.irproject"
    save_project(path, history)
    bad = tmp_path / "bad2.irproject"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(bad, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["history"]["branches"][0]["fork"] = 7
                data = json.dumps(manifest).encode()
            target.writestr(info, data)
    with pytest.raises(ProjectError, match="forks after step 7"):
        load_project(bad)


def test_an_alternative_whose_fork_was_dropped_cannot_be_shown() -> None:
    history = two_branches()
    history.steps[1].change = None  # dropped to save memory: the way back to the fork is gone
    with pytest.raises(HistoryError):
        history.switch_branch(0)
    assert labels(history.steps) == ["A", "C"]
