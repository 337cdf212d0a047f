"""Turning a chat message into a plan: an ordered list of restoration steps.

Grammar only splits the message into clauses ("remove the noise, then brighten it" → two
clauses) and reads numbers such as an upscale factor. What each clause asks for is decided by
the text model: the frozen sentence encoder and the trained head, which also knows a ``none``
class for requests the network cannot do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from instructir_desktop.instructions import intent
from instructir_desktop.instructions.questions import question_reply, read_photo_question
from instructir_desktop.model.tasks import CANONICAL_INSTRUCTIONS, NONE_CLASS, TASK_TITLES, TASK_WORDS, TASKS

if TYPE_CHECKING:  # model.text imports torch; this module is imported on the GUI thread
    from instructir_desktop.model.text import EncodedInstruction, InstructionEncoder

MIN_TASK_PROBABILITY = intent.MIN_TASK_PROBABILITY
DEFAULT_UPSCALE_FACTOR = 2
MAX_UPSCALE_FACTOR = 8

CAPABILITIES_REPLY = intent.CAPABILITIES


@dataclass(frozen=True)
class PlanStep:
    task: str
    confidence: float
    instruction: str  # the words the network is conditioned on
    factor: int | None = None  # upscale factor
    # The model that runs this step (an id from the model store); None: the task's default model.
    model: str | None = None

    def on_model(self, model: str | None) -> PlanStep:
        """The same step, run on ``model`` (None: the task's default)."""
        return replace(self, model=model)

    def with_task(self, task: str) -> PlanStep:
        """The same step switched to another task by hand (full confidence, canonical wording)."""
        factor = (self.factor or DEFAULT_UPSCALE_FACTOR) if task == "upscale" else None
        return PlanStep(task, 1.0, CANONICAL_INSTRUCTIONS[task], factor)

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"task": self.task, "confidence": round(self.confidence, 4)}
        if self.factor is not None:
            data["factor"] = self.factor
        if self.model is not None:
            data["model"] = self.model
        return data


@dataclass(frozen=True)
class Suggestion:
    """A task the person may have meant, offered to press rather than run: what it does and the
    words the network would be conditioned on."""

    task: str
    instruction: str
    # An offer that is not a guess about the person's words (the photo analysis): the chip says
    # ``label`` ("Remove noise", "Fix all"), ``reason`` explains it, and ``steps`` (when given) is
    # the plan it runs, several steps in order.
    label: str = ""
    reason: str = ""
    steps: tuple[PlanStep, ...] = ()


@dataclass(frozen=True)
class Interpretation:
    message: str
    steps: tuple[PlanStep, ...]
    ignored: tuple[str, ...] = field(default_factory=tuple)
    reply: str = ""
    # Offered instead of run (a guess too weak to act on, a question about the photo): chips to press.
    suggestions: tuple[Suggestion, ...] = ()
    # Clauses read as a question or an edit the network cannot do, never run (``intent.aside_of``).
    declined: tuple[intent.Declined, ...] = ()

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "instruction": self.message,
            "steps": [s.to_dict() for s in self.steps],
            "reply": self.reply,
        }
        if self.suggestions:
            data["suggestions"] = [s.task for s in self.suggestions]
        return data


