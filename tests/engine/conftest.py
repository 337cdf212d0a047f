"""Fixtures of the engine and runtime tests: a runtime on a tiny random-weight network, an engine around it."""

from __future__ import annotations

import pytest
import torch
from engine_doubles import WAIT, Recorder, make_runtime

from instructir_desktop.inference.engine import Engine
from instructir_desktop.inference.requests import EngineSettings
from instructir_desktop.inference.runtime import Runtime


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # The machine is shared with a training job: one torch thread is faster than two contended ones.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def loads() -> list[EngineSettings]:
    return []


@pytest.fixture
def runtime() -> Runtime:
    return make_runtime()


@pytest.fixture
def engine_parts(runtime: Runtime, loads: list[EngineSettings]):
    recorder = Recorder()

    def loader(settings: EngineSettings) -> Runtime:
        loads.append(settings)
        return runtime

    engine = Engine(listener=recorder, runtime_loader=loader)
    yield engine, recorder
    engine.close(timeout=WAIT)
