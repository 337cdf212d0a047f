"""The restoration tasks the network knows, in the order of the published 7-task head, and the
words that go with each: one table, so a title, a reply's phrase and the instruction the network
is conditioned on can never disagree about which tasks exist."""

from __future__ import annotations

from dataclasses import dataclass

TASKS: tuple[str, ...] = ("denoise", "deblur", "derain", "dehaze", "lowlight", "enhance", "upscale")
NONE_CLASS = "none"
# Our text head adds a last "none" row for messages that ask for nothing restorable.
CLASS_NAMES: tuple[str, ...] = (*TASKS, NONE_CLASS)


@dataclass(frozen=True)
class TaskWords:
    title: str  # a menu entry, a chip, a history line
    phrase: str  # the reply's "I'll <phrase>"
    # A plain, typical instruction: the network's conditioning when a task is chosen by hand, and
    # the instruction that evaluation and validation restore with.
    instruction: str


TASK_WORDS: dict[str, TaskWords] = {
    "denoise": TaskWords("Remove noise", "remove the noise", "Remove the noise from this photo"),
    "deblur": TaskWords("Remove blur", "remove the blur", "This photo is blurry, please sharpen it"),
    "derain": TaskWords("Remove rain", "remove the rain", "Remove the rain from the picture"),
    "dehaze": TaskWords("Remove haze", "clear the haze", "Remove the haze and fog from this image"),
    "lowlight": TaskWords("Brighten low light", "brighten it", "This photo is too dark, brighten it"),
    "enhance": TaskWords(
        "Enhance colours", "enhance the colours", "Make the colours more vivid and improve the contrast"
    ),
    "upscale": TaskWords("Upscale", "upscale it", "Increase the resolution of this image"),
}
assert tuple(TASK_WORDS) == TASKS, "every task needs its words, in the head's order"

TASK_TITLES: dict[str, str] = {task: words.title for task, words in TASK_WORDS.items()}
CANONICAL_INSTRUCTIONS: dict[str, str] = {task: words.instruction for task, words in TASK_WORDS.items()}


def check_task(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return name
