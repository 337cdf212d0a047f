"""Messages that ask about the photo rather than ask to change it ("how many megapixels?", "what
ISO?", "is it sharp?", "what's wrong with it?"), and the one that hands the choice to the analysis
("fix it"). They are read by wording before the text model sees them: the model only knows
restoration tasks, and would take "is it sharp?" for a request to sharpen.
"""

from __future__ import annotations

import re
from enum import Enum

from instructir_desktop.instructions.intent import GENERAL_QUESTION, aside_of, asks_for_a_change, is_question


class PhotoQuestion(Enum):
    PROBLEMS = "problems"  # what's wrong with it?
    FIX = "fix"  # fix it (whatever the analysis finds)
    SIZE = "size"  # megapixels, resolution, dimensions
    ISO = "iso"
    CAMERA = "camera"
    LENS = "lens"
    SHUTTER = "shutter"
    APERTURE = "aperture"
    TAKEN = "taken"  # when
    SHARPNESS = "sharpness"
    NOISE = "noise"
    EXPOSURE = "exposure"


_SUBJECT = r"(?:(?:the|this|that|my) (?:photo|picture|image|shot|pic)|it|this|that)"
# "could you check it", "can you fix this photo please": the same command, asked politely.
_POLITE = r"(?:please\s+)?(?:(?:just|can you|could you|would you|will you)\s+)?(?:please\s+)?"
_THANKS = r"(?:\s+(?:up|for me|please))*\??$"
_ASKING = re.compile(r"^(?:tell me|show me|any)\b")
# A message that starts by asking for a change is a request even when it ends with "?".
_REQUEST = re.compile(
    r"^(?:can you|could you|would you|will you|please)?\s*(?:remove|reduce|increase|upscale|sharpen|brighten|"
    r"denoise|deblur|dehaze|derain|enhance|make|boost|clean|get rid|lighten|darken|add|improve|restore|sort|fix|"
    r"clear|lift|recover|unblur|defog|smooth|erase|lose|ditch|take (?:away|out))\b"
)
# Where a message's parts start: "why is this so noisy, get rid of the noise" orders after asking.
_PARTS = re.compile(r"[,;.!?]+\s*|\s+(?:and|then|so)\s+")
_PROBLEMS_COMMAND = re.compile(rf"^{_POLITE}(?:analy[sz]e|diagnose|check|inspect|assess|examine)\s+{_SUBJECT}{_THANKS}")
_FIX = re.compile(
    rf"^{_POLITE}(?:auto[- ]?)?(?:fix|repair|correct)\s+"
    rf"(?:{_SUBJECT}|everything|all(?: of it)?|(?:all )?the problems|what(?:'s| is) wrong(?: with {_SUBJECT})?)"
    rf"{_THANKS}"
    r"|^(?:fix all|auto[- ]?fix|fix everything|do your (?:best|thing))$"
)
_PROBLEMS = re.compile(
    r"what(?:'s| is)\s+wrong|\bany (?:problems|issues|flaws)\b|what (?:should|could|can|would) (?:i|you|we) "
    rf"(?:fix|improve|change)|what do you (?:see|think|notice)|how does {_SUBJECT} look|"
    rf"\b(?:analy[sz]e|diagnose|check|inspect|assess)\s+{_SUBJECT}|is {_SUBJECT} (?:ok|okay|fine|good|alright)\b|"
    r"what(?:'s| is| are) the (?:problems?|issues?)"
)
_TOPICS: tuple[tuple[PhotoQuestion, re.Pattern[str]], ...] = (
    (
        PhotoQuestion.SIZE,
        re.compile(
            r"mega ?pixels?|\bmp\b|resolution|dimensions?|how (?:big|large)|what size|how many pixels|"
            r"pixel count|how (?:wide|tall)"
        ),
    ),
    (PhotoQuestion.ISO, re.compile(r"\biso\b")),
    (PhotoQuestion.LENS, re.compile(r"\blens\b|focal length")),
    (PhotoQuestion.SHUTTER, re.compile(r"shutter|exposure time|how long was the exposure")),
    (PhotoQuestion.APERTURE, re.compile(r"aperture|f[- ]?(?:stop|number)")),
    (PhotoQuestion.CAMERA, re.compile(r"camera|phone|taken with|shot (?:with|on)|what (?:device|model)")),
    # When the photo was taken, not what time it is now ("what time is it?" is a general question).
    (
        PhotoQuestion.TAKEN,
        re.compile(r"^when\b|date taken|\bwhat (?:date|day|time|year)\b.*\b(?:was|were|taken|shot|captured|snapped)\b"),
    ),
    (PhotoQuestion.SHARPNESS, re.compile(r"sharp|blur|in focus|out of focus|focused|soft\b|crisp")),
    (PhotoQuestion.NOISE, re.compile(r"nois|grain")),
    (PhotoQuestion.EXPOSURE, re.compile(r"dark|bright|exposed|exposure")),
)


def normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return " ".join(text.split()).strip(" .!")


def read_photo_question(message: str) -> PhotoQuestion | None:
    """What ``message`` asks about the photo (None: it is not a question about the photo)."""
    text = normalise(message)
    if not text:
        return None
    if _FIX.search(text):
        return PhotoQuestion.FIX
    if _PROBLEMS_COMMAND.search(text):
        return PhotoQuestion.PROBLEMS
    if any(_REQUEST.search(part) or asks_for_a_change(part) for part in _PARTS.split(text)):
        return None
    # A question by the same rules as ``interpret`` ("can we lose the grain?", "is there a way to fix
    # the blur?" and "is very noisy my picture" ask for a change), or "tell me ..." / "any ...".
    asking = is_question(text) or bool(_ASKING.search(text))
    if not asking:
        return None
    if _PROBLEMS.search(text):
        return PhotoQuestion.PROBLEMS
    if aside_of(text) == GENERAL_QUESTION:
        return None  # "how big is the moon?": not about the photo, as ``interpret`` reads it
    for question, pattern in _TOPICS:
        if pattern.search(text):
            return question
    return None


# What ``interpret`` says when there is no photo to look at (the command line).
NO_PHOTO_TO_LOOK_AT = (
    "That's a question about the photo, not a change to make. Open it in the editor and ask there, or run "
    "`instructir-desktop analyze PHOTO` to see what it needs."
)
NO_PHOTO_TO_FIX = (
    "I'd need to look at the photo first: `instructir-desktop analyze PHOTO` says what it needs, and "
    "`instructir-desktop restore --recipe auto PHOTO -o OUT` fixes it."
)


def question_reply(question: PhotoQuestion) -> str:
    return NO_PHOTO_TO_FIX if question is PhotoQuestion.FIX else NO_PHOTO_TO_LOOK_AT
