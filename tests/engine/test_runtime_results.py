"""The Runtime's results, out-of-memory handling and requests, on a tiny random-weight network."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from engine_doubles import (
    DENOISE,
    WAIT,
    FakeSentenceEncoder,
    Recorder,
    kinds,
    make_runtime,
    photo,
    restore_here,
    restore_job,
    tiny_model,
)

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference import runtime as runtime_module
from instructir_desktop.inference.engine import Engine, describe_error
from instructir_desktop.inference.requests import (
    Failed,
    Finished,
    Notice,
    RestoreRequest,
    RestoreResult,
)
from instructir_desktop.inference.runtime import MIN_TILE, Runtime
from instructir_desktop.inference.tiling import TiledRestorer
from instructir_desktop.instructions.interpret import Interpretation, PlanStep, step_for_task
from instructir_desktop.model.network import InstructIRNet
from instructir_desktop.plugins.api import PluginError
from instructir_desktop.plugins.outcome import ActionInput

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
