"""The open photo's analysis in the editing session: the greeting and its chips, "Fix all" in fix
order, "fix it", questions answered from the analysis and the camera's record (never a step),
and an analysis that is dropped when another photo opens first. Also ``interpret --json``."""

from __future__ import annotations

import json

import pytest
from analysis_photos import degraded, natural_photo, with_noise
from editing_harness import Harness
from PIL import Image

from instructir_desktop.cli import main as cli
from instructir_desktop.editing.conversation import RunState
from instructir_desktop.editing.insight import FIX_PLAN_TITLE, NOTHING_TO_FIX, PhotoAnalysed
from instructir_desktop.instructions.questions import PhotoQuestion, read_photo_question
from instructir_desktop.io import CameraInfo, write_image
from instructir_desktop.io.metadata import exif_with_camera

NOTHING = RunState.NOTHING


@pytest.fixture
def harness():
    harness = Harness()
    yield harness
    harness.close()


def greeted(harness: Harness) -> PhotoAnalysed:
    harness.until(lambda: any(isinstance(e, PhotoAnalysed) for e in harness.events))
    return next(e for e in harness.events if isinstance(e, PhotoAnalysed))


def open_photo(harness: Harness, path) -> None:
    assert harness.session.files.open(path, background=False)


def test_opening_a_grainy_hazy_photo_greets_with_both_and_fix_all_runs_them_in_fix_order(harness, tmp_path):
    path = tmp_path / "grainy-haze.png"
    write_image(path, with_noise(degraded(natural_photo(), "dehaze", 0.5), 14))
    open_photo(harness, path)
    assert harness.assistant.runs == []  # opening asks nothing of the chat: the greeting comes on its own
    greeting = greeted(harness).greeting
    assert greeting.text.startswith("What I see: ") and "grain" in greeting.text and "Hazy" in greeting.text
    labels = [s.label for s in greeting.suggestions]
    assert set(labels[:-1]) == {"Remove noise", "Remove haze"} and labels[-1] == "Fix all"
    assert all(s.reason for s in greeting.suggestions)

    run = harness.ended(harness.session.insight.take_greeting_suggestion(greeting, len(labels) - 1))
    assert run.state is RunState.DONE and run.text == "Fix all"
    assert [step.task for step in run.interpretation.steps] == ["denoise", "dehaze"]  # noise before haze
    assert len(harness.workspace.history) == 1


def test_a_single_chip_runs_its_own_task(harness, tmp_path):
    path = tmp_path / "grainy.png"
    write_image(path, with_noise(natural_photo(), 14))
    open_photo(harness, path)
    greeting = greeted(harness).greeting
    assert [s.label for s in greeting.suggestions] == ["Remove noise"]  # one problem: no Fix all
    run = harness.ended(harness.session.insight.take_greeting_suggestion(greeting, 0))
    assert [step.task for step in run.interpretation.steps] == ["denoise"]


def test_fix_it_runs_the_analysis_plan_and_on_a_clean_photo_changes_nothing(harness, tmp_path):
    dark = tmp_path / "dark.png"
    write_image(dark, degraded(natural_photo(), "lowlight", 0.5))
    open_photo(harness, dark)
    run = harness.send("fix it")
    assert [step.task for step in run.interpretation.steps] == ["lowlight"] and run.label == FIX_PLAN_TITLE

    clean = tmp_path / "clean.png"
    write_image(clean, natural_photo(seed=4))
    open_photo(harness, clean)
    before = len(harness.workspace.history)
    run = harness.send("Fix it please", NOTHING)
    assert run.reply.text == NOTHING_TO_FIX and len(harness.workspace.history) == before


def test_questions_are_answered_from_the_analysis_and_exif_never_run(harness, tmp_path):
    path = tmp_path / "shot.jpg"
    exif = exif_with_camera(None, CameraInfo(make="Canon", model="EOS R6", iso=6400, exposure_time=1 / 60))
    Image.fromarray((with_noise(natural_photo(), 14) * 255).round().astype("uint8")).save(path, exif=exif, quality=98)
    open_photo(harness, path)
    size = harness.send("how many megapixels is it?", NOTHING)
    assert size.reply.text.startswith("It is 384×384 pixels: 0.1 megapixels.")
    iso = harness.send("What ISO was it shot at?", NOTHING)
    assert iso.reply.text == "It was taken at ISO 6400 and I can see grain from it."
    # The same question through the restore command is answered from the photo too.
    command = harness.send("/restore What ISO was it shot at?", NOTHING)
    assert command.reply.text == "It was taken at ISO 6400 and I can see grain from it."
    camera = harness.send("what camera took this?", NOTHING)
    assert camera.reply.text == "It was taken with a Canon EOS R6 (ISO 6400, 1/60 s)."
    noisy = harness.send("is it noisy?", NOTHING)
    assert noisy.reply.text.startswith("Yes: ") and [s.task for s in noisy.reply.suggestions] == ["denoise"]
    sharp = harness.send("is it sharp?", NOTHING)
    assert sharp.reply.text.startswith("It looks sharp") and sharp.reply.suggestions == ()
    wrong = harness.send("what's wrong with it?", NOTHING)
    assert "grain" in wrong.reply.text and "ISO 6400" in wrong.reply.text
    assert len(harness.workspace.history) == 0 and harness.engine.restore_ids() == []
    # A chip of an answer runs like any suggestion.
    taken = harness.ended(harness.assistant.take_suggestion(noisy, 0))
    assert taken.state is RunState.DONE and [s.task for s in taken.interpretation.steps] == ["denoise"]


