"""The engine (one worker thread, typed events) and the Runtime behind it.

A real :class:`Runtime` is built from a tiny random-weight network, a random text head and a fake
sentence encoder (deterministic vectors from a hash of the text), so everything runs on the CPU in
well under a second per request.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference import runtime as runtime_module
from instructir_desktop.inference.engine import Engine, JobCancelled, describe_error
from instructir_desktop.inference.requests import (
    ActionRequest,
    Cancelled,
    EngineEvent,
    EngineSettings,
    Failed,
    Finished,
    InterpretRequest,
    Notice,
    Preview,
    Progress,
    Queued,
    RestoreRequest,
    RestoreResult,
    Started,
)
from instructir_desktop.inference.runtime import MIN_TILE, Runtime
from instructir_desktop.inference.tiling import TiledRestorer
from instructir_desktop.instructions.interpret import Interpretation, PlanStep, step_for_task
from instructir_desktop.model.network import InstructIRNet, NetworkConfig
from instructir_desktop.model.registry import LoadedModel, ModelSpec
from instructir_desktop.model.tasks import CLASS_NAMES
from instructir_desktop.model.text import TextHead
from instructir_desktop.plugins.api import PluginError
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


def kinds(events: list[EngineEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


# ----------------------------------------------------------------------------- engine: construction


def test_constructing_an_engine_loads_nothing(loads: list[EngineSettings]) -> None:
    recorder = Recorder()
    engine = Engine(listener=recorder, runtime_loader=lambda s: loads.append(s) or make_runtime())  # type: ignore[func-returns-value]
    try:
        time.sleep(0.05)
        assert loads == [] and engine.status is None and recorder.events == []
        # Actions do not need the model either.
        assert engine.run(ActionRequest(lambda ctx: 42), timeout=WAIT) == 42
        assert loads == []
    finally:
        engine.close(timeout=WAIT)


def test_engine_module_and_construction_do_not_import_torch() -> None:
    """The GUI thread imports the engine and its requests; torch is for the worker alone."""
    code = (
        "import sys\n"
        "from instructir_desktop.inference.engine import Engine\n"
        "from instructir_desktop.inference.requests import RestoreRequest, InterpretRequest\n"
        "from instructir_desktop.instructions.interpret import step_for_task\n"
        "engine = Engine()\n"
        "loaded = 'torch' in sys.modules\n"
        "engine.close()\n"
        "print('torch imported' if loaded else 'no torch')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no torch"


# ----------------------------------------------------------------------------- engine: events


def test_events_in_order_for_a_restore(engine_parts, loads: list[EngineSettings]) -> None:
    engine, recorder = engine_parts
    pixels = photo()
    request_id = engine.submit(restore_job(pixels, revision=7, label="Remove noise"))
    end = recorder.wait_done(request_id)
    assert isinstance(end, Finished)
    events = recorder.of(request_id)
    names = kinds(events)
    assert names[0] == "Queued" and names[1] == "Started" and names[-1] == "Finished"
    assert set(names[2:-1]) == {"Progress"} and len(names) >= 4
    queued, started = events[0], events[1]
    assert isinstance(queued, Queued) and queued.position == 0
    assert isinstance(started, Started) and started.label == "Remove noise"
    progress = [e for e in events if isinstance(e, Progress)]
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert progress[-1].tiles_done == progress[-1].tiles_total >= 1
    assert end.revision == 7
    result = end.result
    assert isinstance(result, ActionOutcome)
    assert result.pixels.shape == pixels.shape and result.scale == 1
    assert result.model_id == "tiny-test" and result.device.startswith("CPU")
    assert len(loads) == 1 and engine.status is not None and engine.status.model_name == "Tiny test model"

    # A second request reuses the loaded runtime; still Queued → Started → Progress → Finished.
    second = engine.submit(restore_job(photo(seed=1)))
    assert isinstance(recorder.wait_done(second), Finished)
    names = kinds(recorder.of(second))
    assert names[:2] == ["Queued", "Started"] and names[-1] == "Finished" and "Progress" in names
    assert len(loads) == 1

    # New settings reload the model for the next job.
    engine.configure(EngineSettings(tile_size=256))
    third = engine.submit(restore_job(photo(seed=2)))
    assert isinstance(recorder.wait_done(third), Finished)
    assert len(loads) == 2 and loads[-1].tile_size == 256


def test_preview_comes_before_the_result(engine_parts) -> None:
    engine, recorder = engine_parts
    request_id = engine.submit(restore_job(photo(), preview_bounds=Bounds(0, 0, 128, 96)))
    assert isinstance(recorder.wait_done(request_id), Finished)
    names = kinds(recorder.of(request_id))
    assert names.index("Preview") < names.index("Finished")
    preview = next(e for e in recorder.of(request_id) if isinstance(e, Preview))
    assert preview.pixels.shape == (96, 128, 3) and preview.scale == 1.0 and preview.bounds == Bounds(0, 0, 128, 96)


def test_interpret_request(engine_parts) -> None:
    engine, _ = engine_parts
    result = engine.run(InterpretRequest("remove the noise, then brighten it"), timeout=WAIT)
    assert isinstance(result, Interpretation)
    assert result.message == "remove the noise, then brighten it"


def test_cancel_a_running_action_from_another_thread(engine_parts) -> None:
    engine, recorder = engine_parts
    started = threading.Event()
    checks = 0

    def work(context: Any) -> str:
        nonlocal checks
        started.set()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            checks += 1
            context.check_cancel()
            context.progress(0.5, "working")
            time.sleep(0.005)
        return "not cancelled"

    request_id = engine.submit(ActionRequest(work, label="loop"))
    assert started.wait(WAIT)
    asked = time.monotonic()
    engine.cancel(request_id)
    end = recorder.wait_done(request_id)
    assert time.monotonic() - asked < 1.0
    assert isinstance(end, Cancelled)
    assert "Finished" not in kinds(recorder.of(request_id)) and checks > 0
    # The engine goes on with the next job.
    assert engine.run(ActionRequest(lambda ctx: "next"), timeout=WAIT) == "next"


def test_cancel_a_running_restore_between_tiles(engine_parts, runtime: Runtime) -> None:
    engine, recorder = engine_parts
    runtime.tiling.tile = 128  # many tiles: 49 of them on 512 x 512
    runtime.tiling.exact_statistics_pixels = 2 * 128 * 128  # ...now 2 first, then one at a time
    runtime.tiling.statistics_sample_pixels = 2 * 128 * 128
    runtime.tiling.whole_image_pixels = 0  # (a 512 x 512 photo would otherwise run as one tile)
    cancel_sent: list[int] = []

    def cancel_on_first_tile(event: EngineEvent) -> None:
        if isinstance(event, Progress) and event.tiles_done > 0 and not cancel_sent:
            cancel_sent.append(event.tiles_done)
            engine.cancel(event.request_id)

    engine.add_listener(cancel_on_first_tile)
    request_id = engine.submit(restore_job(photo(512, 512)))
    end = recorder.wait_done(request_id)
    assert isinstance(end, Cancelled)
    events = recorder.of(request_id)
    assert "Finished" not in kinds(events)
    tile_progress = [e for e in events if isinstance(e, Progress) and e.tiles_total]
    assert cancel_sent and tile_progress[-1].tiles_done < tile_progress[-1].tiles_total


def test_cancel_a_queued_request(engine_parts) -> None:
    engine, recorder = engine_parts
    release = threading.Event()
    ran: list[str] = []
    blocker = engine.submit(ActionRequest(lambda ctx: release.wait(WAIT)))
    queued = engine.submit(ActionRequest(lambda ctx: ran.append("ran")))
    engine.cancel(queued)
    release.set()
    assert isinstance(recorder.wait_done(blocker), Finished)
    assert isinstance(recorder.wait_done(queued), Cancelled)
    assert ran == [] and kinds(recorder.of(queued)) == ["Queued", "Cancelled"]


def test_failure_becomes_an_event_and_the_engine_goes_on(engine_parts, runtime: Runtime, monkeypatch) -> None:
    engine, recorder = engine_parts
    calls = 0
    real_restore_step = runtime.restore_step

    def flaky(*args: Any, **kwargs: Any) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("the network exploded\nwith a traceback nobody needs")
        return real_restore_step(*args, **kwargs)

    monkeypatch.setattr(runtime, "restore_step", flaky)
    first = engine.submit(restore_job(photo()))
    end = recorder.wait_done(first)
    assert isinstance(end, Failed)
    assert end.message.endswith("the network exploded")
    assert "Finished" not in kinds(recorder.of(first))
    second = engine.submit(restore_job(photo()))
    assert isinstance(recorder.wait_done(second), Finished)


def test_failing_loader_reports_and_retries(loads: list[EngineSettings]) -> None:
    recorder = Recorder()

    def loader(settings: EngineSettings) -> Runtime:
        loads.append(settings)
        if len(loads) == 1:
            raise FileNotFoundError("no weights here")
        return make_runtime()

    engine = Engine(listener=recorder, runtime_loader=loader)
    try:
        first = engine.submit(restore_job(photo()))
        end = recorder.wait_done(first)
        assert isinstance(end, Failed) and "no weights here" in end.message
        second = engine.submit(restore_job(photo()))
        assert isinstance(recorder.wait_done(second), Finished)
        assert len(loads) == 2
    finally:
        engine.close(timeout=WAIT)


def test_broken_listener_does_not_kill_the_worker(engine_parts, caplog) -> None:
    engine, _ = engine_parts

    def broken(event: EngineEvent) -> None:
        raise RuntimeError("listener bug")

    engine.add_listener(broken)
    assert engine.run(ActionRequest(lambda ctx: "ok"), timeout=WAIT) == "ok"
    # Reported with its traceback in the log (issue 20: tracebacks go to the log file, not the terminal).
    assert "listener bug" in caplog.text and "Traceback" in caplog.text


# ----------------------------------------------------------------------------- engine.run


def test_run_returns_the_result_and_forwards_its_own_events(engine_parts) -> None:
    engine, _ = engine_parts
    seen: list[EngineEvent] = []
    result = engine.run(restore_job(photo()), listener=seen.append, timeout=WAIT)
    assert isinstance(result, ActionOutcome)
    names = kinds(seen)
    assert names[0] == "Queued" and names[1] == "Started" and names[-1] == "Finished"
    assert len({e.request_id for e in seen}) == 1


def test_run_raises_on_failure_and_cancel(engine_parts) -> None:
    engine, _ = engine_parts

    def fail(context: Any) -> None:
        raise OSError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        engine.run(ActionRequest(fail), timeout=WAIT)

    def cancel_itself(context: Any) -> None:
        engine.cancel()
        context.check_cancel()

    with pytest.raises(JobCancelled):
        engine.run(ActionRequest(cancel_itself), timeout=WAIT)
    assert engine.run(ActionRequest(lambda ctx: 1), timeout=WAIT) == 1


def test_run_times_out_and_cancels(engine_parts) -> None:
    engine, recorder = engine_parts

    def slow(context: Any) -> str:
        for _ in range(1000):
            context.check_cancel()
            time.sleep(0.01)
        return "slow"

    with pytest.raises(TimeoutError):
        engine.run(ActionRequest(slow), timeout=0.2)
    end = recorder.wait_for(lambda e: isinstance(e, (Finished, Cancelled, Failed)) and e.request_id == 1)
    assert isinstance(end, Cancelled)


def test_run_does_not_miss_a_job_that_ends_before_submit_returns(engine_parts) -> None:
    """The worker can finish a quick job before ``submit`` has returned the id to ``run``."""
    engine, recorder = engine_parts
    real_put = engine._queue.put

    def put_then_wait(job: Any, *args: Any, **kwargs: Any) -> None:
        real_put(job, *args, **kwargs)
        if job is not None:  # hold the caller until the worker is done with the job
            recorder.wait_done(job.request_id)

    engine._queue.put = put_then_wait
    assert engine.run(ActionRequest(lambda ctx: "quick"), timeout=5) == "quick"


def test_closed_engine_refuses_work(engine_parts) -> None:
    engine, _ = engine_parts
    engine.close(timeout=WAIT)
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit(ActionRequest(lambda ctx: None))


# ----------------------------------------------------------------------------- runtime: results


def test_runtime_restoration_is_the_network_output(runtime: Runtime) -> None:
    pixels = photo(80, 100)  # not multiples of 16: padded, restored, cropped back
    step = PlanStep("denoise", 0.9, "remove the grain")
    restored = runtime.restore_step(pixels, step)
    embedding = torch.from_numpy(runtime.instruction_encoder.encode_one("remove the grain").embedding)[None]
    with torch.no_grad():
        reference = runtime.model.network(torch.from_numpy(pixels).permute(2, 0, 1)[None], embedding)
    expected = reference[0].permute(1, 2, 0).clamp(0, 1).numpy()
    assert restored.shape == pixels.shape and restored.dtype == np.float32
    np.testing.assert_allclose(restored, expected, atol=1e-4)
    assert np.abs(restored - pixels).mean() > 0.01  # the random network really changes the photo


def test_strength_zero_keeps_the_input_and_one_is_the_restoration(runtime: Runtime) -> None:
    pixels = photo()
    none = restore_here(runtime, pixels, strength=0.0)
    assert np.array_equal(none.pixels, pixels)
    full = restore_here(runtime, pixels, strength=1.0)
    assert np.array_equal(full.pixels, full.result)
    assert np.abs(full.pixels - pixels).mean() > 0.01
    half = restore_here(runtime, pixels, strength=0.3)
    np.testing.assert_allclose(half.pixels, 0.7 * pixels + 0.3 * full.result, atol=1e-5)
    assert full.bounds == Bounds(0, 0, 128, 96) and full.mask is None and full.scale == 1
    assert np.array_equal(full.original, pixels)
    assert full.tasks == ("denoise",) and full.plan == DENOISE and full.seconds > 0
    result = runtime.restore(RestoreRequest(pixels, DENOISE))
    assert len(result.step_seconds) == 1 and result.seconds > 0
    np.testing.assert_array_equal(result.restored, full.result)


def test_the_worker_can_prepare_the_undo_step(runtime: Runtime) -> None:
    """Made ready on the worker, the undo step is identical to one made on the spot."""
    from instructir_desktop.core.document import Document
    from instructir_desktop.editing.applying import make_ready, restoration_of
    from instructir_desktop.history import History

    pixels = photo(96, 128)
    mask = np.zeros((96, 128), dtype=np.float32)
    mask[20:60, 30:90] = 1.0
    for request_mask in (None, mask):
        outcome = restore_here(runtime, pixels, mask=request_mask, strength=0.6)
        ready = make_ready(outcome, pixels)
        assert ready.changed and ready.prepared is not None
        np.testing.assert_allclose(ready.prepared.pixels, outcome.pixels, atol=2 / 65535)  # only snapped to 16 bits
        direct, prepared = History(Document.from_image(pixels)), History(Document.from_image(pixels))
        direct_layer, prepared_layer = direct.document.active_layer, prepared.document.active_layer
        direct.push_restoration(direct_layer.id, outcome.bounds, restoration_of(outcome), label="denoise")
        prepared.push_prepared(prepared_layer.id, outcome.bounds, ready.prepared, label="denoise")
        np.testing.assert_array_equal(prepared_layer.pixels, direct_layer.pixels)
        prepared.undo()
        np.testing.assert_array_equal(prepared_layer.pixels, pixels)
    upscale = (PlanStep("upscale", 0.9, "bigger", 2),)
    assert make_ready(restore_here(runtime, pixels, upscale), pixels).prepared is None


def test_mask_limits_the_change_to_the_selection(runtime: Runtime) -> None:
    height, width = 320, 320
    pixels = photo(height, width)
    mask = np.zeros((height, width), dtype=np.float32)
    mask[140:180, 150:190] = 1.0
    mask[138:140, 150:190] = 0.5  # a feathered edge
    seen: list[tuple[int, ...]] = []
    real_restore = runtime.restore

    def watched(request: RestoreRequest, **kwargs: Any) -> RestoreResult:
        seen.append(request.pixels.shape)
        return real_restore(request, **kwargs)

    runtime.restore = watched  # type: ignore[method-assign]
    result = restore_here(runtime, pixels, mask=mask)
    # The network ran on the selection plus some context, not the whole photo…
    assert seen == [(42 + 128, 40 + 128, 3)]
    # …and only the selected rectangle is kept.
    assert result.bounds == Bounds(150, 138, 40, 42)
    assert result.pixels.shape == (42, 40, 3)
    applied = result.applied_to(pixels)
    outside = mask == 0
    assert np.array_equal(applied[outside], pixels[outside])
    inside = mask[result.bounds.slices] == 1
    assert np.array_equal(result.pixels[inside], result.result[inside])
    assert np.abs(applied[mask == 1] - pixels[mask == 1]).mean() > 0.01
    np.testing.assert_allclose(result.pixels[0], (pixels[138, 150:190] + result.result[0]) / 2, atol=1e-5)


def test_empty_selection_fails_clearly(runtime: Runtime) -> None:
    with pytest.raises(PluginError, match="selection is empty"):
        restore_here(runtime, photo(), mask=np.zeros((96, 128), np.float32))


def test_alpha_is_carried_through(runtime: Runtime) -> None:
    pixels = photo(64, 80)
    alpha = np.tile(np.linspace(0, 1, 80, dtype=np.float32), (64, 1))
    result = restore_here(runtime, pixels, alpha=alpha)
    assert result.scale == 1 and result.alpha is None  # the same size: the photo's alpha stays as it is


def test_upscale_doubles_the_size_and_the_alpha(runtime: Runtime) -> None:
    pixels = photo(48, 64)
    alpha = np.zeros((48, 64), dtype=np.float32)
    alpha[:, 32:] = 1.0
    steps = (step_for_task("upscale", 2),)
    result = restore_here(runtime, pixels, steps, alpha=alpha)
    assert result.pixels.shape == (96, 128, 3) and result.result.shape == (96, 128, 3)
    assert result.scale == 2 and result.bounds == Bounds(0, 0, 64, 48) and result.output_bounds == Bounds(0, 0, 128, 96)
    assert result.original.shape == (96, 128, 3)
    assert result.alpha is not None and result.alpha.shape == (96, 128)
    assert result.alpha[:, :60].max() < 0.05 and result.alpha[:, 68:].min() > 0.95
    # Two steps (upscale then denoise) report per-step timings.
    two = runtime.restore(RestoreRequest(pixels, (step_for_task("upscale", 2), *DENOISE)))
    assert two.restored.shape == (96, 128, 3) and two.scale == 2 and len(two.step_seconds) == 2
    # An upscale through a selection is refused: it changes the whole photo.
    with pytest.raises(PluginError, match="whole photo"):
        restore_here(runtime, pixels, steps, mask=np.ones((48, 64), np.float32))


def test_multi_step_progress(runtime: Runtime) -> None:
    seen: list[tuple[int, int, float]] = []
    runtime.restore(
        RestoreRequest(photo(), (*DENOISE, step_for_task("lowlight"))),
        progress=lambda p: seen.append((p.step_index, p.step_count, p.fraction)),
    )
    assert [s[:2] for s in seen] == [(0, 2), (1, 2)]
    assert [s[2] for s in seen] == [0.5, 1.0]


# ----------------------------------------------------------------------------- runtime: out of memory


def out_of_memory_restorer(failures: list[int], times: int) -> type[TiledRestorer]:
    """A TiledRestorer that raises the CUDA out-of-memory error for its first ``times`` restores."""

    class OutOfMemoryOnce(TiledRestorer):
        def restore(self, *args: Any, **kwargs: Any) -> torch.Tensor:
            if len(failures) < times:
                failures.append(self.settings.tile)
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().restore(*args, **kwargs)

    return OutOfMemoryOnce


def test_out_of_memory_halves_the_tile_and_says_so(monkeypatch, runtime: Runtime) -> None:
    failures: list[int] = []
    monkeypatch.setattr(runtime_module, "TiledRestorer", out_of_memory_restorer(failures, 1))
    assert runtime.tiling.tile == 512
    result = runtime.restore(RestoreRequest(photo(), DENOISE))
    assert failures == [512]
    assert runtime.tiling.tile == 256
    assert result.notices == ("Out of memory: continuing with 256-pixel tiles.",)
    assert result.restored.shape == (96, 128, 3)
    # The next restore starts clean: no stale notices.
    assert runtime.restore(RestoreRequest(photo(), DENOISE)).notices == ()


def test_out_of_memory_notice_reaches_the_engine(monkeypatch, engine_parts) -> None:
    engine, recorder = engine_parts
    monkeypatch.setattr(runtime_module, "TiledRestorer", out_of_memory_restorer([], 1))
    request_id = engine.submit(restore_job(photo()))
    end = recorder.wait_done(request_id)
    assert isinstance(end, Finished)
    assert end.result.notices == ("Out of memory: continuing with 256-pixel tiles.",)
    events = recorder.of(request_id)
    notices = [e for e in events if isinstance(e, Notice)]
    assert [n.message for n in notices] == ["Out of memory: continuing with 256-pixel tiles."]
    assert kinds(events).index("Notice") < kinds(events).index("Finished")


def test_out_of_memory_on_cpu_at_the_smallest_tile_gives_up_clearly(monkeypatch) -> None:
    runtime = make_runtime(tile_size=MIN_TILE)
    assert runtime.tiling.tile == MIN_TILE
    failures: list[int] = []
    monkeypatch.setattr(runtime_module, "TiledRestorer", out_of_memory_restorer(failures, 100))
    with pytest.raises(MemoryError, match="not enough memory to restore this photo"):
        runtime.restore(RestoreRequest(photo(), DENOISE))
    assert failures == [MIN_TILE]


def test_out_of_memory_walks_down_to_the_smallest_tile(monkeypatch) -> None:
    runtime = make_runtime(tile_size=512)
    failures: list[int] = []
    monkeypatch.setattr(runtime_module, "TiledRestorer", out_of_memory_restorer(failures, 100))
    with pytest.raises(MemoryError) as raised:
        runtime.restore(RestoreRequest(photo(), DENOISE))
    assert failures == [512, 256, 128]
    assert runtime.notices == [
        "Out of memory: continuing with 256-pixel tiles.",
        "Out of memory: continuing with 128-pixel tiles.",
    ]
    assert describe_error(raised.value).startswith("not enough memory to restore this photo")


def test_tiles_of_a_stem_network_are_multiples_of_its_size_multiple(monkeypatch) -> None:
    """A stem-2 network takes sides in multiples of 32: the tile size from the settings and the
    halved tile after running out of memory are rounded down to that, not to 16."""
    model = tiny_model()
    model = dataclasses.replace(model, network=InstructIRNet(dataclasses.replace(model.network.config, stem=2)).eval())

    def stem_runtime(tile_size: int) -> Runtime:
        return Runtime(model, FakeSentenceEncoder(), torch.device("cpu"), torch.float32, tile_size, backend="torch")

    assert stem_runtime(208).tiling.tile == 192  # 208 is a multiple of 16, not of 32
    runtime = stem_runtime(300)
    assert runtime.tiling.tile == 288
    failures: list[int] = []
    monkeypatch.setattr(runtime_module, "TiledRestorer", out_of_memory_restorer(failures, 1))
    result = runtime.restore(RestoreRequest(photo(), DENOISE))
    assert failures == [288] and runtime.tiling.tile == 128  # half of 288 is 144, a multiple of 16 only
    assert result.notices == ("Out of memory: continuing with 128-pixel tiles.",)
    assert result.restored.shape == (96, 128, 3)


def test_out_of_memory_through_the_engine_is_a_clear_failure(monkeypatch, loads) -> None:
    recorder = Recorder()
    engine = Engine(listener=recorder, runtime_loader=lambda s: make_runtime(tile_size=MIN_TILE))
    monkeypatch.setattr(runtime_module, "TiledRestorer", out_of_memory_restorer([], 100))
    try:
        request_id = engine.submit(restore_job(photo()))
        end = recorder.wait_done(request_id)
        assert isinstance(end, Failed)
        assert "not enough memory to restore this photo" in end.message
    finally:
        engine.close(timeout=WAIT)


def test_other_errors_are_not_retried(monkeypatch, runtime: Runtime) -> None:
    attempts: list[int] = []

    class Broken(TiledRestorer):
        def restore(self, *args: Any, **kwargs: Any) -> torch.Tensor:
            attempts.append(self.settings.tile)
            raise RuntimeError("shape mismatch")

    monkeypatch.setattr(runtime_module, "TiledRestorer", Broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        runtime.restore(RestoreRequest(photo(), DENOISE))
    assert attempts == [512] and runtime.tiling.tile == 512


# ----------------------------------------------------------------------------- requests


def test_requests_are_frozen_snapshots() -> None:
    pixels = photo(16, 16)
    request = RestoreRequest(pixels, DENOISE)
    pixels[:] = 0
    assert request.pixels.max() > 0
    with pytest.raises(ValueError):
        request.pixels[0, 0, 0] = 1.0
    with pytest.raises(ValueError, match="at least one step"):
        RestoreRequest(photo(16, 16), ())
    with pytest.raises(ValueError, match="H×W×3"):
        RestoreRequest(np.zeros((16, 16)), DENOISE)
    with pytest.raises(PluginError, match="height and width"):
        ActionInput(photo(16, 16), np.ones((8, 8)))


def test_the_reply_says_when_the_model_barely_does_a_planned_step(monkeypatch) -> None:
    """A model whose own evaluation shows (almost) no gain on a task says so when asked for it,
    instead of silently handing back a photo that looks the same."""
    import dataclasses

    from instructir_desktop.model.registry import weak_tasks

    runtime = make_runtime()
    plan = (step_for_task("denoise"), step_for_task("deblur"), step_for_task("upscale", 2))
    monkeypatch.setattr(
        runtime.interpreter, "interpret", lambda text, *_: Interpretation(text, plan, reply="I'll do it.")
    )
    assert runtime.interpret("fix it").reply == "I'll do it."  # nothing measured: nothing to say
    spec = dataclasses.replace(
        runtime.model.spec, info={"evaluation": {"gain_db": {"denoise": 3.6, "deblur": 0.04, "upscale": -0.24}}}
    )
    monkeypatch.setattr(runtime.model, "spec", spec)
    assert weak_tasks(spec) == {"deblur": 0.04, "upscale": -0.24}
    reply = runtime.interpret("fix it").reply
    assert reply.startswith("I'll do it. Note: the current model barely improves this")
    assert "remove blur +0.0 dB; upscale -0.2 dB" in reply and "noise" not in reply

    monkeypatch.setattr(
        runtime.interpreter,
        "interpret",
        lambda text, *_: Interpretation(text, (step_for_task("denoise"),), reply="I'll remove the noise."),
    )
    assert runtime.interpret("grain").reply == "I'll remove the noise."  # a task it does well