def step_for_task(task: str, factor: int | None = None) -> PlanStep:
    """A step chosen directly (menus, command line), with the canonical wording."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return PlanStep(
        task, 1.0, CANONICAL_INSTRUCTIONS[task], factor or (DEFAULT_UPSCALE_FACTOR if task == "upscale" else None)
    )


# ----------------------------------------------------------------------------- clauses

# Connectors that end one request and start the next, in the order the person wants them.
_SEQUENCE_SPLIT = re.compile(
    r"\s*(?:[;.!?]+\s+|\n+|,?\s*\b(?:and\s+then|then|after\s+that|afterwards|after\s+which|next|also|plus|"
    r"followed\s+by|and\s+finally|finally|as\s+well\s+as|before)\b\s*,?\s*|,\s*(?:and\s+)?|"
    # "black and white" is one colour, not two requests.
    r"(?<!\bblack)\s+and\s+(?=\w)(?!white\b))",
    re.IGNORECASE,
)
# "brighten it after removing the noise": the clause after "after" happens first.
_AFTER = re.compile(r"^(?P<later>.+?)\s*,?\s+(?:after|once)\s+(?P<earlier>.+)$", re.IGNORECASE)
_LEADING_FILLER = re.compile(
    r"^(?:first(?:ly)?|to\s+start|start\s+by|begin\s+by|and|so|please|pls|,)\s+", re.IGNORECASE
)


def split_clauses(message: str) -> list[str]:
    """Split a message into request-sized clauses, keeping the order the steps should run in."""
    text = " ".join(message.strip().split())
    if not text:
        return []
    clauses: list[str] = []
    for part in _SEQUENCE_SPLIT.split(text):
        part = part.strip(" ,;.!?")
        if not part:
            continue
        after = _AFTER.match(part)
        pieces = [after.group("earlier"), after.group("later")] if after else [part]
        for piece in pieces:
            piece = _LEADING_FILLER.sub("", piece.strip(" ,;.!?"))
            if piece:
                clauses.append(piece)
    return clauses


# ----------------------------------------------------------------------------- numbers

_WORD_FACTORS = {
    "double": 2,
    "twice": 2,
    "two times": 2,
    "triple": 3,
    "three times": 3,
    "thrice": 3,
    "quadruple": 4,
    "four times": 4,
    "eight times": 8,
}
# "×" is not a word character, so it must not sit next to a \b ("4×", "×4" would never match).
_NUMERIC_FACTOR = re.compile(
    r"(?:\b|×|x)(\d+(?:\.\d+)?)\s*(?:(?:x|times)\b|×)|(?<!\w)(?:x|×)\s*(\d+(?:\.\d+)?)\b", re.IGNORECASE
)
_PERCENT = re.compile(r"\b(\d{3,4})\s*%")
_TARGET_WIDTHS = {
    "8k": 7680,
    "4k": 3840,
    "uhd": 3840,
    "2160p": 3840,
    "1440p": 2560,
    "2k": 2048,
    "1080p": 1920,
    "full hd": 1920,
}


def upscale_factor(text: str, image_size: tuple[int, int] | None = None) -> int:
    """The factor a clause asks for ("2x", "four times", "double", "to 4K"), default 2."""
    lowered = text.lower()
    match = _NUMERIC_FACTOR.search(lowered)
    if match:
        value = float(match.group(1) or match.group(2))
        return _clamp_factor(round(value))
    percent = _PERCENT.search(lowered)
    if percent:
        return _clamp_factor(round(int(percent.group(1)) / 100))
    for words, factor in _WORD_FACTORS.items():
        if re.search(rf"\b{words}\b", lowered):
            return factor
    if image_size is not None:
        for name, target in _TARGET_WIDTHS.items():
            if re.search(rf"\b{re.escape(name)}\b", lowered):
                longest = max(image_size)
                return _clamp_factor(max(1, -(-target // max(1, longest))))
    return DEFAULT_UPSCALE_FACTOR


def _clamp_factor(value: int) -> int:
    return max(2, min(MAX_UPSCALE_FACTOR, int(value)))


# ----------------------------------------------------------------------------- interpretation


class Interpreter:
    """Clause splitting + the text model's classification of each clause."""

    def __init__(self, encoder: InstructionEncoder, classes: Sequence[str]) -> None:
        self.encoder = encoder
        self.classes = tuple(classes)
        self._task_columns = [self.classes.index(t) for t in TASKS if t in self.classes]
        self._none_column = self.classes.index(NONE_CLASS) if NONE_CLASS in self.classes else None

    def classify(self, encoded: EncodedInstruction) -> tuple[str, float]:
        """The most likely class of a clause and its probability."""
        probabilities = encoded.probabilities
        best = int(np.argmax(probabilities))
        return self.classes[best], float(probabilities[best])

    def interpret(
        self,
        message: str,
        image_size: tuple[int, int] | None = None,
        threshold: float = intent.DEFAULT_CONFIDENCE_THRESHOLD,
    ) -> Interpretation:
        """The plan for ``message``: steps sure at ``threshold`` run; weaker guesses, questions and edits
        the network cannot do are only offered or explained (``intent.gate``)."""
        question = read_photo_question(message)
        if question is not None:  # asks about the photo: an answer in words, never a step
            return Interpretation(message, (), (), question_reply(question))
        clauses = split_clauses(message)
        if not clauses:
            return Interpretation(message, (), (), CAPABILITIES_REPLY)
        encoded = self.encoder.encode([message, *clauses])
        whole, parts = encoded[0], encoded[1:]
        steps: list[PlanStep] = []
        ignored: list[str] = []
        declined: list[intent.Declined] = []
        for clause, clause_encoding in zip(clauses, parts, strict=True):
            label, probability = self.classify(clause_encoding)
            if (aside := intent.aside_of(clause)) is not None:
                declined.append(intent.decline(clause, aside, label, probability, MIN_TASK_PROBABILITY))
                continue
            if label == NONE_CLASS or probability < MIN_TASK_PROBABILITY:
                ignored.append(clause)
                continue
            factor = upscale_factor(clause, image_size) if label == "upscale" else None
            if steps and steps[-1].task == label:
                # "remove the noise and the grain": one step, not the same step twice.
                if probability > steps[-1].confidence:
                    steps[-1] = PlanStep(label, probability, clause, factor)
                continue
            if any(s.task == label for s in steps):
                continue
            steps.append(PlanStep(label, probability, clause, factor))
        if not steps and len(clauses) > 1 and intent.aside_of(message) is None:
            # Splitting can cut a single request into fragments that mean nothing alone.
            label, probability = self.classify(whole)
            if label != NONE_CLASS and probability >= MIN_TASK_PROBABILITY:
                factor = upscale_factor(message, image_size) if label == "upscale" else None
                steps.append(PlanStep(label, probability, message, factor))
                ignored, declined = [], []
        candidates = Interpretation(
            message, tuple(steps), tuple(ignored), compose_reply(steps, ignored), declined=tuple(declined)
        )
        return intent.gate(candidates, threshold)


