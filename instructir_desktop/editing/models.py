"""The editor's model choices: what the Models window lists and changes, and which models a chat
step can be run on again. No Qt: the window renders this and sends it what the person does.

Every change goes to the model store at once (the engine reads it for each step), and every
failure is one sentence for the person (``ModelChoiceError``), never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from instructir_desktop.editing.engine_client import EngineClient
from instructir_desktop.inference.requests import ActionRequest, Finished, JobContext, JobEnd
from instructir_desktop.instructions.interpret import PlanStep
from instructir_desktop.model.errors import WeightsError
from instructir_desktop.model.store import BUNDLED_MODEL_ID, ModelStore, StoredModel
from instructir_desktop.model.tasks import TASK_TITLES

# Files a person may drop on the Models window or pick in its file dialog.
MODEL_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


# The ids the store gives (``<architecture>-<8 hex digits of the file's hash>``); a history step's
# ``model_id`` joins the ids of the models that ran its plan with "+".
_STORE_ID = re.compile(r"^[a-z0-9_]+-[0-9a-f]{8}$")


def added_models_in(model_id: str) -> list[str]:
    """The store's models among those that made a history step (the bundled one is not named)."""
    return [part for part in model_id.split("+") if _STORE_ID.match(part)]


class ModelChoiceError(Exception):
    """A model could not be added, removed or chosen; the message is one sentence for the person."""


@dataclass(frozen=True)
class ModelOption:
    """One entry of a chip's "Run this step on" menu."""

    model_id: str  # "bundled" for the built-in model
    label: str
    ran: bool  # the model that ran this step


class ModelChoices:
    def __init__(self, store: ModelStore | None = None) -> None:
        self._store = store

    @property
    def store(self) -> ModelStore:
        # Created on first use, so the folder follows the environment the editor runs in.
        if self._store is None:
            self._store = ModelStore()
        return self._store

    def models(self) -> list[StoredModel]:
        try:
            return self.store.list()
        except WeightsError as error:
            raise ModelChoiceError(str(error)) from None

    def for_task(self, task: str) -> list[StoredModel]:
        """The models that can run ``task``, the bundled one first."""
        return [model for model in self.models() if task in model.tasks]

    def label(self, model_id: str) -> str:
        """How a chip or a reply names a model ("" and "bundled": the built-in one)."""
        wanted = model_id or BUNDLED_MODEL_ID
        try:
            return self.store.find(wanted).label
        except (KeyError, WeightsError):
            return model_id  # removed since: its id is all there is

    def options(self, step: PlanStep) -> list[ModelOption]:
        """What a chip's menu offers for ``step`` (which ran on ``step.model``; None: the bundled)."""
        ran = step.model or BUNDLED_MODEL_ID
        try:
            candidates = self.for_task(step.task)
        except ModelChoiceError:
            return []
        return [ModelOption(model.id, model.label, model.id == ran) for model in candidates]

    def add(
        self, path: str | os.PathLike[str], tasks: Sequence[str] = (), *, make_default: bool = False
    ) -> StoredModel:
        try:
            return self.store.add(path, tasks=tasks, make_default=make_default)
        except (WeightsError, ValueError) as error:
            raise ModelChoiceError(str(error)) from None
        except FileExistsError as error:
            raise ModelChoiceError(str(error.args[0])) from None

    def remove(self, model_id: str) -> StoredModel:
        try:
            return self.store.remove(model_id)
        except KeyError as error:
            raise ModelChoiceError(str(error.args[0])) from None
        except (WeightsError, ValueError) as error:
            raise ModelChoiceError(str(error)) from None

    def set_default(self, task: str, model_id: str) -> StoredModel:
        try:
            return self.store.set_default(task, model_id)
        except KeyError as error:
            raise ModelChoiceError(str(error.args[0])) from None
        except (WeightsError, ValueError) as error:
            raise ModelChoiceError(str(error)) from None


@dataclass(frozen=True)
class AddReport:
    """What adding some files did: the ids added, and one line per file."""

    added: tuple[str, ...]
    lines: tuple[str, ...]


def add_files(choices: ModelChoices, paths: Sequence[str | os.PathLike[str]], tasks: Sequence[str]) -> AddReport:
    added: list[str] = []
    lines: list[str] = []
    for path in paths:
        try:
            model = choices.add(path, tasks)
        except ModelChoiceError as error:
            lines.append(str(error))
            continue
        added.append(model.id)
        titles = ", ".join(TASK_TITLES[task] for task in model.tasks)
        lines.append(f"Added {model.label} for {titles}; choose it below to make it the default.")
    return AddReport(tuple(added), tuple(lines))


def add_files_on_worker(
    client: EngineClient,
    choices: ModelChoices,
    paths: Sequence[str | os.PathLike[str]],
    tasks: Sequence[str],
    then: Callable[[AddReport], None],
) -> None:
    """``add_files`` on the engine's worker (reading a file and building its network takes torch and
    seconds: never on the window's thread); ``then`` gets the report on the loop's thread."""
    paths, tasks = tuple(paths), tuple(tasks)

    def work(_context: JobContext) -> AddReport:
        return add_files(choices, paths, tasks)

    def finished(end: JobEnd[AddReport]) -> None:
        if isinstance(end, Finished):
            then(end.result)
        else:
            then(AddReport((), (f"Adding was stopped: {getattr(end, 'message', 'cancelled')}",)))

    job = client.submit(ActionRequest(run=work, label="Adding a model"))
    job.end.add_done_callback(lambda done: finished(done.result()))


def rerun_label(step: PlanStep, model_label: str) -> str:
    """The history's words for a step run again on another model: ``Remove noise on FFDNet colour``."""
    return f"{TASK_TITLES[step.task]} on {model_label}"
