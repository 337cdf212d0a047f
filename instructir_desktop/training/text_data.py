"""Sentence vectors of the instruction corpus, computed once per encoder and cached on disk."""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instructir_desktop.model.tasks import CLASS_NAMES
from instructir_desktop.model.text import SentenceEncoder
from instructir_desktop.training.corpus import InstructionCorpus


def balanced_class_weights(labels: np.ndarray) -> np.ndarray:
    """A weight per class (float64, CLASS_NAMES order) that gives every class the same total:
    ``none`` and the tasks have different numbers of lines. A class without lines weighs as one line."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype(np.float64)
    return counts.sum() / (np.maximum(counts, 1) * len(CLASS_NAMES))


@dataclass(frozen=True)
class EncodedCorpus:
    texts: tuple[str, ...]
    labels: np.ndarray  # int64 index into CLASS_NAMES
    splits: tuple[str, ...]
    vectors: np.ndarray  # (N, sentence_dim) float32

    def subset(self, split: str) -> EncodedCorpus:
        keep = [i for i, s in enumerate(self.splits) if s == split]
        return EncodedCorpus(
            tuple(self.texts[i] for i in keep),
            self.labels[keep],
            tuple(self.splits[i] for i in keep),
            self.vectors[keep],
        )

    def __add__(self, other: EncodedCorpus) -> EncodedCorpus:
        return EncodedCorpus(
            self.texts + other.texts,
            np.concatenate([self.labels, other.labels]),
            self.splits + other.splits,
            np.concatenate([self.vectors, other.vectors]),
        )


def encode_texts(
    texts: Sequence[str], encoder: SentenceEncoder, cache_dir: str | os.PathLike[str] | None = None
) -> np.ndarray:
    """Encode with a disk cache keyed by the texts and the encoder, since encoding takes a while on a CPU."""
    digest = hashlib.sha256(("\n".join(texts) + "\0" + encoder.identifier).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"vectors-{digest}.npy" if cache_dir else None
    if cache is not None and cache.is_file():
        vectors = np.load(cache)
        if vectors.shape == (len(texts), encoder.dimension):
            return vectors
    vectors = encoder.encode(list(texts)).astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors)
    return vectors


def encode_corpus(
    corpus: InstructionCorpus, encoder: SentenceEncoder, cache_dir: str | os.PathLike[str] | None = None
) -> EncodedCorpus:
    texts = tuple(line.text for line in corpus.lines)
    labels = np.array([CLASS_NAMES.index(line.label) for line in corpus.lines], dtype=np.int64)
    splits = tuple(line.split for line in corpus.lines)
    return EncodedCorpus(texts, labels, splits, encode_texts(texts, encoder, cache_dir))


_WRAPPERS = (
    "please {}",
    "can you {}?",
    "{} please",
    "could you {}",
    "{}, thanks",
    "hey, {}",
    "i want you to {}",
    "{} for me",
    "{}!!",
    "my photo: {}",
)


def _typo(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(max(1, len(chars) // 15)):
        if len(chars) < 2:
            break
        i = rng.randrange(len(chars) - 1)
        roll = rng.random()
        if roll < 0.3:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif roll < 0.6:
            chars.pop(i)
        elif roll < 0.8:
            chars.insert(i, chars[i])
        else:
            chars[i] = rng.choice("abcdefghijklmnopqrstuvwxyz")
    return "".join(chars)


def augment_text(text: str, rng: random.Random) -> str:
    """A variant a person might type: typos, a polite wrapper, no punctuation, odd casing."""
    roll = rng.random()
    if roll < 0.35:
        return _typo(text, rng)
    if roll < 0.7:
        return rng.choice(_WRAPPERS).format(text.rstrip(".!?").lower())
    if roll < 0.85:
        return re.sub(r"[^\w\s]", "", text.lower())
    return text.upper() if rng.random() < 0.3 else text.capitalize()


def augmented(
    data: EncodedCorpus,
    encoder: SentenceEncoder,
    copies: int = 3,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> EncodedCorpus:
    rng = random.Random(seed)
    texts = tuple(augment_text(text, rng) for text in data.texts for _ in range(copies))
    labels = np.repeat(data.labels, copies)
    return EncodedCorpus(texts, labels, ("train",) * len(texts), encode_texts(texts, encoder, cache_dir))
