"""Follow-ups: short messages about the conversation itself, not restoration requests.

"undo that", "a bit less", "only the selection" refer to what was just done; they are answered by
the editor (undo, re-blend, rerun on the selection) and never reach the text model. The matching
is deliberately small and explicit: a whole message must be one of the phrases below (after
dropping case, punctuation and a polite word or two), so "remove less of the noise" or "undo the
haze" still go to the text model as requests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNDO = "undo"
REDO = "redo"
WEAKER = "weaker"
STRONGER = "stronger"
SELECTION = "selection"

# How far "a bit less" / "a bit more" moves the last step's strength (0..1).
STRENGTH_STEP = 0.25

_PHRASES: dict[str, tuple[str, ...]] = {
    UNDO: (
        "undo",
        "undo that",
        "undo it",
        "undo this",
        "undo the last step",
        "undo last step",
        "take that back",
        "revert that",
    ),
    REDO: ("redo", "redo that", "redo it", "redo the last step"),
    WEAKER: (
        "less",
        "a bit less",
        "bit less",
        "a little less",
        "a little bit less",
        "slightly less",
        "weaker",
        "a bit weaker",
        "a little weaker",
        "make it weaker",
        "less strong",
        "too much",
        "too strong",
        "tone it down",
    ),
    STRONGER: (
        "more",
        "a bit more",
        "bit more",
        "a little more",
        "a little bit more",
        "slightly more",
        "stronger",
        "a bit stronger",
        "a little stronger",
        "make it stronger",
        "not enough",
        "too weak",
    ),
    SELECTION: (
        "only the selection",
        "just the selection",
        "only in the selection",
        "just in the selection",
        "only inside the selection",
        "selection only",
        "only the selected area",
        "just the selected area",
        "only in the selected area",
        "just in the selected area",
        "only the selected region",
        "just the selected region",
        "only the selected part",
        "just the selected part",
        "apply it only to the selection",
        "only apply it to the selection",
        "do it only in the selection",
    ),
}

_BY_PHRASE: dict[str, str] = {phrase: kind for kind, phrases in _PHRASES.items() for phrase in phrases}

# Polite or conversational words around a follow-up: "ok, a bit less please", "hmm, undo that".
_LEADING = re.compile(r"^(?:(?:ok|okay|hmm+|no|oops|actually|now|please|pls|just|can you|could you)\s+)+")
_TRAILING = re.compile(r"(?:\s+(?:please|pls|thanks|thank you|then))+$")


@dataclass(frozen=True)
class FollowUp:
    """A recognised follow-up: ``kind`` is one of UNDO, REDO, WEAKER, STRONGER, SELECTION."""

    kind: str
    text: str  # the message as typed

    @property
    def strength_delta(self) -> float:
        """How much to move the last step's strength (0 for kinds that do not)."""
        if self.kind == WEAKER:
            return -STRENGTH_STEP
        if self.kind == STRONGER:
            return STRENGTH_STEP
        return 0.0


def _words(text: str) -> str:
    """Lower case, apostrophes dropped ("that's" → "thats"), anything else not a letter or digit a space."""
    lowered = text.lower().replace("’", "'").replace("'", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", lowered).split())


def normalise(text: str) -> str:
    """The message's words with polite or conversational words around them trimmed."""
    words = _words(text)
    for _ in range(2):  # "ok please undo that thanks"
        words = _TRAILING.sub("", _LEADING.sub("", words)).strip()
    return words


def parse_followup(text: str) -> FollowUp | None:
    """The follow-up ``text`` is, or None when it should go to the text model as a request."""
    # Least trimmed first: "just the selection, please" must not lose its "just" to the trim.
    words = _words(text)
    for candidate in (words, _TRAILING.sub("", words).strip(), normalise(text)):
        kind = _BY_PHRASE.get(candidate)
        if kind is not None:
            return FollowUp(kind, text)
    return None


def adjusted_strength(current: float, followup: FollowUp) -> float:
    """The strength after "a bit less" / "a bit more", kept within 0..1 and rounded to whole percents."""
    return round(min(1.0, max(0.0, current + followup.strength_delta)), 2)
