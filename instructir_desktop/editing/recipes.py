"""Recipes: the instruction steps of a photo's history, kept in a small TOML file to replay on others.

A recipe is a list of steps; each step is one run of the restore action: its tasks (each with the
words the network was conditioned on and, for an upscale, the factor), the strength it was
blended at, and the model that ran it when the history recorded one. Everything else a history
holds (layer edits, brush strokes, other plugins' actions, the selection a step was limited to)
does not replay on another photo, and saving says so in one sentence per step it leaves out.

The file is read with the standard library's ``tomllib`` and written with ``tomli-w``::

    format = "instructir-desktop-recipe"
    version = 1
    name = "beach.jpg"

    [[steps]]
    strength = 0.6
    model = "bundled"
    tasks = [{ task = "denoise", instruction = "remove the grain" }]

    [[steps]]
    strength = 1.0
    model = "3f1c…"
    tasks = [{ task = "upscale", instruction = "make it bigger", factor = 2, model = "3f1c…" }]

A step's ``model`` records which models ran it (for a notice when a replay runs on others); a
task's ``model`` is one chosen for it by hand ("Run this step again on"), and the replay runs it
on that model again.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from instructir_desktop.history import History, PlannedTask, StackChange, Step
from instructir_desktop.instructions.interpret import MAX_UPSCALE_FACTOR, PlanStep
from instructir_desktop.io.metadata import CameraInfo
from instructir_desktop.model.tasks import CANONICAL_INSTRUCTIONS, TASKS

RECIPE_FORMAT = "instructir-desktop-recipe"
RECIPE_VERSION = 1
RECIPE_SUFFIX = ".toml"
_MAX_RECIPE_BYTES = 1024 * 1024
_MAX_STEPS = 64
_MAX_TEXT = 500


class RecipeError(ValueError):
    """A recipe that cannot be made, read or run, in one sentence for the person."""


@dataclass(frozen=True)
class RecipeTask:
    task: str
    instruction: str
    factor: int | None = None  # upscale factor; None for the other tasks
    model: str = ""  # the model chosen for this task in the editor (a rerun); "": the task's default


@dataclass(frozen=True)
class RecipeStep:
    tasks: tuple[RecipeTask, ...]
    strength: float = 1.0
    model_id: str = ""  # the models that ran it in the editor, joined by "+" ("" : not recorded)

    def plan(self) -> tuple[PlanStep, ...]:
        """The step as the restore action's plan (what the chat would have passed it), each task on
        the model chosen for it by hand, if one was."""
        return tuple(PlanStep(task.task, 1.0, task.instruction, task.factor, task.model or None) for task in self.tasks)


@dataclass(frozen=True)
class Recipe:
    steps: tuple[RecipeStep, ...]
    name: str = ""  # where it came from, for the person (a photo's name)

    def to_toml(self) -> str:
        document: dict[str, Any] = {"format": RECIPE_FORMAT, "version": RECIPE_VERSION}
        if self.name:
            document["name"] = self.name
        document["steps"] = [_step_table(step) for step in self.steps]
        return tomli_w.dumps(document)

    @property
    def digest(self) -> str:
        """Identifies what the recipe does (not its name): an output made with it records this."""
        steps = tomli_w.dumps({"steps": [_step_table(step) for step in self.steps]})
        return hashlib.sha256(steps.encode("utf-8")).hexdigest()[:16]

    def describe(self) -> str:
        """The steps in words: "denoise (60%), then upscale ×2"."""
        parts = []
        for step in self.steps:
            tasks = " + ".join(f"{task.task} ×{task.factor}" if task.factor else task.task for task in step.tasks)
            parts.append(tasks if step.strength == 1.0 else f"{tasks} ({round(step.strength * 100)}%)")
        return ", then ".join(parts)


def _step_table(step: RecipeStep) -> dict[str, Any]:
    table: dict[str, Any] = {"strength": step.strength}
    if step.model_id:
        table["model"] = step.model_id
    table["tasks"] = [
        {
            "task": task.task,
            "instruction": task.instruction,
            **({"factor": task.factor} if task.factor else {}),
            **({"model": task.model} if task.model else {}),
        }
        for task in step.tasks
    ]
    return table


# ---------------------------------------------------------------------------------------------- from a history


@dataclass(frozen=True)
class SavedRecipe:
    """What ``recipe_from_history`` made, and the steps it left out, one sentence each."""

    recipe: Recipe
    notices: tuple[str, ...] = ()


def recipe_from_history(history: History, name: str = "") -> SavedRecipe:
    """The applied instruction steps of ``history`` as a recipe (RecipeError when it has none)."""
    steps: list[RecipeStep] = []
    notices: list[str] = []
    for step in history.steps[: history.index]:
        tasks = _tasks_of(step)
        if not tasks:
            notices.append(f"“{step.label}” is not an instruction, so the recipe leaves it out.")
            continue
        if _was_local(step):
            notices.append(f"“{step.label}” was limited to a selection; the recipe applies it to the whole photo.")
        steps.append(RecipeStep(tasks, round(float(step.strength), 4), step.model_id))
    if not steps:
        raise RecipeError("This photo's history has no instruction steps to save as a recipe.")
    return SavedRecipe(Recipe(tuple(steps), name), tuple(notices))


def recorded_plan(plan: Sequence[PlanStep]) -> tuple[PlannedTask, ...]:
    """A run's plan as the history keeps it with the step (plain data, for recipes)."""
    return tuple(PlannedTask(step.task, step.instruction, step.factor, step.model or "") for step in plan)


