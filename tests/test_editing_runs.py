"""The assistant's decisions, headless: how a message, a command, a follow-up or a plugin action
runs, in turn, and what is applied or dropped. (The chat panel's tests only check that it draws
these runs and sends what the person does.)"""

from __future__ import annotations

import numpy as np
import pytest
from editing_harness import Harness, make_photo
from fake_engine import FakeEngine
from recording_host import RecordingHost

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.selection import Selection
from instructir_desktop.editing.conversation import RunState

DONE, CANCELLED, FAILED, NOTHING, STALE, WAITING = (
    RunState.DONE,
    RunState.CANCELLED,
    RunState.FAILED,
    RunState.NOTHING,
    RunState.STALE,
    RunState.WAITING,
)


@pytest.fixture
def opened(tmp_path):
    """A harness with a 24×32 photo open, and the photo's pixels."""
    harness = Harness()
    path = tmp_path / "photo.png"
    original = make_photo(path)
    assert harness.session.files.open(path, background=False)
    yield harness, original
    harness.close()


def held(harness: Harness, text: str):
    """Send ``text`` and wait until its restoration is running and held."""
    harness.engine.hold = True
    run = harness.assistant.send(text)
    harness.until(lambda: run.job is not None and run.job.request_id in harness.engine.held)
    return run


# ---------------------------------------------------------------------------------------------- runs


def test_a_result_that_arrives_after_cancel_is_dropped(opened):
    harness, original = opened
    run = held(harness, "remove the noise")
    # The job finished on the worker just before the cancel reached it.
    harness.engine.release(run.job.request_id)
    harness.assistant.cancel(run)
    harness.ended(run)
    assert run.state is CANCELLED
    np.testing.assert_array_equal(harness.pixels(), original)
    assert len(harness.workspace.history) == 0


def test_a_message_with_nothing_to_restore_gets_a_reply_and_no_restore(opened):
    harness, _ = opened
    run = harness.send("add a dog", NOTHING)
    assert "I can remove noise" in run.reply.text and run.reply.plan == ()
    assert harness.engine.restore_ids() == []


def test_upscale_changes_the_size_in_one_undoable_step(opened):
    harness, original = opened
    harness.send("upscale it")
    assert harness.workspace.document.size == (48, 64)
    np.testing.assert_allclose(harness.pixels()[::2, ::2], original * 0.5, atol=1e-4)
    harness.workspace.undo()
    assert harness.workspace.document.size == (24, 32)


def test_a_slash_command_runs_a_plugin_action_as_one_undoable_step(opened):
    harness, original = opened
    run = harness.send("/levels 1 2.0")
    assert run.action is not None and run.action.id == "photo-tools.auto-levels" and run.params["gamma"] == 2.0
    assert not np.allclose(harness.pixels(), original)
    step = harness.workspace.history.steps[-1]
    assert step.tasks == ("photo-tools.auto-levels",) and step.label == "/levels 1 2.0"
    harness.workspace.undo()
    np.testing.assert_array_equal(harness.pixels(), original)


def test_a_plugin_action_on_a_selection_changes_only_the_selection(opened):
    harness, original = opened
    harness.workspace.set_selection(Selection.rectangle(24, 32, Bounds(x=4, y=4, width=16, height=12), 0))
    harness.send("/sharpen 2")
    after = harness.pixels()
    outside = np.ones((24, 32), dtype=bool)
    outside[4:16, 4:20] = False
    np.testing.assert_array_equal(after[outside], original[outside])
    assert not np.allclose(after[~outside], original[~outside])
    assert harness.workspace.history.steps[-1].bounds.area <= 12 * 16


def test_an_unknown_command_is_answered_and_changes_nothing(opened):
    harness, original = opened
    run = harness.send("/frobnicate", FAILED)
    assert "/sharpen" in run.reply.text
    np.testing.assert_array_equal(harness.pixels(), original)


# ---------------------------------------------------------------------------------------------- plans


