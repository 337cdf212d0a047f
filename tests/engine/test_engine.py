"""The engine (one worker thread, typed events) and the Runtime behind it.

A real :class:`Runtime` is built from a tiny random-weight network, a random text head and a fake
sentence encoder (deterministic vectors from a hash of the text), so everything runs on the CPU in
well under a second per request."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest
from engine_doubles import (
    WAIT,
    Recorder,
    kinds,
    make_runtime,
    photo,
    restore_job,
)

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference.engine import Engine, JobCancelled
from instructir_desktop.inference.requests import (
    ActionRequest,
    Cancelled,
    EngineEvent,
    EngineSettings,
    Failed,
    Finished,
    InterpretRequest,
    Preview,
    Progress,
    Queued,
    Started,
)
from instructir_desktop.inference.runtime import Runtime
from instructir_desktop.instructions.interpret import Interpretation
from instructir_desktop.plugins.outcome import ActionOutcome

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
