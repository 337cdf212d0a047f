"""Follow-ups ("undo that", "a bit less", "only the selection") are recognised without Qt or the model."""

from __future__ import annotations

import subprocess
import sys

import pytest

from instructir_desktop.instructions.followups import (
    REDO,
    SELECTION,
    STRONGER,
    UNDO,
    WEAKER,
    FollowUp,
    adjusted_strength,
    normalise,
    parse_followup,
)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("undo", UNDO),
        ("Undo that", UNDO),
        ("undo that!", UNDO),
        ("ok, undo that please", UNDO),
        ("Oops, undo it.", UNDO),
        ("redo", REDO),
        ("Redo that", REDO),
        ("a bit less", WEAKER),
        ("A bit less.", WEAKER),
        ("less", WEAKER),
        ("weaker", WEAKER),
        ("hmm, too much", WEAKER),
        ("a bit more please", STRONGER),
        ("stronger", STRONGER),
        ("More!", STRONGER),
        ("only the selection", SELECTION),
        ("just the selected area", SELECTION),
        ("Just the selection, please", SELECTION),
        ("only in the selected area", SELECTION),
    ],
)
def test_follow_ups_are_recognised(text, kind):
    followup = parse_followup(text)
    assert followup is not None, text
    assert followup.kind == kind
    assert followup.text == text


@pytest.mark.parametrize(
    "text",
    [
        "remove the noise",
        "remove less of the noise",
        "undo the haze",  # a request, not "undo the last step"
        "more contrast",
        "make the colours pop a bit more",
        "sharpen only the selection",  # a request limited to the selection: the text model's job
        "less rain please, and brighten it",
        "",
        "   ",
    ],
)
def test_anything_else_goes_to_the_text_model(text):
    assert parse_followup(text) is None


def test_normalise_drops_case_punctuation_and_polite_words():
    assert normalise("  OK,   please Undo THAT, thanks! ") == "undo that"
    assert normalise("It’s fine") == "its fine"


def test_strength_moves_by_a_quarter_and_stays_within_range():
    less, more = FollowUp(WEAKER, "less"), FollowUp(STRONGER, "more")
    assert adjusted_strength(1.0, less) == pytest.approx(0.75)
    assert adjusted_strength(0.75, less) == pytest.approx(0.5)
    assert adjusted_strength(0.1, less) == 0.0
    assert adjusted_strength(0.5, more) == pytest.approx(0.75)
    assert adjusted_strength(0.9, more) == 1.0
    assert adjusted_strength(0.4, FollowUp(UNDO, "undo")) == pytest.approx(0.4)


def test_the_module_does_not_import_qt():
    code = (
        "import sys, instructir_desktop.instructions.followups; "
        "assert not any(name.startswith(('PySide6', 'qasync', 'torch')) for name in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