def test_a_changed_chip_is_run_again_as_a_new_step_without_reading_the_message_again(opened):
    harness, original = opened
    run = harness.send("remove the noise")
    assert run.reply.can_run_again and run.reply.plan_editable
    harness.assistant.change_step(run, 0, "lowlight")
    assert run.reply.plan[0].task == "lowlight" and run.reply.plan[0].confidence == 1.0 and run.reply.plan_edited
    assert harness.workspace.history.steps[0].tasks == ("denoise",)  # nothing ran yet
    harness.session.plugins = host = RecordingHost()
    again = harness.ended(harness.assistant.run_again(run))
    assert again is not run and again.state is DONE and again.text.startswith("Run again")
    history = harness.workspace.history
    assert len(history) == 2 and history.steps[1].tasks == ("lowlight",)
    (call,) = host.calls
    assert [step.task for step in call.params["plan"]] == ["lowlight"]
    assert harness.engine.interpret_count() == 1  # the edited plan did not go through the text model again
    np.testing.assert_allclose(harness.pixels(), original * 0.25, atol=1e-4)


def test_a_chip_changed_while_the_plan_waits_changes_what_runs(opened):
    harness, _ = opened
    first = held(harness, "remove the noise")
    assert not first.reply.plan_editable  # its snapshot is taken: no more edits
    second = harness.assistant.send("remove the rain and the haze")
    harness.until(lambda: second.state is WAITING)
    assert [step.task for step in second.reply.plan] == ["derain", "dehaze"]
    harness.assistant.change_step(second, 0, "deblur")
    harness.assistant.change_step(second, 1, "")  # remove the second step
    harness.engine.hold = False
    harness.engine.release(first.job.request_id)
    harness.ended(second)
    assert second.state is DONE and harness.workspace.history.steps[-1].tasks == ("deblur",)


def test_run_again_after_cancel(opened):
    harness, original = opened
    run = held(harness, "remove the noise")
    harness.assistant.cancel(run)
    harness.ended(run)
    assert run.state is CANCELLED and run.reply.can_run_again
    harness.engine.hold = False
    again = harness.ended(harness.assistant.run_again(run))
    assert again.state is DONE and harness.workspace.history.steps[0].label == "remove the noise"
    np.testing.assert_allclose(harness.pixels(), original * 0.5, atol=1e-4)


# ---------------------------------------------------------------------------------------------- strength


def test_only_the_latest_step_can_be_reblended_and_the_others_say_why(opened):
    harness, original = opened
    first = harness.send("remove the noise")
    second = harness.send("brighten it")
    assert "latest step" in first.reply.strength_blocked and second.reply.strength_blocked == ""
    before = harness.pixels().copy()
    assert not harness.assistant.set_run_strength(first, 0.5)  # refused, the photo kept
    np.testing.assert_array_equal(harness.pixels(), before)
    harness.workspace.undo()
    assert first.reply.strength_blocked == "" and "undone" in second.reply.strength_blocked
    assert harness.assistant.set_run_strength(first, 0.3)
    np.testing.assert_allclose(harness.pixels(), original * (1 - 0.5 * 0.3), atol=1e-4)
    assert first.reply.strength == 0.3 and first.strength == 0.3
    # Re-blending discarded the undone step, as any new change does.
    assert len(harness.workspace.history) == 1
    assert "no longer in the history" in second.reply.strength_blocked


def test_the_strength_waits_while_a_restoration_runs(opened):
    harness, _ = opened
    first = harness.send("remove the noise")
    second = held(harness, "brighten it")
    assert "running request" in first.reply.strength_blocked
    harness.engine.release(second.job.request_id)
    harness.ended(second)
    assert second.state is DONE and second.reply.strength_blocked == ""


# ---------------------------------------------------------------------------------------------- follow-ups


def test_undo_that_and_redo_from_the_chat_never_reach_the_text_model(opened):
    harness, original = opened
    harness.send("remove the noise")
    restored = harness.pixels().copy()
    interprets = harness.engine.interpret_count()
    run = harness.send("Undo that")
    assert 'Undone: "remove the noise"' in run.reply.status
    np.testing.assert_array_equal(harness.pixels(), original)
    run = harness.send("redo")
    np.testing.assert_array_equal(harness.pixels(), restored)
    assert "Redone" in run.reply.status
    assert harness.send("redo", NOTHING).reply.plan == ()
    assert harness.engine.interpret_count() == interprets


