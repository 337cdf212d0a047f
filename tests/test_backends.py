"""Inference backends: the ONNX Runtime export against the network, its cache (reuse, stale, corrupt),
cancel while a graph runs, and the fall-back to torch with a notice when export fails.

The networks are tiny random-weight InstructIR networks whose folded parameters (LayerNorm affines,
residual scales, condition affines) are moved off their one/zero starts (see test_executor_tiling),
so a mistake in the exported folding, statistics or conditioning shows as a large difference.
Measured for reference: exported graph vs module ~3e-7 max difference; ONNX Runtime tiled vs the
torch tiled restorer ~1e-6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_executor_tiling import embedding, psnr, scene, tiny_network
from torch import nn

from instructir_desktop.inference import backends
from instructir_desktop.inference.backends import (
    BackendError,
    prepare_image_module,
    prepare_instructir,
    resolve_backend,
)
from instructir_desktop.inference.backends import onnx_backend as onnx_module
from instructir_desktop.inference.backends.onnx_backend import OnnxImageModule, OnnxInstructIR
from instructir_desktop.inference.backends.onnx_cache import EXPORT_FORMAT_VERSION, OnnxCache, file_digest
from instructir_desktop.inference.engine import Engine
from instructir_desktop.inference.executor import ChannelStatistics, FastInstructIR
from instructir_desktop.inference.requests import Finished, Notice
from instructir_desktop.inference.runtime import Runtime
from instructir_desktop.inference.tiling import TiledRestorer, TilingSettings
from instructir_desktop.instructions.interpret import step_for_task
from instructir_desktop.io import read_image, write_image
from instructir_desktop.model.network import InstructIRNet
from instructir_desktop.model.registry import IMAGE_FILE, LoadedModel, ModelSpec, bundled_model_folder
from instructir_desktop.model.tasks import CLASS_NAMES
from instructir_desktop.model.text import TextHead
from instructir_desktop.plugins.host import BUILTIN_RESTORE_ACTION, PluginHost
from instructir_desktop.plugins.jobs import action_request
from instructir_desktop.plugins.outcome import ActionInput

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("single_torch_thread")


class Cancelled(Exception):
    pass


class Messages:
    """Records what preparing a backend reports."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, fraction: float, message: str) -> None:
        self.messages.append(message)


@pytest.fixture(scope="module")
def network() -> InstructIRNet:
    return tiny_network(width=16, seed=5)


@pytest.fixture(scope="module")
def onnx_runner(network: InstructIRNet, tmp_path_factory: pytest.TempPathFactory) -> OnnxInstructIR:
    return OnnxInstructIR.prepare(network, CPU, cache_folder=tmp_path_factory.mktemp("onnx"))


# ----------------------------------------------------------------------------- the exported graphs


def test_exported_graph_reproduces_the_network_for_every_instruction(network, onnx_runner) -> None:
    image = scene(64, 96)
    for seed in (3, 7):  # one graph, two instructions: the embedding is an input, not a constant
        instruction = embedding(seed)
        with torch.no_grad():
            expected = network(image, instruction)
        restored = onnx_runner.forward(image, onnx_runner.condition(instruction))
        assert restored.shape == expected.shape
        assert float((restored - expected).abs().max()) < 1e-4
    with torch.no_grad():
        assert float((network(image, embedding(3)) - network(image, embedding(7))).abs().max()) > 1e-2


def test_statistics_are_interchangeable_with_the_torch_executor(network, onnx_runner) -> None:
    """Means recorded over a weighted batch agree, and each backend replays the other's."""
    torch_runner = FastInstructIR(network)
    batch = torch.cat([scene(48, 48, seed=1), scene(48, 48, seed=2) * 0.7])
    weights = torch.rand(2, 48, 48, generator=torch.Generator().manual_seed(4))
    instruction = embedding(3)
    gates, conditioning = torch_runner.gates(instruction), onnx_runner.condition(instruction)
    torch_statistics, onnx_statistics = ChannelStatistics(), ChannelStatistics()
    torch_out = torch_runner.forward(batch, gates, torch_statistics, record=True, weight_mask=weights)
    onnx_out = onnx_runner.forward(batch, conditioning, onnx_statistics, record=True, weight_mask=weights)
    assert float((torch_out - onnx_out).abs().max()) < 1e-4
    torch_means, onnx_means = torch.cat(torch_statistics.means), torch.cat(onnx_statistics.means)
    assert torch.allclose(torch_means, onnx_means, atol=1e-5)
    tile = scene(32, 48, seed=9)
    torch_replay = torch_runner.forward(tile, gates, torch_statistics)
    onnx_replay = onnx_runner.forward(tile, conditioning, torch_statistics)  # the torch runner's means
    assert float((torch_replay - onnx_replay).abs().max()) < 1e-4
    # Replaying other means changes the result: the input is really used.
    other = ChannelStatistics()
    onnx_runner.forward(tile * 0.2 + 0.7, conditioning, other, record=True)
    assert float((onnx_runner.forward(tile, conditioning, other) - onnx_replay).abs().max()) > 1e-3


