"""A second opinion on the class decision from the instruction's spelling: character n-grams
(scikit-learn's TF-IDF) and a multinomial logistic regression over them.

The sentence encoder maps a misspelt word, or a voice it was never shown for a class, close to the
wrong class; character n-grams still see "nois" in "the nosie is awful". The chat's decision is the
mean of the text head's probabilities and these; the head's ``fc1`` embedding, which conditions the
image network, is not touched. Stored as safetensors (the n-gram vocabulary in its metadata), so
loading runs no code from the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from instructir_desktop.model.weights import WeightsError, load_state_dict

# What the vectoriser is built with; a file names its own so a later recipe can change them.
DEFAULT_SETTINGS: dict[str, Any] = {"analyzer": "char_wb", "ngram_range": [2, 5], "sublinear_tf": True}
_DAMAGED = "this decision file is damaged: use the one that came with the model"


@dataclass(frozen=True)
class LexicalClassifier:
    classes: tuple[str, ...]
    vocabulary: tuple[str, ...]  # the n-gram of each feature column
    idf: np.ndarray  # (features,) float32
    coefficients: np.ndarray  # (classes, features) float32
    intercepts: np.ndarray  # (classes,) float32
    settings: Mapping[str, Any]

    def __post_init__(self) -> None:
        shape = (len(self.classes), len(self.vocabulary))
        if self.coefficients.shape != shape or self.idf.shape != shape[1:] or self.intercepts.shape != shape[:1]:
            raise WeightsError(f"the n-gram classifier's arrays do not fit its {shape[0]} classes and vocabulary")

    @cached_property
    def _vectoriser(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        settings = dict(self.settings)
        vectoriser = TfidfVectorizer(
            analyzer=settings["analyzer"],
            ngram_range=tuple(settings["ngram_range"]),
            sublinear_tf=bool(settings["sublinear_tf"]),
            vocabulary={gram: index for index, gram in enumerate(self.vocabulary)},
        )
        vectoriser.idf_ = self.idf.astype(np.float64)
        return vectoriser

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), classes) float32 rows that sum to 1."""
        features = self._vectoriser.transform(list(texts))
        logits = np.asarray(features @ self.coefficients.T.astype(np.float64)) + self.intercepts
        logits -= logits.max(axis=1, keepdims=True)
        exponentials = np.exp(logits)
        return (exponentials / exponentials.sum(axis=1, keepdims=True)).astype(np.float32)

    def blend(self, head_probabilities: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The class decision: the mean of the text head's probabilities and these. Equal weights
        were chosen on training lines (benchmarks/bench_decision.py)."""
        return ((head_probabilities + self.probabilities(texts)) / 2).astype(np.float32)

    def save(self, path: str | os.PathLike[str]) -> Path:
        from safetensors.numpy import save_file

        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        # C order: scikit-learn's coefficients are Fortran-ordered, and safetensors writes the raw buffer.
        tensors = {
            name: np.ascontiguousarray(array, dtype=np.float32)
            for name, array in (("idf", self.idf), ("coefficients", self.coefficients), ("intercepts", self.intercepts))
        }
        metadata = {
            "classes": json.dumps(list(self.classes)),
            "vocabulary": json.dumps(list(self.vocabulary), ensure_ascii=False),
            "settings": json.dumps(dict(self.settings)),
        }
        save_file(tensors, str(file), metadata=metadata)
        return file


def load_lexical_classifier(path: str | os.PathLike[str]) -> LexicalClassifier:
    """A classifier written by :meth:`LexicalClassifier.save`; WeightsError (one sentence) otherwise."""
    tensors, metadata = load_state_dict(path)
    name = Path(path).name
    try:
        classes = json.loads(metadata["classes"])
        vocabulary = json.loads(metadata["vocabulary"])
        settings = json.loads(metadata["settings"])
        arrays = {key: tensors[key].numpy().astype(np.float32) for key in ("idf", "coefficients", "intercepts")}
    except (KeyError, ValueError, TypeError, RecursionError) as error:
        raise WeightsError(f"{name}: not an n-gram decision file ({type(error).__name__}); {_DAMAGED}") from None
    if not (
        isinstance(classes, list)
        and isinstance(vocabulary, list)
        and all(isinstance(item, str) for item in (*classes, *vocabulary))
        and isinstance(settings, dict)
        and settings.keys() >= DEFAULT_SETTINGS.keys()
    ):
        raise WeightsError(f"{name}: its metadata is not a class list, vocabulary and settings; {_DAMAGED}")
    try:
        return LexicalClassifier(tuple(classes), tuple(vocabulary), **arrays, settings=settings)
    except WeightsError as error:
        raise WeightsError(f"{name}: {error}; {_DAMAGED}") from None
