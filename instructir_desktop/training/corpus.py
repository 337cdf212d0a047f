"""The hand-written instruction corpus the text head and the restoration network are trained on.

The corpus lives in ``data/instructions.json`` next to this module. Every line belongs to one class
(a restoration task from :mod:`instructir_desktop.model.tasks` or ``none``), has a ``voice`` (a style
tag from the file's ``voices`` list), a ``family`` (lines built on one wording idea) and a ``split``.
Splits are made per family, so a held-out family never shares its wording idea with training lines.

``multistep`` holds messages that ask for two or three tasks in order, some with a clause the app
cannot do (listed in ``ignored``).

This module is deliberately light: standard library only, no torch and no Qt.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from instructir_desktop.model.tasks import CLASS_NAMES, TASKS

__all__ = [
    "CORPUS_VERSION",
    "SPLITS",
    "CorpusLine",
    "InstructionCorpus",
    "MultiStepExample",
    "load_corpus",
    "normalise_text",
    "token_set",
]

CORPUS_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "heldout")
_DATA_PACKAGE = "instructir_desktop.training"
_DATA_NAME = "instructions.json"

_APOSTROPHES = re.compile(r"['\u2019\u02bc`]")
_NON_WORD = re.compile(r"[^\w\s]|_")


def normalise_text(text: str) -> str:
    """Lower-case, drop punctuation and collapse whitespace, for duplicate checks.

    Apostrophes are removed outright ("don't" -> "dont"); any other punctuation becomes a space,
    so "16:9" -> "16 9" and "x2.5" -> "x2 5".
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _APOSTROPHES.sub("", folded)
    folded = _NON_WORD.sub(" ", folded)
    return " ".join(folded.split())


def token_set(text: str) -> frozenset[str]:
    """The set of normalised tokens of ``text`` (for Jaccard near-duplicate checks)."""
    return frozenset(normalise_text(text).split())


@dataclass(frozen=True)
class CorpusLine:
    text: str
    label: str
    voice: str
    family: str
    split: str


@dataclass(frozen=True)
class MultiStepExample:
    text: str
    steps: tuple[str, ...]
    ignored: tuple[str, ...]
    voice: str
    split: str
    family: str = ""


@dataclass(frozen=True)
class InstructionCorpus:
    lines: tuple[CorpusLine, ...]
    multistep: tuple[MultiStepExample, ...]
    voices: tuple[str, ...]

    def select(self, split: str | None = None, label: str | None = None) -> list[CorpusLine]:
        """Lines filtered by split and/or label (``None`` means any), in file order."""
        if split is not None:
            _check_split(split, "select()")
        if label is not None and label not in CLASS_NAMES:
            raise ValueError(f"unknown label {label!r}; known labels: {', '.join(CLASS_NAMES)}")
        return [
            line
            for line in self.lines
            if (split is None or line.split == split) and (label is None or line.label == label)
        ]

    def texts_by_label(self, split: str = "train") -> dict[str, list[str]]:
        """Texts of one split grouped by label; every class in ``CLASS_NAMES`` is a key, in that order."""
        _check_split(split, "texts_by_label()")
        grouped: dict[str, list[str]] = {name: [] for name in CLASS_NAMES}
        for line in self.lines:
            if line.split == split:
                grouped[line.label].append(line.text)
        return grouped

    def select_multistep(self, split: str | None = None) -> list[MultiStepExample]:
        """Multi-step examples of one split (``None`` means all), in file order."""
        if split is not None:
            _check_split(split, "select_multistep()")
        return [ex for ex in self.multistep if split is None or ex.split == split]