def test_tiled_onnx_restore_matches_the_torch_restorer_and_the_whole_image(network, onnx_runner) -> None:
    image = scene(200, 264)
    instruction = embedding(3)
    sampled = TilingSettings(tile=96, overlap=32, exact_statistics_pixels=0, statistics_sample_pixels=4 * 96 * 96)
    torch_runner = FastInstructIR(network)
    torch_tiled = TiledRestorer(torch_runner, sampled).restore(image, torch_runner.gates(instruction))
    onnx_tiled = TiledRestorer(onnx_runner, sampled).restore(image, onnx_runner.condition(instruction))
    assert float((torch_tiled - onnx_tiled).abs().max()) < 1e-4
    exact = TilingSettings(tile=96, overlap=32, exact_statistics_pixels=10**7)
    with torch.no_grad():
        whole = network(image, instruction)
    assert psnr(TiledRestorer(onnx_runner, exact).restore(image, onnx_runner.condition(instruction)), whole) > 60


@pytest.mark.parametrize("stem", [2, 4])
def test_a_stem_network_runs_the_same_on_onnx_runtime_as_on_the_torch_executor(stem: int, tmp_path) -> None:
    """The pixel-unshuffle stem (its first level at 1/stem of the resolution): the whole image,
    recorded and replayed statistics, and a tiled restore agree with the torch executor.

    The backends agree to ~1e-7 here; in these tiny networks other channel means move the output
    by ~4e-4 to 2e-3, so the 1e-5 tolerance still tells a replay that ignores its means apart."""
    network = tiny_network(width=8, seed=11, stem=stem)
    multiple = network.config.size_multiple
    assert multiple == 16 * stem
    onnx_runner = OnnxInstructIR.prepare(network, CPU, cache_folder=tmp_path)
    torch_runner = FastInstructIR(network)
    instruction = embedding(5)
    gates, conditioning = torch_runner.gates(instruction), onnx_runner.condition(instruction)

    image = scene(2 * multiple, 3 * multiple, seed=4)
    with torch.no_grad():
        expected = network(image, instruction)
    assert float((onnx_runner.forward(image, conditioning) - expected).abs().max()) < 1e-5

    # Record over a weighted batch (the weight is at full resolution; the stem's level sees it pooled).
    batch = torch.cat([scene(multiple, 2 * multiple, seed=1), scene(multiple, 2 * multiple, seed=2) * 0.6])
    weights = torch.rand(2, multiple, 2 * multiple, generator=torch.Generator().manual_seed(8))
    torch_statistics, onnx_statistics = ChannelStatistics(), ChannelStatistics()
    torch_out = torch_runner.forward(batch, gates, torch_statistics, record=True, weight_mask=weights)
    onnx_out = onnx_runner.forward(batch, conditioning, onnx_statistics, record=True, weight_mask=weights)
    assert float((torch_out - onnx_out).abs().max()) < 1e-5
    assert len(onnx_statistics) == len(torch_statistics)  # one entry per block, as the executor keeps them
    assert torch.allclose(torch.cat(torch_statistics.means), torch.cat(onnx_statistics.means), atol=1e-6)
    # Replay: each backend with the other's means.
    tile = scene(multiple, multiple, seed=9)
    torch_replay = torch_runner.forward(tile, gates, onnx_statistics)
    onnx_replay = onnx_runner.forward(tile, conditioning, torch_statistics)
    assert float((torch_replay - onnx_replay).abs().max()) < 1e-5
    other = ChannelStatistics()
    onnx_runner.forward(tile * 0.2 + 0.7, conditioning, other, record=True)
    assert float((onnx_runner.forward(tile, conditioning, other) - onnx_replay).abs().max()) > 1e-4

    # Tiled, with statistics from a sample of tiles (sides that are not multiples get padded).
    photo = scene(5 * multiple + 7, 6 * multiple - 5, seed=6)
    sampled = TilingSettings(
        tile=2 * multiple, overlap=multiple, exact_statistics_pixels=0, statistics_sample_pixels=3 * (2 * multiple) ** 2
    )
    torch_tiled = TiledRestorer(torch_runner, sampled).restore(photo, gates)
    onnx_tiled = TiledRestorer(onnx_runner, sampled).restore(photo, conditioning)
    assert onnx_tiled.shape == photo.shape
    assert float((torch_tiled - onnx_tiled).abs().max()) < 1e-5


