"""Checks on the hand-written instruction corpus and its loader."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from instructir_desktop.model.tasks import CLASS_NAMES, NONE_CLASS, TASKS
from instructir_desktop.training.corpus import (
    SPLITS,
    InstructionCorpus,
    load_corpus,
    normalise_text,
    token_set,
)

NEAR_DUPLICATE_JACCARD = 0.75
# SHA-256 of every held-out line and multi-step example (text, label or steps, voice, family), in file
# order. The held-out split is the measuring stick for the class decision: the training split grows,
# this one must not move. Changing it on purpose means a new baseline, so update this with a reason.
HELDOUT_SHA256 = "6f13562cbeff9a01a1c4d49f52c35309e13c517204d02b56b77bfb06f7953943"


@pytest.fixture(scope="module")
def corpus() -> InstructionCorpus:
    return load_corpus()


@pytest.fixture(scope="module")
def raw_corpus() -> dict:
    data = Path(__file__).resolve().parents[1] / "instructir_desktop" / "training" / "data" / "instructions.json"
    return json.loads(data.read_text(encoding="utf-8"))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


# --- loader -----------------------------------------------------------------------------------------


def test_loader_does_not_pull_in_heavy_modules() -> None:
    assert "instructir_desktop.training.corpus" in sys.modules
    # The corpus module itself must stay importable without torch or Qt; check its own imports.
    source = Path(sys.modules["instructir_desktop.training.corpus"].__file__ or "").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(import|from)\s+(torch|PySide6)", source, re.MULTILINE)


def test_default_path_matches_explicit_path(corpus: InstructionCorpus) -> None:
    data = Path(__file__).resolve().parents[1] / "instructir_desktop" / "training" / "data" / "instructions.json"
    assert load_corpus(data) == corpus
    assert load_corpus(str(data)) == corpus


def test_normalise_text() -> None:
    assert normalise_text("  Can't   SEE it!!  ") == "cant see it"
    assert normalise_text("Remove the noise, then—sharpen.") == "remove the noise then sharpen"
    assert normalise_text("upscale 2x") == "upscale 2x"
    assert token_set("the the grain") == frozenset({"the", "grain"})


def test_select_and_texts_by_label(corpus: InstructionCorpus) -> None:
    assert len(corpus.select()) == len(corpus.lines)
    train = corpus.select(split="train")
    heldout = corpus.select(split="heldout")
    assert len(train) + len(heldout) == len(corpus.lines)
    assert all(line.label == "derain" for line in corpus.select(label="derain"))
    both = corpus.select(split="heldout", label="upscale")
    assert both and all(line.split == "heldout" and line.label == "upscale" for line in both)

    grouped = corpus.texts_by_label()
    assert tuple(grouped) == CLASS_NAMES
    assert sum(map(len, grouped.values())) == len(train)
    assert sum(map(len, corpus.texts_by_label("heldout").values())) == len(heldout)

    with pytest.raises(ValueError, match="split"):
        corpus.select(split="test")
    with pytest.raises(ValueError, match="label"):
        corpus.select(label="colorize")
    with pytest.raises(ValueError, match="split"):
        corpus.texts_by_label("validation")


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_loader_rejects_unknown_label(tmp_path: Path, raw_corpus: dict) -> None:
    data = json.loads(json.dumps(raw_corpus))
    data["classes"]["colorize"] = [{"text": "add colour", "voice": "casual", "family": "c", "split": "train"}]
    with pytest.raises(ValueError, match="unknown label"):
        load_corpus(_write(tmp_path, data))


def test_loader_rejects_unknown_split(tmp_path: Path, raw_corpus: dict) -> None:
    data = json.loads(json.dumps(raw_corpus))
    data["classes"]["denoise"][0]["split"] = "validation"
    with pytest.raises(ValueError, match="unknown split"):
        load_corpus(_write(tmp_path, data))


def test_loader_rejects_unknown_step(tmp_path: Path, raw_corpus: dict) -> None:
    data = json.loads(json.dumps(raw_corpus))
    data["multistep"][0]["steps"] = ["denoise", "colorize"]
    with pytest.raises(ValueError, match="unknown step"):
        load_corpus(_write(tmp_path, data))


def test_loader_rejects_unknown_voice_and_duplicates(tmp_path: Path, raw_corpus: dict) -> None:
    data = json.loads(json.dumps(raw_corpus))
    data["classes"]["denoise"][0]["voice"] = "shouty"
    with pytest.raises(ValueError, match="unknown voice"):
        load_corpus(_write(tmp_path, data))

    data = json.loads(json.dumps(raw_corpus))
    first = dict(data["classes"]["denoise"][0])
    first["text"] = first["text"].upper() + "!"
    data["classes"]["denoise"].append(first)
    with pytest.raises(ValueError, match="duplicate"):
        load_corpus(_write(tmp_path, data))


def test_loader_rejects_family_in_both_splits(tmp_path: Path, raw_corpus: dict) -> None:
    data = json.loads(json.dumps(raw_corpus))
    first = data["classes"]["deblur"][0]
    data["classes"]["deblur"].append(
        {"text": "a brand new line about blur", "voice": first["voice"], "family": first["family"], "split": "heldout"}
    )
    with pytest.raises(ValueError, match="both splits"):
        load_corpus(_write(tmp_path, data))


# --- content ----------------------------------------------------------------------------------------


def test_counts_per_class_and_split(corpus: InstructionCorpus) -> None:
    for task in TASKS:
        lines = corpus.select(label=task)
        train = corpus.select(split="train", label=task)
        heldout = corpus.select(split="heldout", label=task)
        # The held-out split is a fixed measuring stick: the training split grows (issue 14), so the
        # held-out share falls; what must hold is enough held-out lines per class to measure with.
        assert len(lines) >= 115, task
        assert len(train) >= 160, task
        assert len(heldout) >= 25, task
        assert 0.05 <= len(heldout) / len(lines) <= 0.30, (task, len(heldout), len(lines))
    none_lines = corpus.select(label=NONE_CLASS)
    assert len(none_lines) >= 200
    assert len(corpus.select(split="train", label=NONE_CLASS)) >= 300
    assert len(corpus.select(split="heldout", label=NONE_CLASS)) >= 50
    assert 0.05 <= len(corpus.select(split="heldout", label=NONE_CLASS)) / len(none_lines) <= 0.30


def test_no_duplicate_texts_anywhere(corpus: InstructionCorpus) -> None:
    texts = [line.text for line in corpus.lines] + [ex.text for ex in corpus.multistep]
    counts = Counter(normalise_text(t) for t in texts)
    assert all(normalise_text(t) for t in texts)
    duplicates = [t for t, n in counts.items() if n > 1]
    assert not duplicates


def test_families_never_span_splits_or_labels(corpus: InstructionCorpus) -> None:
    splits: dict[str, set[str]] = defaultdict(set)
    labels: dict[str, set[str]] = defaultdict(set)
    for line in corpus.lines:
        splits[line.family].add(line.split)
        labels[line.family].add(line.label)
    for ex in corpus.multistep:
        assert ex.family, ex
        splits[ex.family].add(ex.split)
        labels[ex.family].add("<multistep>")
    assert not [f for f, s in splits.items() if len(s) > 1]
    assert not [f for f, s in labels.items() if len(s) > 1]
    for label in CLASS_NAMES:
        families = {line.family for line in corpus.select(label=label)}
        heldout_families = {line.family for line in corpus.select(split="heldout", label=label)}
        assert len(heldout_families) >= 2, label
        assert len(families) - len(heldout_families) >= 5, label


def test_each_class_holds_out_a_whole_voice(corpus: InstructionCorpus) -> None:
    for label in CLASS_NAMES:
        voices_by_split: dict[str, set[str]] = {split: set() for split in SPLITS}
        for line in corpus.select(label=label):
            voices_by_split[line.split].add(line.voice)
        assert voices_by_split["heldout"] - voices_by_split["train"], label


def _heldout_digest(corpus: InstructionCorpus) -> tuple[int, str]:
    records: list[list[str | list[str]]] = [
        [line.label, line.text, line.voice, line.family] for line in corpus.select(split="heldout")
    ]
    records += [
        [ex.text, list(ex.steps), list(ex.ignored), ex.voice, ex.family] for ex in corpus.select_multistep("heldout")
    ]
    return len(records), hashlib.sha256(json.dumps(records, ensure_ascii=False).encode()).hexdigest()


def test_heldout_split_is_unchanged(corpus: InstructionCorpus) -> None:
    assert _heldout_digest(corpus) == (264, HELDOUT_SHA256)


def test_heldout_digest_sees_one_changed_character(raw_corpus: dict, tmp_path: Path) -> None:
    data = json.loads(json.dumps(raw_corpus))
    entry = next(e for e in data["classes"]["lowlight"] if e["split"] == "heldout")
    entry["text"] += "!"
    assert _heldout_digest(load_corpus(_write(tmp_path, data))) != (264, HELDOUT_SHA256)
    # moving a training line into the held-out split is caught too
    data = json.loads(json.dumps(raw_corpus))
    data["classes"]["upscale"].append(
        {"text": "a line that only training should have", "voice": "casual", "family": "moved", "split": "heldout"}
    )
    assert _heldout_digest(load_corpus(_write(tmp_path, data)))[0] == 265


def test_heldout_lines_are_not_near_duplicates_of_train(corpus: InstructionCorpus) -> None:
    train_sets = [(line.text, token_set(line.text)) for line in corpus.select(split="train")]
    offenders = []
    for line in corpus.select(split="heldout"):
        tokens = token_set(line.text)
        for text, other in train_sets:
            if _jaccard(tokens, other) >= NEAR_DUPLICATE_JACCARD:
                offenders.append((line.text, text))
    train_multi = [(ex.text, token_set(ex.text)) for ex in corpus.multistep if ex.split == "train"]
    for ex in corpus.multistep:
        if ex.split != "heldout":
            continue
        tokens = token_set(ex.text)
        for text, other in train_multi:
            if _jaccard(tokens, other) >= NEAR_DUPLICATE_JACCARD:
                offenders.append((ex.text, text))
    assert not offenders


def test_voices_all_used_and_varied(corpus: InstructionCorpus) -> None:
    used = Counter(line.voice for line in corpus.lines) + Counter(ex.voice for ex in corpus.multistep)
    assert set(used) == set(corpus.voices)
    for task in TASKS:
        task_voices = {line.voice for line in corpus.select(label=task)}
        assert len(task_voices) >= 5, task
        assert "followup" not in task_voices, task
    none_voices = Counter(line.voice for line in corpus.select(label=NONE_CLASS))
    assert none_voices["followup"] >= 10
    assert len(none_voices) >= 5


def test_multistep(corpus: InstructionCorpus) -> None:
    examples = corpus.multistep
    assert len(examples) >= 90
    full = [ex for ex in examples if 2 <= len(ex.steps) <= 3]
    assert len(full) >= 90
    assert any(len(ex.steps) == 3 for ex in examples)
    for ex in examples:
        assert all(step in TASKS for step in ex.steps), ex
        assert len(set(ex.steps)) == len(ex.steps), ex
        assert 1 <= len(ex.steps) <= 3, ex
        if not ex.ignored:
            assert 2 <= len(ex.steps) <= 3, ex
        else:
            assert len(ex.steps) + len(ex.ignored) >= 2, ex
            for clause in ex.ignored:
                assert normalise_text(clause) in normalise_text(ex.text), ex
    assert sum(bool(ex.ignored) for ex in examples) >= 5
    heldout = [ex for ex in examples if ex.split == "heldout"]
    assert 0.18 <= len(heldout) / len(examples) <= 0.32
    # Every task turns up somewhere in a multi-step message, in both splits.
    for split in SPLITS:
        seen = {step for ex in examples if ex.split == split for step in ex.steps}
        assert seen == set(TASKS), split


_FACTOR = re.compile(
    r"\b\d+(\.\d+)?\s*x\b|\bx\s*\d+\b|\b\d+\s*k\b|\b\d{3,4}p\b|\b\d{3,5}\s*(px|pixels?)\b|\b\d{3,5}\s*(x|by)\s*\d{3,5}\b"
    r"|\b(double|twice|triple|quadruple)\b|\b(two|three|four|eight)\s+times\b|\b\d+\s+times\b"
)


def test_upscale_lines_with_explicit_factors(corpus: InstructionCorpus) -> None:
    upscale = [line.text for line in corpus.select(label="upscale")]
    with_factor = [t for t in upscale if _FACTOR.search(t.lower())]
    assert len(with_factor) >= 20
    assert any(re.search(r"\b\d+x\b|\bx\d+\b", t.lower()) for t in with_factor)
    assert any(re.search(r"\b\d+k\b", t.lower()) for t in with_factor)
    assert any(re.search(r"\b(double|twice|triple|times)\b", t.lower()) for t in with_factor)
    # factors appear in both splits, so held-out evaluation covers them too
    heldout = {line.text for line in corpus.select(split="heldout", label="upscale")}
    assert any(t in heldout for t in with_factor)
    assert any(t not in heldout for t in with_factor)