def _tasks_of(step: Step) -> tuple[RecipeTask, ...]:
    if step.plan:
        return tuple(RecipeTask(task.task, task.instruction, task.factor, task.model) for task in step.plan)
    # A step from before plans were recorded: its tasks in their canonical words.
    if not step.tasks or any(task not in TASKS for task in step.tasks):
        return ()
    factor = _upscale_factor(step)
    return tuple(
        RecipeTask(task, CANONICAL_INSTRUCTIONS[task], factor if task == "upscale" else None) for task in step.tasks
    )


def _upscale_factor(step: Step) -> int | None:
    change = step.change
    if isinstance(change, StackChange) and change.before.height:
        return max(1, change.after.height // change.before.height)
    return None


def _was_local(step: Step) -> bool:
    change = step.change
    return change is not None and change.restoration is not None and change.restoration.mask is not None


# ---------------------------------------------------------------------------------------------- files


def save_recipe(path: str | os.PathLike[str], recipe: Recipe) -> Path:
    """Write ``recipe`` to ``path`` (beside it first, then renamed over it)."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.saving")
    try:
        partial.write_text(recipe.to_toml(), encoding="utf-8")
        os.replace(partial, target)
    except OSError as error:
        raise RecipeError(f"{target.name}: the recipe could not be written ({error.strerror or error}).") from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read a recipe file; anything wrong with it is one RecipeError sentence naming the file."""
    source = Path(path)
    try:
        if source.stat().st_size > _MAX_RECIPE_BYTES:
            raise RecipeError(f"{source.name} is too large to be a recipe.")
        text = source.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{source}: no such recipe file.") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{source.name} is not a recipe (it is not UTF-8 text).") from None
    except OSError as error:
        raise RecipeError(f"{source.name} cannot be read ({error.strerror or error}).") from None
    try:
        return parse_recipe(text)
    except RecipeError as error:
        raise RecipeError(f"{source.name}: {error}") from None


def parse_recipe(text: str) -> Recipe:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"not a valid TOML file ({error})") from None
    if document.get("format") != RECIPE_FORMAT:
        raise RecipeError("this is not an InstructIR Desktop recipe")
    version = document.get("version")
    if version != RECIPE_VERSION:
        raise RecipeError(f"recipe version {version!r} is not supported (this program reads version {RECIPE_VERSION})")
    name = document.get("name", "")
    tables = document.get("steps")
    if not isinstance(name, str) or not isinstance(tables, list) or not tables:
        raise RecipeError("the recipe has no steps")
    if len(tables) > _MAX_STEPS:
        raise RecipeError(f"the recipe has more than {_MAX_STEPS} steps")
    return Recipe(tuple(_parse_step(table, number) for number, table in enumerate(tables, 1)), name[:_MAX_TEXT])