def test_a_question_without_exif_says_the_file_does_not_say(harness, tmp_path):
    path = tmp_path / "plain.png"
    write_image(path, natural_photo())
    open_photo(harness, path)
    assert harness.send("which camera was used?", NOTHING).reply.text == "The file does not say which camera took it."
    blurred = tmp_path / "blurred.png"
    write_image(blurred, degraded(natural_photo(), "deblur", 0.5))
    open_photo(harness, blurred)
    answer = harness.send("is it in focus?", NOTHING)
    assert answer.reply.text.startswith("Not quite: ") and answer.reply.suggestions[0].task == "deblur"


def test_the_analysis_of_a_photo_replaced_before_it_ended_is_dropped(harness, tmp_path):
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    write_image(first, with_noise(natural_photo(), 20))
    write_image(second, natural_photo(320, seed=5))
    open_photo(harness, first)
    open_photo(harness, second)  # before the loop turned: the first analysis can only arrive late
    greeting = greeted(harness).greeting
    assert harness.session.background.finish("analysis", timeout=60)
    harness.until(lambda: not harness.session.background.busy("analysis"))
    analysed = [e for e in harness.events if isinstance(e, PhotoAnalysed)]
    assert len(analysed) == 1 and greeting.analysis.width == 320
    assert harness.session.insight.take_greeting_suggestion(greeting, 0) is None  # fine photo: no chips


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("how many megapixels is it?", PhotoQuestion.SIZE),
        ("what ISO?", PhotoQuestion.ISO),
        ("is it sharp?", PhotoQuestion.SHARPNESS),
        ("What camera took this?", PhotoQuestion.CAMERA),
        ("what’s wrong with it?", PhotoQuestion.PROBLEMS),
        ("fix it", PhotoQuestion.FIX),
        ("sharpen it", None),
        ("increase the resolution", None),
        ("this looks blurry, can you fix it?", None),
        ("it's too dark", None),
        # Asked politely or naming the photo, still the analysis's (the text model would read
        # "could you check it" as brighten and "fix this photo" as nothing at all).
        ("fix this photo", PhotoQuestion.FIX),
        ("could you please fix my picture?", PhotoQuestion.FIX),
        ("analyse this photo", PhotoQuestion.PROBLEMS),
        ("could you check it", PhotoQuestion.PROBLEMS),
        # Questions worded with a polite verb are questions, as ``interpret`` reads them.
        ("can you identify the camera?", PhotoQuestion.CAMERA),
        ("could you describe the noise?", PhotoQuestion.NOISE),
        ("could you remove the noise?", None),
        ("check the noise", None),
        # General questions that name a size or a date are not about the photo (intent's reading).
        ("how big is the moon?", None),
        ("when was photography invented?", None),
        ("what time is it?", None),
        ("what day is it today?", None),
        ("what time was this taken?", PhotoQuestion.TAKEN),
        ("when did I shoot this?", PhotoQuestion.TAKEN),
        ("any problems?", PhotoQuestion.PROBLEMS),
    ],
)
def test_questions_are_told_from_requests(text, expected):
    assert read_photo_question(text) is expected


def test_interpret_json_gives_a_question_no_step_and_says_where_to_ask(capsys):
    assert cli.main(["interpret", "--json", "how many megapixels is it?", "is it sharp?"]) == cli.EXIT_OK
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["steps"] for r in records] == [[], []]
    assert all("instructir-desktop analyze PHOTO" in r["reply"] for r in records)


def test_the_analysis_reads_a_single_layer_in_place_and_flattens_a_stack():
    import numpy as np

    from instructir_desktop.core.document import Document, Layer
    from instructir_desktop.editing.insight import visible_pixels

    base = np.full((8, 8, 3), 0.2, np.float32)
    single = Document(8, 8, [Layer(base)])
    assert visible_pixels(single) is base  # a big photo is not copied to be looked at
    top = Layer(np.full((8, 8, 3), 1.0, np.float32), opacity=0.5)
    stacked = Document(8, 8, [Layer(base), top])
    np.testing.assert_allclose(visible_pixels(stacked), 0.6)  # what the person sees: half of each
