"""The editor's model choices, headless: a chat step run again on another model becomes a new step
from the same photo, the first result stays as an alternative, and the two can be compared."""

from __future__ import annotations

import numpy as np
import pytest
from editing_harness import Harness, make_photo
from fake_engine import FakeEngine, fake_restore

from instructir_desktop.editing.models import ModelChoiceError, ModelChoices
from instructir_desktop.editing.recipes import parse_recipe, recipe_from_history
from instructir_desktop.model.store import STORE_FOLDER_ENV, ModelStore
from instructir_desktop.model.tasks import TASKS
from tests.expert_fixtures import dncnn, save_checkpoint, span_x


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_FOLDER_ENV, str(tmp_path / "store"))
    return ModelStore()


def test_choices_list_add_default_remove_with_one_sentence_errors(store, tmp_path):
    choices = ModelChoices()
    assert [model.id for model in choices.models()] == ["bundled"]
    added = choices.add(save_checkpoint(dncnn(), tmp_path / "dn.pth"))
    assert [model.id for model in choices.for_task("denoise")] == ["bundled", added.id]
    assert [model.id for model in choices.for_task("upscale")] == ["bundled"]
    choices.set_default("denoise", added.id)
    assert store.default_for("denoise").id == added.id
    bad = tmp_path / "notes.pth"
    bad.write_bytes(b"not weights at all")
    with pytest.raises(ModelChoiceError, match="damaged or not a weights file"):
        choices.add(bad)
    with pytest.raises(ModelChoiceError, match="cannot be removed"):
        choices.remove("bundled")
    with pytest.raises(ModelChoiceError, match="does not do upscale"):
        choices.set_default("upscale", added.id)
    choices.remove(added.id)
    assert store.default_for("denoise").id == "bundled"
    assert choices.for_task("denoise")[0].default_for == TASKS


def darkening_by_model(model_id: str):
    """The fake model halves the photo; the step run on ``model_id`` quarters it instead."""

    def restore(request):
        if request.plan[0].model == model_id:
            return np.array(request.pixels, dtype=np.float32) * 0.25
        return fake_restore(request)

    return restore


def test_a_step_run_again_on_another_model_replaces_it_from_the_same_photo(store, tmp_path):
    expert = store.add(save_checkpoint(dncnn(), tmp_path / "dn.pth"))
    store.add(save_checkpoint(span_x(2), tmp_path / "up.pth"))
    engine = FakeEngine()
    engine.restore = darkening_by_model(expert.id)
    harness = Harness(engine)
    try:
        original = make_photo(tmp_path / "photo.png")
        assert harness.session.files.open(tmp_path / "photo.png", background=False)
        first = harness.send("remove the noise")
        assert first.reply.ran_plan[0].model is None  # the bundled model ran it
        options = harness.assistant.models.options(first.reply.ran_plan[0])
        assert [(o.model_id, o.ran) for o in options] == [("bundled", True), (expert.id, False)]
        np.testing.assert_allclose(harness.pixels(), original * 0.5, atol=1e-4)

        again = harness.assistant.rerun_on_model(first, 0, expert.id)
        assert again is not None
        harness.ended(again)
        assert again.reply.ran_plan[0].model == expert.id
        # From the same photo (a quarter of it), not from the first result (an eighth).
        np.testing.assert_allclose(harness.pixels(), original * 0.25, atol=1e-4)
        history = harness.workspace.history
        # A recipe saved now replays that step on the model chosen for it, through its file too.
        recipe = recipe_from_history(history).recipe
        assert [task.model for task in recipe.steps[0].tasks] == [expert.id]
        assert [step.model for step in parse_recipe(recipe.to_toml()).steps[0].plan()] == [expert.id]
        assert history.index == 1
        assert history.steps[0].label == f"Remove noise on {expert.label}"
        # The bundled model's result is an alternative: both ends can be compared.
        assert len(history.branches) == 1
        np.testing.assert_allclose(history.image_at(history.tip_state(0)).rgb, original * 0.5, atol=1e-4)
        np.testing.assert_allclose(history.image_at(1).rgb, original * 0.25, atol=1e-4)
        # Back on the bundled model: a third result, again from the same photo.
        back = harness.ended(harness.assistant.rerun_on_model(again, 0, "bundled"))
        assert back.reply.ran_plan[0].model == "bundled"
        np.testing.assert_allclose(harness.pixels(), original * 0.5, atol=1e-4)
    finally:
        harness.close()


def test_listing_the_models_does_not_import_torch(store):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from instructir_desktop.editing.models import ModelChoices\n"
        "models = ModelChoices().models()\n"
        "print(models[0].id, models[0].name != '', 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["bundled", "True", "False"]
