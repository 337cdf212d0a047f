"""The session's decisions behind issue 16, headless: what runs and what is only offered, what
counts as saved, whose conversation a run belongs to, what Escape cancels, what the chat says."""

from __future__ import annotations

import numpy as np
import pytest
from editing_harness import Harness, make_photo

from instructir_desktop.editing import replies
from instructir_desktop.editing.conversation import RunState
from instructir_desktop.editing.events import ConversationStarted
from instructir_desktop.editing.transcript import (
    TranscriptEntry,
    decode_transcript,
    encode_transcript,
)
from instructir_desktop.instructions.intent import DEFAULT_CONFIDENCE_THRESHOLD, gate, offers_in_words
from instructir_desktop.instructions.interpret import Interpretation, PlanStep, Suggestion
from instructir_desktop.plugins.api import ActionInfo, Parameter

DONE, NOTHING, CANCELLED = RunState.DONE, RunState.NOTHING, RunState.CANCELLED


@pytest.fixture
def opened(tmp_path):
    harness = Harness()
    path = tmp_path / "photo.png"
    original = make_photo(path)
    assert harness.session.files.open(path, background=False)
    yield harness, original, tmp_path
    harness.close()


# ---------------------------------------------------------------------------------------------- the gate


def test_the_gate_runs_what_is_sure_offers_the_rest_and_says_exactly_that():
    steps = (PlanStep("denoise", 0.8, "the grain"), PlanStep("enhance", 0.49, "make it pop"))
    interpretation = Interpretation("the grain, make it pop", steps, ("add a dog",), "I'll … Note: weak.")
    gated = gate(interpretation, 0.5)
    assert gated.steps == steps[:1]
    assert gated.suggestions == (Suggestion("enhance", "make it pop"),)
    assert gated.reply.startswith("I'll remove the noise.")
    assert "enhance the colours" not in gated.reply and "“make it pop”" in gated.reply
    assert "“add a dog”" in gated.reply and "isn't something I can do" not in gated.reply
    assert gated.reply.endswith(" Note: weak.")  # the model's own caveat stays
    # The threshold decides: at 0.45 both run, at 0.85 neither (then it asks).
    assert gate(interpretation, 0.45).steps == steps
    unsure = gate(interpretation, 0.85)
    assert unsure.steps == () and [s.task for s in unsure.suggestions] == ["denoise", "enhance"]
    assert unsure.reply == (
        "I'm not sure what to change, so I left the photo as it is. My guesses are offered below: choose one, or say "
        "it another way."
    )
    # Where no chips show (the command line, a slash command) the offers are spelled out.
    assert offers_in_words(unsure.suggestions) == (
        "Offered: Remove noise (ask “Remove the noise from this photo”); "
        "Enhance colours (ask “Make the colours more vivid and improve the contrast”)."
    )
    assert offers_in_words(()) == ""
    assert DEFAULT_CONFIDENCE_THRESHOLD == 0.35


def test_no_steps_keeps_the_interpreters_answer_and_its_suggestions():
    interpretation = Interpretation(
        "is it sharp?", (), ("is it sharp?",), "It looks a little soft.", (Suggestion("deblur", "sharpen it"),)
    )
    gated = gate(interpretation, 0.5)
    assert gated.steps == () and gated.reply == "It looks a little soft."
    assert gated.suggestions == (Suggestion("deblur", "sharpen it"),)


def test_a_weak_guess_changes_nothing_until_its_suggestion_is_taken(opened):
    harness, original, _ = opened
    # A guess under the default threshold (0.35): offered, not run.
    harness.engine.interpret = lambda text: Interpretation(text, (PlanStep("enhance", 0.3, text),), (), "")
    run = harness.send("make the car red", NOTHING)
    assert len(harness.workspace.history) == 0 and harness.engine.restore_ids() == []
    np.testing.assert_array_equal(harness.pixels(), original)
    assert run.reply.plan == () and run.reply.suggestions == (Suggestion("enhance", "make the car red"),)

    harness.assistant.confidence_threshold = 0.0  # asked for: act on every guess
    assert harness.send("make the car red").step is not None

    taken = harness.ended(harness.assistant.take_suggestion(run, 0))
    assert taken.state is DONE and taken.text == "Enhance colours"
    assert taken.interpretation.steps[0].confidence == 1.0 and taken.interpretation.steps[0].task == "enhance"
    assert len(harness.workspace.history) == 2


# ---------------------------------------------------------------------------------------------- saved


