"""Acting only on what the text model is sure of: below a threshold a step is asked about, not run.

The interpreter already leaves out what it reads as no restoration at all. A step it kept but is
unsure of ("make the car red" read as a colour enhance at 41 %) would still change the photo, so
the assistant offers it as a suggestion to press instead ("Did you mean: Enhance colours?"), and
the reply says so. Steps the person picked by hand (a chip, Run again, a suggestion) have full
confidence and always run.
"""

from __future__ import annotations

from dataclasses import dataclass

from instructir_desktop.editing import replies
from instructir_desktop.instructions.interpret import Interpretation, PlanStep, Suggestion

# Below this the assistant asks before acting. The text model's own floor (``MIN_TASK_PROBABILITY``)
# only drops clauses that are no restoration at all; this one keeps weak guesses off the photo.
DEFAULT_CONFIDENCE_THRESHOLD = 0.5


@dataclass(frozen=True)
class GatedPlan:
    """An interpretation split into what runs and what is only offered, with the reply that says so."""

    steps: tuple[PlanStep, ...]  # sure enough to run, in order
    offered: tuple[Suggestion, ...]  # chips to press: weak guesses, then the interpreter's own suggestions
    text: str


def gate(interpretation: Interpretation, threshold: float) -> GatedPlan:
    """Keep the steps at or above ``threshold``; offer the others. The reply describes exactly the
    steps kept (never the plan before gating), so the words and the chips agree."""
    sure = tuple(step for step in interpretation.steps if step.confidence >= threshold)
    unsure = tuple(
        Suggestion(step.task, step.instruction) for step in interpretation.steps if step.confidence < threshold
    )
    offered = _unique((*unsure, *interpretation.suggestions), {step.task for step in sure})
    if not interpretation.steps:
        # Nothing restorable was asked (or a question about the photo): the interpreter's answer.
        return GatedPlan((), offered, interpretation.reply)
    if not sure:
        return GatedPlan((), offered, replies.unsure_reply(offered))
    if not unsure:
        return GatedPlan(sure, offered, replies.plan_reply(sure, interpretation.ignored, (), _caveat(interpretation)))
    text = replies.plan_reply(sure, interpretation.ignored, unsure, _caveat(interpretation))
    return GatedPlan(sure, offered, text)


def _caveat(interpretation: Interpretation) -> str:
    return replies.caveat_of(interpretation.reply)


def _unique(suggestions: tuple[Suggestion, ...], running: set[str]) -> tuple[Suggestion, ...]:
    """One chip per task, none for a task that runs anyway."""
    seen = set(running)
    kept = []
    for suggestion in suggestions:
        if suggestion.task not in seen:
            seen.add(suggestion.task)
            kept.append(suggestion)
    return tuple(kept)