def compose_reply(steps: Sequence[PlanStep], ignored: Sequence[str]) -> str:
    if not steps:
        if ignored and all(len(c.split()) <= 2 for c in ignored):
            return "Hello! " + CAPABILITIES_REPLY
        return "That isn't something I can do to a photo. " + CAPABILITIES_REPLY
    phrases = []
    for step in steps:
        phrase = TASK_WORDS[step.task].phrase
        if step.task == "upscale":
            phrase = f"upscale it {step.factor or DEFAULT_UPSCALE_FACTOR}×"
        phrases.append(phrase)
    plan = phrases[0] if len(phrases) == 1 else ", then ".join(phrases)
    reply = f"I'll {plan}."
    if ignored:
        skipped = "; ".join(f'"{c}"' for c in ignored)
        reply += f" I'll leave out {skipped}: that isn't something I can do."
    return reply


def compose_caveat(steps: Sequence[PlanStep], weak: Mapping[str, float]) -> str:
    """A sentence saying the model barely does some of the planned steps ("" if none): ``weak``
    maps tasks to the gain in dB the model's evaluation measured."""
    named = list(dict.fromkeys(step.task for step in steps if step.task in weak))
    if not named:
        return ""
    measured = "; ".join(f"{TASK_TITLES[task].lower()} {weak[task]:+.1f} dB" for task in named)
    return (
        f" Note: the current model barely improves this ({measured} in its evaluation), so expect "
        "a small change; its model card says more."
    )


def describe_step(step: PlanStep) -> str:
    title = TASK_TITLES[step.task]
    return f"{title} {step.factor}×" if step.task == "upscale" and step.factor else title


def plan_summary(steps: Sequence[PlanStep]) -> str:
    """``denoise → upscale ×2``: a plan in one line, for logs and the command line."""
    return " → ".join(
        f"{s.task}{f' ×{s.factor}' if s.factor else ''}{f' @{s.model}' if s.model else ''}" for s in steps
    )


def parse_plan(text: str) -> tuple[PlanStep, ...]:
    """A plan written by hand, ``denoise, upscale x2`` (tasks with the canonical wording, in order);
    ``denoise @ffdnet-286f04f7`` runs a step on a model from the store."""
    steps = []
    for part in re.split(r"\s*(?:,|;|→|->|\bthen\b)\s*", text.strip()):
        if not part:
            continue
        match = re.fullmatch(r"([a-z]+)(?:\s*[x×]?\s*(\d+))?(?:\s*@\s*([a-z0-9][a-z0-9._-]*))?", part.lower())
        if match is None or match.group(1) not in TASKS:
            raise ValueError(f"{part!r} is not a step; write tasks from {', '.join(TASKS)}, e.g. 'denoise, upscale x2'")
        task, factor = match.group(1), match.group(2)
        if factor is not None and task != "upscale":
            raise ValueError(f"{part!r}: only upscale takes a factor")
        step = step_for_task(task, None if factor is None else _clamp_factor(int(factor)))
        steps.append(step.on_model(match.group(3)) if match.group(3) else step)
    return tuple(steps)