def test_only_a_project_holds_the_work(opened):
    harness, _, tmp_path = opened
    workspace, files = harness.workspace, harness.session.files
    assert not workspace.unsaved_work  # just opened
    harness.send("remove the noise")
    assert workspace.unsaved_work and workspace.unsaved_summary().startswith("This photo's 1 history step")

    target = tmp_path / "out.png"
    assert files.export(target, background=False)
    assert workspace.unsaved_work and workspace.exported_path == target
    assert "exported to out.png" in workspace.unsaved_summary()

    harness.workspace.undo()  # back to the photo as opened: the step is still there to redo
    assert workspace.unsaved_work and workspace.exported_path is None

    project = tmp_path / "work.irproject"
    assert files.save_project(project)
    assert not workspace.unsaved_work and workspace.unsaved_summary() == ""
    harness.workspace.redo()
    assert workspace.unsaved_work and "the project work.irproject" in workspace.unsaved_summary()


# ---------------------------------------------------------------------------------------------- one chat per photo


def test_opening_another_photo_archives_the_conversation(opened):
    harness, _, tmp_path = opened
    earlier = harness.send("remove the noise")
    started = []
    harness.session.events.subscribe(ConversationStarted, started.append)
    other = tmp_path / "other.png"
    make_photo(other, seed=2)
    assert harness.session.files.open(other, background=False)

    assert earlier.archived and earlier.reply.archived and not earlier.reply.can_run_again
    assert harness.assistant.conversation == [] and started and started[-1].earlier == ()
    assert harness.assistant.run_again(earlier) is None
    assert harness.assistant.set_run_strength(earlier, 0.5) is False
    assert len(harness.workspace.history) == 0


def test_a_project_carries_its_transcript(opened):
    harness, _, tmp_path = opened
    harness.send("remove the noise")
    project = tmp_path / "work.irproject"
    assert harness.session.files.save_project(project)
    assert harness.session.files.open(project, background=False)
    earlier = harness.assistant.earlier
    assert [entry.message for entry in earlier] == ["remove the noise"]
    assert earlier[0].plan == "Remove noise" and earlier[0].status.startswith("Done in")
    # Saved again, the earlier words and the new ones are both kept.
    harness.send("brighten it")
    assert harness.session.files.save_project(project)
    assert harness.session.files.open(project, background=False)
    assert [entry.message for entry in harness.assistant.earlier] == ["remove the noise", "brighten it"]


def test_a_damaged_transcript_loses_only_its_words():
    good = encode_transcript([TranscriptEntry("a", "b", "Remove noise", "Done.")])
    assert decode_transcript(good) == (TranscriptEntry("a", "b", "Remove noise", "Done."),)
    for damaged in (b"\xff\xfe", b"[1, 2]", b'{"entries": [{"message": 3}, "x"]}', b"", None):
        assert decode_transcript(damaged) == ()


# ---------------------------------------------------------------------------------------------- cancel


def test_escape_cancels_the_running_step_and_nothing_else(opened):
    harness, original, _ = opened
    assert harness.assistant.cancel_current() is None
    harness.engine.hold = True
    running = harness.assistant.send("remove the noise")
    harness.until(lambda: running.job is not None and running.job.request_id in harness.engine.held)
    waiting = harness.assistant.send("brighten it")
    assert harness.assistant.cancel_current() is running
    harness.ended(running)
    assert running.state is CANCELLED
    np.testing.assert_array_equal(harness.pixels(), original)
    # The next one in the queue was not cancelled: it starts, and ends normally.
    harness.until(lambda: waiting.job is not None and waiting.job.request_id in harness.engine.held)
    harness.engine.release(waiting.job.request_id)
    assert harness.ended(waiting).state is DONE


# ---------------------------------------------------------------------------------------------- words


def test_settings_are_described_in_a_persons_words():
    action = ActionInfo(
        "tools.levels",
        "Auto levels",
        "levels",
        (
            Parameter("clip", "float", 0.5, 0.0, 5.0, title="Clip (%)"),
            Parameter("per_channel", "bool", False, title="Per channel"),
            Parameter("gamma", "float", 1.0, 0.2, 5.0),
        ),
    )
    text = replies.describe_action(action, {"clip": 0.25, "per_channel": False, "gamma": 1.1})
    assert text == "Auto levels (clip 0.25 %, per channel off, gamma 1.1)"


@pytest.mark.parametrize(
    ("confidence", "words"),
    [
        (1.0, "your choice"),
        (0.93, "very sure 93 %"),
        (0.72, "sure 72 %"),
        (0.55, "fairly sure 55 %"),
        (0.41, "unsure 41 %"),
    ],
)
def test_confidence_in_words(confidence, words):
    assert replies.confidence_words(confidence) == words
