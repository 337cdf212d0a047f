"""Builders and constants shared by the tests split out of test_engine.py."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference.requests import (
    ActionRequest,
    Cancelled,
    EngineEvent,
    Failed,
    Finished,
)
from instructir_desktop.inference.runtime import Runtime
from instructir_desktop.instructions.interpret import PlanStep, step_for_task
from instructir_desktop.model.network import InstructIRNet, NetworkConfig
from instructir_desktop.model.registry import LoadedModel, ModelSpec
from instructir_desktop.model.tasks import CLASS_NAMES
from instructir_desktop.model.text import TextHead
from instructir_desktop.plugins.host import BUILTIN_RESTORE_ACTION, PluginHost
from instructir_desktop.plugins.jobs import RuntimeServices, action_request
from instructir_desktop.plugins.outcome import ActionInput, ActionOutcome

WAIT = 30.0  # seconds; generous, the machine is shared with a training job
SENTENCE_DIM = 32
TEXT_DIM = 16


# ----------------------------------------------------------------------------- test doubles


class FakeSentenceEncoder:
    """Deterministic unit vectors seeded by the text: same text, same vector; no model files."""

    identifier = "fake-encoder"
    dimension = SENTENCE_DIM

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        vectors = np.stack(
            [
                np.random.default_rng(zlib.crc32(t.encode())).standard_normal(SENTENCE_DIM).astype(np.float32)
                for t in texts
            ]
        )
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def tiny_model(seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    config = NetworkConfig(
        width=8, enc_blocks=(1, 1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1, 1), text_dim=TEXT_DIM
    )
    network = InstructIRNet(config)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if name.endswith(("beta", "gamma")):
                parameter.normal_(0, 0.3)
            elif name.startswith("ending"):
                parameter.mul_(0.3)
    spec = ModelSpec(
        id="tiny-test", name="Tiny test model", image_weights=Path("tiny.safetensors"), text_head=None, source="files"
    )
    return LoadedModel(spec, network.eval(), TextHead(SENTENCE_DIM, TEXT_DIM, len(CLASS_NAMES)).eval(), CLASS_NAMES)


def make_runtime(tile_size: int | None = None) -> Runtime:
    return Runtime(tiny_model(), FakeSentenceEncoder(), torch.device("cpu"), torch.float32, tile_size)


def photo(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width, yy / height, 0.5 + 0.3 * np.sin(xx / 7)], axis=-1)
    noise = np.random.default_rng(seed).normal(0, 0.05, base.shape)
    return np.clip(base + noise, 0, 1).astype(np.float32)


DENOISE = (step_for_task("denoise"),)
HOST = PluginHost(use_entry_points=False)  # the built-in restore action alone


def restore_job(
    pixels: np.ndarray,
    plan: Sequence[PlanStep] = DENOISE,
    *,
    mask: np.ndarray | None = None,
    alpha: np.ndarray | None = None,
    preview_bounds: Bounds | None = None,
    strength: float = 1.0,
    revision: int = 0,
    label: str = "",
) -> ActionRequest[ActionOutcome]:
    """A restoration as the editor runs it: the restore action through the plugin host, on the worker."""
    given = ActionInput(pixels, mask, alpha, preview_bounds)
    params = {"plan": tuple(plan), "strength": strength}
    return action_request(HOST, BUILTIN_RESTORE_ACTION, given, params, then=lambda o: o, label=label, revision=revision)


def restore_here(
    runtime: Runtime, pixels: np.ndarray, plan: Sequence[PlanStep] = DENOISE, **given: Any
) -> ActionOutcome:
    """The same action in this process, as the command line runs it."""
    strength = given.pop("strength", 1.0)
    services = RuntimeServices(lambda: runtime)
    return HOST.execute(
        BUILTIN_RESTORE_ACTION, ActionInput(pixels, **given), {"plan": tuple(plan), "strength": strength}, services
    )


class Recorder:
    """Collects events (delivered on the worker thread) and waits for a request's last one."""

    def __init__(self) -> None:
        self.events: list[EngineEvent] = []
        self._condition = threading.Condition()

    def __call__(self, event: EngineEvent) -> None:
        with self._condition:
            self.events.append(event)
            self._condition.notify_all()

    def of(self, request_id: int) -> list[EngineEvent]:
        with self._condition:
            return [e for e in self.events if e.request_id == request_id]

    def wait_done(self, request_id: int, timeout: float = WAIT) -> EngineEvent:
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for event in self.events:
                    if event.request_id == request_id and isinstance(event, (Finished, Failed, Cancelled)):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"request {request_id} did not end; events: {self.of(request_id)}")
                self._condition.wait(remaining)

    def wait_for(self, predicate: Callable[[EngineEvent], bool], timeout: float = WAIT) -> EngineEvent:
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching event; events: {self.events}")
                self._condition.wait(remaining)


def kinds(events: list[EngineEvent]) -> list[str]:
    return [type(e).__name__ for e in events]
