"""Recipes in the editor: save the open photo's steps as one, and run one on a folder of photos.

The folder runs as one engine job (the one background mechanism): progress arrives as the
engine's Progress events and becomes ``RecipeBatchChanged``; cancel is the engine's cooperative
cancel, checked between photos and inside each restoration. Outputs finished before a cancel stay,
and running the same recipe on the same folders again does only the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.editing.engine_client import EngineClient, EngineJob
from instructir_desktop.editing.events import Level, SessionEvent, StatusMessage
from instructir_desktop.editing.recipe_runs import RecipeBatch, RecipeJob, Tally, folder_jobs
from instructir_desktop.editing.recipes import (
    ANALYSIS_UNAVAILABLE,
    AUTO,
    Recipe,
    RecipeError,
    SavedRecipe,
    load_recipe,
    photo_analysis_available,
    recipe_from_history,
    save_recipe,
)
from instructir_desktop.editing.workspace import Workspace
from instructir_desktop.inference.engine import JobCancelled
from instructir_desktop.inference.requests import (
    ActionRequest,
    Cancelled,
    Failed,
    Finished,
    JobContext,
    Notice,
    Progress,
)
from instructir_desktop.io import ExportOptions
from instructir_desktop.plugins.api import ActionCancelled
from instructir_desktop.plugins.host import PluginHost
from instructir_desktop.plugins.jobs import EngineServices


class FolderState(Enum):
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(eq=False)
class FolderRun:
    """One recipe on one folder, as the person sees it: how far, what is being done, how it ended."""

    folder: Path
    output_folder: Path
    tally: Tally
    fraction: float = 0.0
    label: str = ""
    state: FolderState = FolderState.RUNNING
    message: str = ""  # how it ended, in a sentence
    job: EngineJob[Tally] | None = field(default=None, repr=False)

    @property
    def ended(self) -> bool:
        return self.state is not FolderState.RUNNING


@dataclass(frozen=True, eq=False)
class RecipeBatchChanged(SessionEvent):
    run: FolderRun


@dataclass(frozen=True, eq=False)
class RecipePhotoDone(SessionEvent):
    """One more photo of the folder is finished (``run.tally`` says how)."""

    run: FolderRun


@dataclass(frozen=True, eq=False)
class RecipeBatchEnded(SessionEvent):
    run: FolderRun


class _PhotoServices(EngineServices):
    """The engine job's services, with one photo's progress reported as its share of the batch."""

    def __init__(self, job: JobContext, report: Callable[[float], None]) -> None:
        super().__init__(job)
        self._report = report

    def progress(
        self,
        fraction: float,
        message: str = "",
        *,
        tiles_done: int = 0,
        tiles_total: int = 0,
        eta_seconds: float | None = None,
    ) -> None:
        self._report(fraction)


class RecipeFolders:
    def __init__(
        self,
        workspace: Workspace,
        client: EngineClient,
        plugins: Callable[[], PluginHost | None],
        dispatcher: Dispatcher,
    ) -> None:
        self._workspace = workspace
        self._client = client
        self._plugins = plugins
        self._dispatcher = dispatcher
        self.active: FolderRun | None = None
        dispatcher.subscribe(Progress, self._on_progress)
        dispatcher.subscribe(Notice, self._on_photo_done)

    # ------------------------------------------------------------------ saving

    def save(self, path: str | os.PathLike[str]) -> SavedRecipe:
        """Save the open photo's applied instruction steps as a recipe at ``path`` (RecipeError:
        nothing to save, or the file could not be written); the notices say what was left out."""
        history = self._workspace.history
        if history is None:
            raise RecipeError("Open a photo and restore it first: a recipe is the steps of its history.")
        name = self._workspace.path.name if self._workspace.path is not None else ""
        saved = recipe_from_history(history, name)
        target = save_recipe(path, saved.recipe)
        words = f"Saved the recipe “{saved.recipe.describe()}” as {target.name}."
        self._dispatcher.emit(StatusMessage(" ".join([words, *saved.notices])))
        return saved

    # ------------------------------------------------------------------ running on a folder

    def apply_to_folder(
        self, recipe: str | os.PathLike[str], folder: str | os.PathLike[str], output_folder: str | os.PathLike[str]
    ) -> FolderRun:
        """Run the recipe file (or ``"auto"``) on the photos in ``folder``, into ``output_folder``.
        RecipeError (one sentence) when it cannot start."""
        if self.active is not None and not self.active.ended:
            raise RecipeError("A recipe is already running on a folder; wait for it or cancel it first.")
        host = self._plugins()
        if host is None:
            raise RecipeError("Recipes run through the restore plugin, and no plugins are loaded.")
        request = self._request(recipe)
        source, target = Path(folder), Path(output_folder)
        if not source.is_dir():
            raise RecipeError(f"{source} is not a folder.")
        jobs = folder_jobs(source, target)
        if not jobs:
            raise RecipeError(f"There are no photos in {source}.")
        if source.resolve() == target.resolve():
            raise RecipeError("Choose another folder for the results, so the photos themselves are kept.")
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RecipeError(f"{target} cannot be made ({error.strerror or error}).") from None
        tally = Tally(total=len(jobs))
        run = FolderRun(source, target, tally, label=f"0 of {len(jobs)}")

        def work(job: JobContext) -> Tally:
            batch = RecipeBatch(host, request, lambda report: _PhotoServices(job, report), ExportOptions(), tally=tally)

            def photo_done(done: RecipeJob) -> None:
                job.notice(f"{done.source.name}: {tally.finished} of {tally.total} done")  # never throttled
                job.check_cancel()  # between photos as well as inside each restoration

            try:
                return batch.run(jobs, lambda fraction, label: job.progress(fraction, label), photo_done)
            except ActionCancelled:
                raise JobCancelled() from None

        run.job = self._client.submit(ActionRequest(run=work, label="Recipe on a folder"))
        self.active = run
        run.job.end.add_done_callback(lambda done: self._ended(run, done.result()))
        self._dispatcher.emit(RecipeBatchChanged(run))
        return run

    def _request(self, recipe: str | os.PathLike[str]) -> Recipe | str:
        if os.fspath(recipe) == AUTO:
            if not photo_analysis_available():
                raise RecipeError(ANALYSIS_UNAVAILABLE)
            return AUTO
        return load_recipe(recipe)

    def cancel(self) -> None:
        """Stop the folder run at its next check; what was finished stays."""
        run = self.active
        if run is not None and not run.ended and run.job is not None:
            self._client.cancel(run.job)

    def _on_progress(self, event: Progress) -> None:
        run = self.active
        if run is None or run.ended or run.job is None or event.request_id != run.job.request_id:
            return
        run.fraction = event.fraction
        run.label = event.stage
        self._dispatcher.emit(RecipeBatchChanged(run))

    def _on_photo_done(self, event: Notice) -> None:
        run = self.active
        if run is None or run.ended or run.job is None or event.request_id != run.job.request_id:
            return
        with run.tally.lock:
            run.fraction = run.tally.finished / max(1, run.tally.total)
        run.label = event.message
        self._dispatcher.emit(RecipePhotoDone(run))
        self._dispatcher.emit(RecipeBatchChanged(run))

    def _ended(self, run: FolderRun, end: Finished[Tally] | Cancelled | Failed) -> None:
        summary = run.tally.summary()
        if isinstance(end, Finished):
            run.state, run.fraction = FolderState.DONE, 1.0
            run.message = f"The recipe ran on {run.folder.name}: {summary}."
        elif isinstance(end, Cancelled):
            run.state = FolderState.CANCELLED
            run.message = f"Stopped: {summary}. Run it again on the same folders to finish the rest."
        else:
            run.state = FolderState.FAILED
            run.message = f"The recipe stopped: {end.message} ({summary})."
        failed = run.tally.failed
        level = Level.WARNING if failed or run.state is FolderState.FAILED else Level.INFO
        details = "".join(f" {source.name}: {reason}." for source, reason in failed[:5])
        self._dispatcher.emit(StatusMessage(run.message + details, level, None))
        self._dispatcher.emit(RecipeBatchEnded(run))