def load_corpus(path: str | Path | None = None) -> InstructionCorpus:
    """Load and validate the corpus; ``path=None`` reads the copy packaged with this module."""
    if path is None:
        resource = resources.files(_DATA_PACKAGE).joinpath("data", _DATA_NAME)
        raw_text = resource.read_text(encoding="utf-8")
        source = f"{_DATA_PACKAGE}/data/{_DATA_NAME}"
    else:
        raw_text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    try:
        raw = json.loads(raw_text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not valid JSON: {exc}") from exc
    return _parse(raw, source)


# --------------------------------------------------------------------------------------------------
# validation


def _check_split(split: str, where: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"{where}: unknown split {split!r}; known splits: {', '.join(SPLITS)}")


def _require_str(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: field {field!r} must be a non-empty string, got {value!r}")
    return value


def _require_keys(entry: Any, where: str, required: set[str], optional: frozenset[str] = frozenset()) -> None:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(entry).__name__}")
    missing = required - entry.keys()
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
    unknown = entry.keys() - required - optional
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")


def _parse(raw: Any, source: str) -> InstructionCorpus:
    _require_keys(raw, source, {"version", "voices", "classes", "multistep"}, frozenset({"voice_notes"}))
    if raw["version"] != CORPUS_VERSION:
        raise ValueError(f"{source}: unsupported corpus version {raw['version']!r} (expected {CORPUS_VERSION})")

    voices_raw = raw["voices"]
    if not isinstance(voices_raw, Sequence) or isinstance(voices_raw, str) or not voices_raw:
        raise ValueError(f"{source}: 'voices' must be a non-empty list of strings")
    voices = tuple(_require_str(v, f"{source}: voices", "voices[]") for v in voices_raw)
    if len(set(voices)) != len(voices):
        raise ValueError(f"{source}: 'voices' lists a voice twice")
    known_voices = set(voices)

    classes = raw["classes"]
    if not isinstance(classes, Mapping):
        raise ValueError(f"{source}: 'classes' must be an object mapping label -> list of lines")
    unknown_labels = [label for label in classes if label not in CLASS_NAMES]
    if unknown_labels:
        raise ValueError(
            f"{source}: unknown label(s) {', '.join(map(repr, unknown_labels))}; known labels: {', '.join(CLASS_NAMES)}"
        )
    missing_labels = [label for label in CLASS_NAMES if label not in classes]
    if missing_labels:
        raise ValueError(f"{source}: no lines for label(s) {', '.join(missing_labels)}")

    seen_text: dict[str, str] = {}
    family_split: dict[str, str] = {}
    family_owner: dict[str, str] = {}

    def check_common(where: str, text: str, voice: Any, family: Any, split: Any, owner: str) -> tuple[str, str, str]:
        norm = normalise_text(text)
        if not norm:
            raise ValueError(f"{where}: text {text!r} has no words once punctuation is removed")
        if norm in seen_text:
            raise ValueError(f"{where}: duplicate text {text!r} (same as a line in {seen_text[norm]})")
        seen_text[norm] = where
        voice = _require_str(voice, where, "voice")
        if voice not in known_voices:
            raise ValueError(f"{where}: unknown voice {voice!r}; known voices: {', '.join(voices)}")
        split = _require_str(split, where, "split")
        if split not in SPLITS:
            raise ValueError(f"{where}: unknown split {split!r}; known splits: {', '.join(SPLITS)}")
        family = _require_str(family, where, "family")
        if family_split.setdefault(family, split) != split:
            raise ValueError(f"{where}: family {family!r} has lines in both splits")
        if family_owner.setdefault(family, owner) != owner:
            raise ValueError(f"{where}: family {family!r} is used by both {family_owner[family]} and {owner}")
        return voice, family, split

    lines: list[CorpusLine] = []
    for label in CLASS_NAMES:
        entries = classes[label]
        if not isinstance(entries, Sequence) or isinstance(entries, str):
            raise ValueError(f"{source}: classes[{label!r}] must be a list")
        for i, entry in enumerate(entries):
            where = f"{source}: classes[{label!r}][{i}]"
            _require_keys(entry, where, {"text", "voice", "family", "split"})
            text = _require_str(entry["text"], where, "text")
            voice, family, split = check_common(
                where, text, entry["voice"], entry["family"], entry["split"], owner=f"class {label!r}"
            )
            lines.append(CorpusLine(text=text, label=label, voice=voice, family=family, split=split))

    multistep_raw = raw["multistep"]
    if not isinstance(multistep_raw, Sequence) or isinstance(multistep_raw, str):
        raise ValueError(f"{source}: 'multistep' must be a list")
    multistep: list[MultiStepExample] = []
    for i, entry in enumerate(multistep_raw):
        where = f"{source}: multistep[{i}]"
        _require_keys(entry, where, {"text", "steps", "voice", "split"}, frozenset({"ignored", "family"}))
        text = _require_str(entry["text"], where, "text")
        steps_raw = entry["steps"]
        if not isinstance(steps_raw, Sequence) or isinstance(steps_raw, str) or not steps_raw:
            raise ValueError(f"{where}: 'steps' must be a non-empty list of task names")
        bad_steps = [s for s in steps_raw if s not in TASKS]
        if bad_steps:
            raise ValueError(
                f"{where}: unknown step(s) {', '.join(map(repr, bad_steps))}; known tasks: {', '.join(TASKS)}"
            )
        steps = tuple(steps_raw)
        if len(set(steps)) != len(steps):
            raise ValueError(f"{where}: a step is repeated in {list(steps)}")
        ignored_raw = entry.get("ignored", [])
        if not isinstance(ignored_raw, Sequence) or isinstance(ignored_raw, str):
            raise ValueError(f"{where}: 'ignored' must be a list of strings")
        ignored = tuple(_require_str(c, where, "ignored[]") for c in ignored_raw)
        for clause in ignored:
            if normalise_text(clause) not in normalise_text(text):
                raise ValueError(f"{where}: ignored clause {clause!r} does not occur in the text")
        family_raw = entry.get("family", f"multistep-{i}")
        voice, family, split = check_common(where, text, entry["voice"], family_raw, entry["split"], owner="multistep")
        multistep.append(
            MultiStepExample(text=text, steps=steps, ignored=ignored, voice=voice, split=split, family=family)
        )

    return InstructionCorpus(lines=tuple(lines), multistep=tuple(multistep), voices=voices)