def test_forward_refuses_sizes_the_network_cannot_take(onnx_runner) -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        onnx_runner.forward(torch.rand(1, 3, 40, 48), onnx_runner.condition(embedding()))


# ----------------------------------------------------------------------------- the cache


def cached_output(network: InstructIRNet, folder: Path, progress: Messages) -> torch.Tensor:
    runner = OnnxInstructIR.prepare(network, CPU, progress=progress, cache_folder=folder)
    return runner.forward(scene(32, 48), runner.condition(embedding()))


def expected_output(network: InstructIRNet) -> torch.Tensor:
    with torch.no_grad():
        return network(scene(32, 48), embedding())


@pytest.mark.slow
def test_first_export_reports_progress_and_the_next_load_reuses_it(network, tmp_path) -> None:
    first, second = Messages(), Messages()
    cached_output(network, tmp_path, first)
    assert len(first.messages) == 3 and "first use only" in first.messages[0]
    assert "1 of 2" in first.messages[0] and "2 of 2" in first.messages[1]
    assert len(list(tmp_path.glob("*.onnx"))) == 2 and len(list(tmp_path.glob("*.json"))) == 2
    restored = cached_output(network, tmp_path, second)
    assert second.messages == []  # nothing exported again
    assert float((restored - expected_output(network)).abs().max()) < 1e-4


@pytest.mark.slow
def test_other_weights_get_their_own_export(network, tmp_path) -> None:
    cached_output(network, tmp_path, Messages())
    changed = tiny_network(width=16, seed=5)
    with torch.no_grad():
        changed.ending.bias.add_(0.25)
    again = Messages()
    restored = cached_output(changed, tmp_path, again)
    assert again.messages  # exported, not taken from the first model's files
    assert len(list(tmp_path.glob("*.onnx"))) == 4
    assert float((restored - expected_output(changed)).abs().max()) < 1e-4


@pytest.mark.slow
def test_stale_export_is_rebuilt(network, tmp_path) -> None:
    cached_output(network, tmp_path, Messages())
    for sidecar in tmp_path.glob("*.json"):
        record = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**record, "format": EXPORT_FORMAT_VERSION - 1}))
    rebuilt = Messages()
    restored = cached_output(network, tmp_path, rebuilt)
    assert len(rebuilt.messages) == 3
    assert all(json.loads(s.read_text())["format"] == EXPORT_FORMAT_VERSION for s in tmp_path.glob("*.json"))
    assert float((restored - expected_output(network)).abs().max()) < 1e-4


