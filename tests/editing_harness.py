"""Driving an editing session without Qt: a plain asyncio loop, the fake engine, the real plugin host.

Waiting is on events (a run's end, a background write), never on the clock; ``timeout`` only
turns a hang into a failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
from fake_engine import FakeEngine

from instructir_desktop.editing.conversation import Run, RunState
from instructir_desktop.editing.events import RunEnded
from instructir_desktop.editing.session import EditingSession
from instructir_desktop.io import read_image, write_image
from instructir_desktop.plugins.host import PluginHost

T = TypeVar("T")
TIMEOUT = 10.0


def make_photo(path: Path, height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = np.round(rng.random((height, width, 3)) * 255) / 255
    write_image(path, pixels.astype(np.float32))
    return read_image(path).rgb


class Harness:
    def __init__(self, engine: FakeEngine | None = None, plugins: PluginHost | None = None) -> None:
        self.engine = engine if engine is not None else FakeEngine()
        self.loop = asyncio.new_event_loop()
        self.session = EditingSession(self.engine, plugins if plugins is not None else PluginHost(), self.loop)
        self.events: list[object] = []
        self.session.events.subscribe(object, self.events.append)

    @property
    def assistant(self):
        return self.session.assistant

    @property
    def workspace(self):
        return self.session.workspace

    def pixels(self) -> np.ndarray:
        document = self.workspace.document
        assert document is not None
        return document.flatten().rgb

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(awaitable, TIMEOUT))

    def until(self, condition: Callable[[], bool]) -> None:
        """Let the loop turn until ``condition`` holds (each turn delivers what the engine sent)."""

        async def turns() -> None:
            while not condition():
                await asyncio.sleep(0)

        self.run(turns())

    def ended(self, run: Run) -> Run:
        if not run.ended:
            future: asyncio.Future[None] = self.loop.create_future()

            def seen(event: RunEnded) -> None:
                if event.run is run and not future.done():
                    future.set_result(None)

            unsubscribe = self.session.events.subscribe(RunEnded, seen)
            try:
                self.run(future)
            finally:
                unsubscribe()
        return run

    def send(self, text: str, state: RunState = RunState.DONE) -> Run:
        run = self.ended(self.assistant.send(text))
        assert run.state is state, (run.state, run.reply.status, run.reply.text)
        return run

    def close(self) -> None:
        self.session.close()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()