def _parse_step(table: object, number: int) -> RecipeStep:
    where = f"step {number}"
    if not isinstance(table, dict):
        raise RecipeError(f"{where} is not a table")
    strength = table.get("strength", 1.0)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise RecipeError(f"{where}: strength must be a number from 0 to 1")
    model = table.get("model", "")
    if not isinstance(model, str) or len(model) > _MAX_TEXT:
        raise RecipeError(f"{where}: model must be a model id")
    entries = table.get("tasks")
    if not isinstance(entries, list) or not entries or len(entries) > len(TASKS) * 2:
        raise RecipeError(f"{where} has no tasks")
    return RecipeStep(tuple(_parse_task(entry, where) for entry in entries), float(strength), model)


def _parse_task(entry: object, where: str) -> RecipeTask:
    if not isinstance(entry, dict):
        raise RecipeError(f"{where}: a task is not a table")
    task = entry.get("task")
    if task not in TASKS:
        raise RecipeError(f"{where}: unknown task {task!r} (known: {', '.join(TASKS)})")
    instruction = entry.get("instruction", CANONICAL_INSTRUCTIONS[task])
    if not isinstance(instruction, str) or not instruction.strip() or len(instruction) > _MAX_TEXT:
        raise RecipeError(f"{where}: the instruction for {task} must be text")
    factor = entry.get("factor")
    if task == "upscale":
        factor = 2 if factor is None else factor
        if isinstance(factor, bool) or not isinstance(factor, int) or not 2 <= factor <= MAX_UPSCALE_FACTOR:
            raise RecipeError(f"{where}: the upscale factor must be a whole number from 2 to {MAX_UPSCALE_FACTOR}")
    elif factor is not None:
        raise RecipeError(f"{where}: only upscale takes a factor")
    model = entry.get("model", "")
    if not isinstance(model, str) or len(model) > _MAX_TEXT:
        raise RecipeError(f"{where}: the model for {task} must be a model id")
    return RecipeTask(str(task), instruction, factor, model)


# ---------------------------------------------------------------------------------------------- auto

# The photo analysis: given a photo's pixels (float RGB in [0, 1]), the steps that would fix it,
# most important first (empty: nothing to fix). ``--recipe auto`` and the editor's folder runs ask
# it for each photo's own recipe: ``editing.analysis`` unless another is registered with
# ``set_photo_analysis``.
# The camera's record (EXIF ISO, exposure time) is evidence too, when the file has one.
PhotoAnalysis = Callable[[np.ndarray, CameraInfo | None], Sequence[PlanStep]]
AUTO = "auto"
ANALYSIS_UNAVAILABLE = (
    "“auto” needs the photo analysis, which this installation does not have; save a recipe from the editor "
    "(File ▸ Save as recipe…) and pass its file instead."
)


def builtin_photo_analysis(rgb: np.ndarray, camera: CameraInfo | None = None) -> Sequence[PlanStep]:
    """The editor's own analysis: the steps that fix this photo, in the order they should run."""
    from instructir_desktop.editing.analysis import fix_plan  # numpy only, but not needed by every recipe

    return fix_plan(rgb, camera)


_photo_analysis: list[PhotoAnalysis] = [builtin_photo_analysis]


def set_photo_analysis(analysis: PhotoAnalysis | None) -> None:
    """Register the analysis that ``auto`` recipes run (None: there is none)."""
    _photo_analysis.clear()
    if analysis is not None:
        _photo_analysis.append(analysis)


def photo_analysis_available() -> bool:
    return bool(_photo_analysis)


def auto_recipe(rgb: np.ndarray, name: str = "", camera: CameraInfo | None = None) -> Recipe:
    """This photo's own recipe, from the analysis: one step of every task it suggests (no steps:
    nothing to fix). RecipeError when there is no analysis."""
    if not _photo_analysis:
        raise RecipeError(ANALYSIS_UNAVAILABLE)
    plan = tuple(_photo_analysis[0](rgb, camera))
    if not plan:
        return Recipe((), name)
    tasks = tuple(RecipeTask(step.task, step.instruction, step.factor) for step in plan)
    return Recipe((RecipeStep(tasks),), name)