@pytest.mark.slow
def test_truncated_export_is_rebuilt_not_trusted(network, tmp_path) -> None:
    cached_output(network, tmp_path, Messages())
    victim = sorted(tmp_path.glob("*-replay.onnx"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    rebuilt = Messages()
    restored = cached_output(network, tmp_path, rebuilt)
    assert any("1 of 1" in message for message in rebuilt.messages)  # only the damaged file
    assert float((restored - expected_output(network)).abs().max()) < 1e-4


@pytest.mark.slow
def test_export_that_onnx_runtime_refuses_is_exported_again(network, tmp_path) -> None:
    """A file whose sidecar was rewritten to match (say, by a tool that 'repaired' the cache)."""
    cached_output(network, tmp_path, Messages())
    victim = sorted(tmp_path.glob("*-record.onnx"))[0]
    victim.write_bytes(b"not a model")
    sidecar = victim.with_suffix(".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "sha256": file_digest(victim)}))
    assert OnnxCache(tmp_path).valid(victim.name.split("-")[0], "record") == victim
    restored = cached_output(network, tmp_path, Messages())
    assert victim.stat().st_size > 1000
    assert float((restored - expected_output(network)).abs().max()) < 1e-4


def test_default_cache_folder_follows_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INSTRUCTIR_DESKTOP_CACHE_DIR", str(tmp_path))
    assert OnnxCache().folder == tmp_path / "onnx"


# ----------------------------------------------------------------------------- cancel


class SlowChain(nn.Module):
    """Enough work that a run lasts well beyond the cancel watcher's poll on any CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, 48, 3, padding=1), *[nn.Conv2d(48, 48, 3, padding=1) for _ in range(24)]
        )
        self.out = nn.Conv2d(48, 3, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.out(self.convs(image)) + image


def test_cancel_stops_a_graph_while_it_runs(tmp_path) -> None:
    """Cancel is polled while ONNX Runtime runs, not only between tiles: the run is terminated."""
    runner = OnnxImageModule.prepare(SlowChain().eval(), CPU, cache_folder=tmp_path)
    calls = 0
    cancel_requested = threading.Event()

    def check() -> None:
        nonlocal calls
        calls += 1
        if threading.current_thread() is not threading.main_thread():
            cancel_requested.set()  # the user presses cancel while the graph runs
        if cancel_requested.is_set():
            raise Cancelled

    with pytest.raises(Cancelled):
        runner.run(torch.rand(1, 3, 1024, 1024), check_cancel=check)
    assert cancel_requested.is_set() and calls >= 2


def test_onnx_runtime_out_of_memory_is_recognised_so_the_tile_halves() -> None:
    from instructir_desktop.inference.devices import is_out_of_memory

    class Fail(Exception):  # the type onnxruntime's binding raises is not a RuntimeError
        pass

    message = "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer of size 4096"
    assert is_out_of_memory(Fail(message))
    assert not is_out_of_memory(Fail("[ONNXRuntimeError] : 1 : FAIL : Exiting due to terminate flag being set"))


def test_cancel_before_a_run_starts_nothing(onnx_runner) -> None:
    def check() -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        onnx_runner.forward(scene(32, 32), onnx_runner.condition(embedding()), check_cancel=check)


# ----------------------------------------------------------------------------- choosing and falling back


def test_auto_picks_onnx_runtime_on_the_cpu_and_torch_on_a_gpu() -> None:
    assert resolve_backend("auto", CPU) == "onnxruntime"
    assert resolve_backend("auto", torch.device("cuda")) == "torch"
    assert resolve_backend("auto", torch.device("mps")) == "torch"
    assert resolve_backend("torch", CPU) == "torch"
    with pytest.raises(BackendError, match="unknown backend 'tensorrt'"):
        resolve_backend("tensorrt", CPU)
    with pytest.raises(BackendError, match="Apple GPU"):
        resolve_backend("onnxruntime", torch.device("mps"))


def tiny_loaded_model(network: InstructIRNet) -> LoadedModel:
    head = TextHead(384, network.config.text_dim, len(CLASS_NAMES))
    return LoadedModel(ModelSpec("tiny", "tiny test model", Path("-"), None, "test"), network, head, CLASS_NAMES)


class SeededEncoder:
    dimension = 384
    identifier = "seeded-test-encoder"

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.random.default_rng(len(texts[0])).standard_normal((len(texts), self.dimension))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def failing_export(*args: Any) -> None:
    raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX is not supported")


def test_runtime_falls_back_to_torch_with_a_notice_when_export_fails(network, monkeypatch) -> None:
    monkeypatch.setattr(onnx_module, "export_instructir", failing_export)
    model = tiny_loaded_model(network)
    fallen = Runtime(model, SeededEncoder(), CPU, torch.float32, backend="onnxruntime")
    assert fallen.executor.backend == "torch"
    assert len(fallen.load_notices) == 1
    assert "ONNX Runtime" in fallen.load_notices[0] and "aten::fancy" in fallen.load_notices[0]
    assert "torch" in fallen.load_notices[0]
    plain = Runtime(model, SeededEncoder(), CPU, torch.float32, backend="torch")
    assert plain.load_notices == []
    image = scene(48, 64)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(
        fallen.run_network(image, "remove the noise"), plain.run_network(image, "remove the noise"), atol=1e-6
    )


def test_the_fallback_notice_reaches_the_editor(network, monkeypatch) -> None:
    monkeypatch.setattr(onnx_module, "export_instructir", failing_export)
    model = tiny_loaded_model(network)
    events: list[Any] = []
    finished = threading.Event()

    def listen(event: Any) -> None:
        events.append(event)
        if isinstance(event, Finished):
            finished.set()

    engine = Engine(
        listener=listen,
        runtime_loader=lambda settings: Runtime(model, SeededEncoder(), CPU, torch.float32, backend=settings.backend),
    )
    try:
        # A restore as the editor runs it: the built-in restore action through the plugin host.
        given = ActionInput(np.full((32, 48, 3), 0.5, np.float32))
        params = {"plan": (step_for_task("denoise"),), "strength": 1.0}
        engine.submit(
            action_request(PluginHost(use_entry_points=False), BUILTIN_RESTORE_ACTION, given, params, then=lambda o: o)
        )
        assert finished.wait(60)
    finally:
        engine.close()
    names = [type(event).__name__ for event in events]
    assert names.index("Notice") < names.index("Finished")
    notice = next(event for event in events if isinstance(event, Notice))
    assert "could not be prepared for ONNX Runtime" in notice.message
    assert engine.status is not None and engine.status.notices == (notice.message,)


class Upscaler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.body = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PReLU(12), nn.PixelShuffle(2))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image)


class NumpyInside(nn.Module):
    """Leaves torch for numpy mid-forward: a trace bakes the traced input's values in as constants."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        brightness = float(image.numpy().mean())
        return self.conv(image) + brightness


def test_any_image_module_runs_on_onnx_runtime_at_any_size(tmp_path) -> None:
    module = Upscaler().eval()
    prepared = prepare_image_module(module, "onnxruntime", CPU, cache_folder=str(tmp_path))
    assert prepared.runner.backend == "onnxruntime" and prepared.notices == ()
    image = torch.rand(1, 3, 40, 72)
    with torch.no_grad():
        expected = module(image)
    restored = prepared.runner.run(image)
    assert restored.shape == (1, 3, 80, 144)
    assert float((restored - expected).abs().max()) < 1e-5


def test_a_module_that_does_not_export_faithfully_falls_back_to_torch(tmp_path) -> None:
    module = NumpyInside().eval()
    prepared = prepare_image_module(module, "onnxruntime", CPU, name="Some-GAN x4", cache_folder=str(tmp_path))
    assert prepared.runner.backend == "torch"
    assert len(prepared.notices) == 1 and prepared.notices[0].startswith("Some-GAN x4 could not be prepared")
    image = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        expected = module(image)
    assert torch.allclose(prepared.runner.run(image), expected)
    assert list(tmp_path.glob("*.onnx")) == []  # the unfaithful export is not kept


def test_prepare_with_torch_never_exports(network, monkeypatch) -> None:
    monkeypatch.setattr(onnx_module, "export_instructir", failing_export)
    prepared = prepare_instructir(network, "torch", CPU, torch.float32)
    assert prepared.runner.backend == "torch" and prepared.notices == ()
    assert backends.BACKENDS == ("auto", "torch", "onnxruntime")


# ----------------------------------------------------------------------------- end to end


shipped = pytest.mark.skipif(not (bundled_model_folder() / IMAGE_FILE).is_file(), reason="no bundled model")


@shipped
@pytest.mark.slow
@pytest.mark.shipped
def test_restore_command_gives_the_same_photo_with_either_backend(tmp_path) -> None:
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:192, 0:256] / 30.0
    clean = np.stack([0.5 + 0.3 * np.sin(x), 0.5 + 0.3 * np.cos(y), 0.4 + 0.2 * np.sin(x + y)], axis=-1)
    noisy = np.clip(clean + rng.normal(0, 20 / 255, clean.shape), 0, 1).astype(np.float32)
    write_image(tmp_path / "noisy.png", noisy)
    outputs = {}
    for backend in ("onnxruntime", "torch"):
        target = tmp_path / f"{backend}.png"
        command = [sys.executable, "-m", "instructir_desktop.cli.main", "restore", str(tmp_path / "noisy.png")]
        command += ["-i", "remove the noise", "-o", str(target), "--backend", backend, "--device", "cpu"]
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
        assert completed.returncode == 0, completed.stderr
        assert ("ONNX Runtime" in completed.stderr) == (backend == "onnxruntime")
        outputs[backend] = read_image(target).rgb.astype(np.float64)
    mse = float(np.mean((outputs["onnxruntime"] - outputs["torch"]) ** 2))
    assert mse == 0 or 10 * np.log10(1 / mse) >= 45
    assert float(np.abs(outputs["torch"] - noisy).mean()) > 0.01  # the restore did change the photo