def test_a_bit_less_and_a_bit_more_reblend_the_last_step(opened):
    harness, original = opened
    first = harness.send("remove the noise")
    restores = len(harness.engine.restore_ids())
    assert "75% strength" in harness.send("a bit less").reply.status
    assert harness.workspace.history.steps[-1].strength == 0.75 and first.reply.strength == 0.75
    np.testing.assert_allclose(harness.pixels(), original * (1 - 0.5 * 0.75), atol=1e-4)
    harness.send("weaker")
    harness.send("stronger")
    assert harness.workspace.history.steps[-1].strength == 0.75
    harness.send("a bit more")
    assert "already at full strength" in harness.send("more", NOTHING).reply.status
    assert len(harness.engine.restore_ids()) == restores and len(harness.workspace.history) == 1


def test_a_bit_less_or_undo_with_nothing_done_says_so(opened):
    harness, _ = opened
    assert "no strength to change" in harness.send("a bit less", NOTHING).reply.status
    assert "nothing to undo" in harness.send("undo", NOTHING).reply.status


def test_a_follow_up_sent_while_a_restore_runs_waits_for_it(opened):
    harness, original = opened
    first = held(harness, "remove the noise")
    followup = harness.assistant.send("a bit less")
    assert followup.state is WAITING and followup.reply.progress is not None
    harness.engine.release(first.job.request_id)
    harness.ended(followup)
    assert followup.state is DONE
    np.testing.assert_allclose(harness.pixels(), original * (1 - 0.5 * 0.75), atol=1e-4)


def test_only_the_selection_without_a_selection_says_how_to_make_one(opened):
    harness, _ = opened
    harness.send("remove the noise")
    run = harness.send("only the selection", NOTHING)
    assert "no selection" in run.reply.status and "rectangle or brush" in run.reply.status
    assert len(harness.engine.restore_ids()) == 1


def test_only_the_selection_redoes_the_last_plan_inside_the_selection_in_its_place(opened):
    harness, original = opened
    harness.send("remove the noise")
    harness.send("a bit less")
    harness.workspace.set_selection(Selection.rectangle(24, 32, Bounds(x=4, y=4, width=16, height=12), 0))
    harness.session.plugins = host = RecordingHost()
    run = harness.send("just the selected area")
    assert [step.task for step in run.reply.plan] == ["denoise"]
    history = harness.workspace.history
    # It took the whole-photo step's place: one step, limited to the selection, at the strength it had.
    assert len(history) == 1 and history.steps[0].label == "remove the noise (selection only)"
    assert history.steps[0].strength == 0.75 and history.steps[0].tasks == ("denoise",)
    inside = np.zeros((24, 32), dtype=bool)
    inside[4:16, 4:20] = True
    after = harness.pixels()
    np.testing.assert_array_equal(after[~inside], original[~inside])
    np.testing.assert_allclose(after[inside], original[inside] * (1 - 0.5 * 0.75), atol=1e-4)
    assert host.calls[-1].given.mask is not None
    harness.workspace.undo()
    np.testing.assert_array_equal(harness.pixels(), original)


def test_only_the_selection_after_another_step_runs_on_top(opened):
    harness, original = opened
    harness.send("remove the noise")
    harness.workspace.edit_layers("Rename", lambda document: setattr(document.layers[0], "name", "Renamed"))
    steps = len(harness.workspace.history)
    harness.workspace.set_selection(Selection.rectangle(24, 32, Bounds(x=0, y=0, width=8, height=8), 0))
    harness.send("only the selection")
    assert len(harness.workspace.history) == steps + 1
    np.testing.assert_allclose(harness.pixels()[:8, :8], original[:8, :8] * 0.25, atol=1e-4)
    np.testing.assert_allclose(harness.pixels()[10:, 10:], original[10:, 10:] * 0.5, atol=1e-4)


def test_a_threaded_engine_gives_the_same_steps(tmp_path):
    harness = Harness(FakeEngine(threaded=True))
    try:
        path = tmp_path / "photo.png"
        original = make_photo(path)
        harness.session.files.open(path, background=False)
        harness.send("remove the noise")
        harness.send("a bit less")
        np.testing.assert_allclose(harness.pixels(), original * (1 - 0.5 * 0.75), atol=1e-4)
    finally:
        harness.close()
