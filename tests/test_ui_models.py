"""The real window: Settings → Models (list, add from the dialog and by dropping a file, remove,
the model per task), and a chat step run again on another model from its chip, compared side by side
with the first result in the history."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from fake_engine import FakeEngine
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from test_editing_models import darkening_by_model
from test_ui_files import make_png, new_window

from instructir_desktop.editing.conversation import RunState
from instructir_desktop.model.store import STORE_FOLDER_ENV, ModelStore
from instructir_desktop.ui import compare_view
from tests.expert_fixtures import dncnn, save_checkpoint, span_x


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_FOLDER_ENV, str(tmp_path / "store"))
    return ModelStore()


def dropped(window, *paths) -> QDropEvent:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    event = QDropEvent(
        QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)
    return event


def added(qtbot, models_window, start) -> list[str]:
    """Start adding (``start()``), wait for the worker to finish, return the ids added."""
    with qtbot.waitSignal(models_window.added, timeout=20000) as blocker:
        start()
    return list(blocker.args[0].added)


def rows(models_window) -> list[str]:
    return [models_window.table.item(row, 0).text() for row in range(models_window.table.rowCount())]


def test_the_models_window_adds_drops_removes_and_chooses_per_task(qtbot, prefs, tmp_path, store):
    window = new_window(qtbot, prefs, tmp_path)
    window.menus.models_action.trigger()
    models = window.models_window
    assert models is not None and models.isVisible()
    assert len(rows(models)) == 1 and not models.remove_button.isEnabled()  # the built-in model only

    dn_path = save_checkpoint(dncnn(), tmp_path / "my-dncnn.pth")
    denoiser = added(qtbot, models, lambda: models.add_files([dn_path]))
    assert len(denoiser) == 1 and rows(models)[1] == "my-dncnn"
    assert "Added" in models.status.text()
    # Dropping a file on the window adds it too; a file that is not weights is not taken.
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    assert not dropped(models, notes).isAccepted()
    span_path = save_checkpoint(span_x(2), tmp_path / "span-x2.pth")
    events = []
    assert len(added(qtbot, models, lambda: events.append(dropped(models, span_path)))) == 1
    assert events[0].isAccepted()
    assert rows(models)[2] == "span-x2"
    assert models.table.item(2, 2).text() == "×2"
    # A damaged file: one sentence, nothing added.
    damaged = tmp_path / "broken.pth"
    damaged.write_bytes(b"\x00" * 300)
    assert added(qtbot, models, lambda: models.add_files([damaged])) == []
    assert "broken.pth" in models.status.text() and len(rows(models)) == 3

    models.choose_default("denoise", denoiser[0])
    assert store.default_for("denoise").id == denoiser[0]
    assert models.table.item(1, 4).text() == "Remove noise"
    upscale_choice = models.default_choices["upscale"]
    assert upscale_choice.count() == 2 and upscale_choice.itemData(0) == "bundled"  # built-in, the x2 network

    models.table.selectRow(1)
    assert models.remove_button.isEnabled()
    models.remove_button.click()
    assert rows(models) == [rows(models)[0], "span-x2"]
    assert store.default_for("denoise").id == "bundled"
    # A model file dropped on the editor's window opens this window and adds it.
    models.close()
    again = save_checkpoint(dncnn(), tmp_path / "again.safetensors")
    assert len(added(qtbot, models, lambda: dropped(window, again))) == 1
    assert models.isVisible() and rows(models)[-1] == "again"
    # Settings → Models opens the same window.
    models.close()
    settings = window.open_settings()
    settings.models_button.click()
    assert window.models_window is models and models.isVisible()
    models.close()
    settings.reject()


def test_a_chip_reruns_its_step_on_another_model_and_history_compares_them(qtbot, prefs, tmp_path, store, monkeypatch):
    expert = store.add(save_checkpoint(dncnn(), tmp_path / "dn.pth"), name="Tiny DnCNN")
    engine = FakeEngine()
    engine.restore = darkening_by_model(expert.id)
    window = new_window(qtbot, prefs, tmp_path, engine)
    assert window.open_path(make_png(tmp_path / "photo.png"))
    original = window.session.workspace.document.flatten().rgb.copy()

    window.chat.send_text("remove the noise")
    first = window.session.assistant.runs[-1]
    qtbot.waitUntil(lambda: first.ended, timeout=10000)
    assert first.state is RunState.DONE
    chip = window.chat.reply_for(first).chip_widgets[0]
    entries = [action.text() for action in chip.menu().actions() if str(action.data()).startswith("model:")]
    assert entries == [store.find("bundled").label, expert.label]
    assert expert.label not in chip.text()  # the built-in model ran it

    chip.choose_model(expert.id)
    again = window.session.assistant.runs[-1]
    assert again is not first
    qtbot.waitUntil(lambda: again.ended, timeout=10000)
    assert again.state is RunState.DONE
    document = window.session.workspace.document.flatten().rgb
    np.testing.assert_allclose(document, original * 0.25, atol=1e-4)  # from the same photo
    qtbot.waitUntil(lambda: bool(window.chat.reply_for(again).chip_widgets))
    assert expert.label in window.chat.reply_for(again).chip_widgets[0].text()
    history = window.session.workspace.history
    assert history.steps[-1].label == f"Remove noise on {expert.label}"
    rows_text = [window.history_panel.list.item(row).text() for row in range(window.history_panel.list.count())]
    assert f"on {expert.id}" in rows_text[-1]  # the history names the added model that ran it

    # The history compares the two models' results side by side.
    shown: list[np.ndarray] = []
    real = compare_view.flattened_pixmap
    monkeypatch.setattr(compare_view, "flattened_pixmap", lambda image: shown.append(image.rgb) or real(image))
    panel = window.history_panel
    panel.choose_compare(1, panel.right_choice.count() - 1)
    panel.compare_button.click()
    assert window.canvas.comparing and "Alternative" in window.compare_view.right_label.text()
    np.testing.assert_allclose(shown[0], original * 0.25, atol=1e-4)
    np.testing.assert_allclose(shown[1], original * 0.5, atol=1e-4)
    panel.compare_button.click()
