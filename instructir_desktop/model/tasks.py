"""The restoration tasks the network knows, in the order of the published 7-task head."""

from __future__ import annotations

TASKS: tuple[str, ...] = ("denoise", "deblur", "derain", "dehaze", "lowlight", "enhance", "upscale")
NONE_CLASS = "none"
# Our text head adds a last "none" row for messages that ask for nothing restorable.
CLASS_NAMES: tuple[str, ...] = (*TASKS, NONE_CLASS)

TASK_TITLES: dict[str, str] = {
    "denoise": "Remove noise",
    "deblur": "Remove blur",
    "derain": "Remove rain",
    "dehaze": "Remove haze",
    "lowlight": "Brighten low light",
    "enhance": "Enhance colours",
    "upscale": "Upscale",
}


def check_task(name: str) -> str:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return name
