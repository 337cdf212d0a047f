"""The editing session: one open photo, the conversation about it, and the files it comes from
and goes to, wired to one dispatcher and one engine. The UI holds one; so does a headless test."""

from __future__ import annotations

import asyncio

from instructir_desktop.editing.action_preview import ActionPreviews
from instructir_desktop.editing.assistant import Assistant
from instructir_desktop.editing.background import Background
from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.editing.engine_client import EngineClient, EngineJob
from instructir_desktop.editing.events import DocumentOpened
from instructir_desktop.editing.files import Files
from instructir_desktop.editing.insight import PhotoInsight
from instructir_desktop.editing.recipe_folder import RecipeFolders
from instructir_desktop.editing.workspace import Workspace
from instructir_desktop.inference.engine import EngineInterface
from instructir_desktop.inference.requests import ActionRequest, JobContext
from instructir_desktop.plugins.host import PluginHost


class EditingSession:
    def __init__(self, engine: EngineInterface, plugins: PluginHost | None, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.events = Dispatcher()
        self.background = Background(loop)
        self.engine = EngineClient(engine, self.events, loop)
        self.workspace = Workspace(self.events)
        self.files = Files(self.workspace, self.background, self.events)
        self.assistant = Assistant(self.workspace, self.engine, plugins, self.events)
        # A plugin action's dialog: where it applies and a live preview of its values.
        self.previews = ActionPreviews(self.workspace, self.engine, self.events)
        self.previews.plugins = lambda: self.assistant.plugins
        # Recipes: the open photo's steps saved to a file, and a recipe run on a folder of photos.
        self.recipes = RecipeFolders(self.workspace, self.engine, lambda: self.assistant.plugins, self.events)
        # Work on the previous photo can no longer be applied (it would be stale): stop it, and
        # start this photo's conversation (a project brings its own back).
        self.events.subscribe(
            DocumentOpened, lambda _event: self.assistant.start_conversation(self.workspace.transcript)
        )
        # What the photo needs, measured in the background when it opens (after the line above, so
        # the new conversation has started when the greeting arrives).
        self.insight = PhotoInsight(self.workspace, self.background, self.assistant, self.events)
        # A project keeps the conversation about its photo.
        self.files.transcript = self.assistant.transcript

    @property
    def plugins(self) -> PluginHost | None:
        return self.assistant.plugins

    @plugins.setter
    def plugins(self, host: PluginHost | None) -> None:
        """A rescanned host; a queued run finds its action in it when its turn comes. The old
        host's worker process ends when the host is dropped (a run still using it finishes first)."""
        self.assistant.plugins = host

    def preload_model(self) -> EngineJob[None]:
        """Load the model on the worker now, so the first instruction does not wait for it."""

        def load(job: JobContext) -> None:
            job.runtime()

        return self.engine.submit(ActionRequest(run=load, label="Loading the model"))

    def close(self) -> None:
        """Cancel the runs, finish the writes, stop the engine, the background lanes and the
        plugins' worker process."""
        self.files.close()
        self.previews.end()
        self.recipes.cancel()
        self.assistant.cancel_all()
        self.engine.close()
        self.background.shutdown()
        if self.plugins is not None:
            self.plugins.close()  # the worker process of third-party actions
