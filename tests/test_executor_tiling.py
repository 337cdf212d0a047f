"""The fast inference executor and tiled restoration, checked against the plain network.

Everything runs on the CPU with a tiny random-weight network (width 8, one block per level) whose
LayerNorm affines, residual scales and condition affines are randomised, so that the folding done
by :class:`FastInstructIR` is really exercised (they start at one/zero, where folding is a no-op).

Measured on a busy 2-core CPU with one torch thread (for reference; only the thresholds are asserted):
- executor vs module: max |diff| ~1.5e-7;
- 1024x1280 photo, 256-pixel tiles, exact statistics: ~135 dB PSNR against the whole-image pass;
- 500x760 photo, 128-pixel tiles, statistics from a 6-tile sample: ~89 dB, max error ~2e-4;
  abutting tiles with their own statistics: ~43 dB, with ~4e-2 error on the tile boundaries
  (against ~5e-5 there for the restorer), so the 45 dB threshold and the seam check have teeth;
- cancel from another thread: the restore stops within a few milliseconds.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from instructir_desktop.inference.executor import ChannelStatistics, FastInstructIR
from instructir_desktop.inference.tiling import (
    ACTIVATION_BYTES_PER_PIXEL_PER_WIDTH,
    TiledRestorer,
    TileProgress,
    TilingSettings,
    axis_starts,
    axis_weights,
    balanced_tile_size,
    estimate_tile_count,
    plan_tiles,
    tiling_for_memory,
)
from instructir_desktop.model.network import InstructIRNet, NetworkConfig

TEXT_DIM = 16
MIN_TILED_PSNR = 45.0


class Cancelled(Exception):
    pass


def randomise(network: InstructIRNet, seed: int) -> InstructIRNet:
    """Move every parameter that starts at one/zero away from it (LayerNorm, beta/gamma, ICB affines)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith(("norm1.weight", "norm2.weight")):
                parameter.copy_(1 + 0.3 * noise)
            elif name.endswith(("norm1.bias", "norm2.bias")):
                parameter.copy_(0.1 * noise)
            elif name.endswith(("beta", "gamma")):
                parameter.copy_(0.5 * noise)
            elif name.startswith("ending"):
                parameter.mul_(0.2)  # keep the output near the image so PSNR on [0, 1] means something
    return network.eval()


def tiny_network(width: int = 8, seed: int = 0, stem: int = 1) -> InstructIRNet:
    torch.manual_seed(seed)
    config = NetworkConfig(
        width=width, enc_blocks=(1, 1, 1, 1), middle_blocks=1, dec_blocks=(1, 1, 1, 1), text_dim=16, stem=stem
    )
    return randomise(InstructIRNet(config), seed + 100)


def embedding(seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(1, TEXT_DIM, generator=generator), dim=-1)


def scene(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A photo-like (1, 3, H, W) image: smooth gradients, a disc, a checkerboard, thin stripes, grain."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 0.5 + 0.3 * np.sin(xx / 37) * np.cos(yy / 53)
    green = xx / width * 0.6 + 0.2 + 0.15 * ((xx // 64 + yy // 64) % 2)
    disc = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) < (min(height, width) / 3) ** 2
    blue = 0.5 + 0.4 * disc - 0.2 * (np.sin(xx / 3) > 0.9)
    image = np.stack([red, green, blue]) + np.random.default_rng(seed).normal(0, 0.03, (3, height, width))
    return torch.from_numpy(np.clip(image, 0, 1).astype(np.float32))[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return 10 * math.log10(1 / max(mse, 1e-30))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # A training job shares this small machine; on oversubscribed cores one thread is several times
    # faster (and far steadier) than two that wait for each other.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def network() -> InstructIRNet:
    return tiny_network()


@pytest.fixture(scope="module")
def executor(network: InstructIRNet) -> FastInstructIR:
    return FastInstructIR(network)


# ----------------------------------------------------------------------------- executor


@pytest.mark.parametrize(("width", "shape", "stem"), [(8, (48, 64), 1), (16, (32, 80), 1), (8, (64, 96), 2)])
def test_executor_matches_module_forward(width: int, shape: tuple[int, int], stem: int) -> None:
    network = tiny_network(width=width, seed=width, stem=stem)
    # The randomisation must have moved the parameters that folding is about.
    encoders: Any = network.encoders
    block = encoders[0][0]
    condition: Any = network.enc_cond[0]
    assert not torch.allclose(block.norm1.weight, torch.ones_like(block.norm1.weight))
    assert block.beta.abs().min() > 0 and condition.gamma.abs().min() > 0
    image = torch.rand(1, 3, *shape, generator=torch.Generator().manual_seed(width))
    instruction = embedding(width)
    with torch.no_grad():
        reference = network(image, instruction)
    fast = FastInstructIR(network)
    output = fast.forward(image, fast.gates(instruction))
    assert output.shape == reference.shape
    assert (reference - image).abs().mean() > 0.02  # the network does something
    torch.testing.assert_close(output, reference, atol=1e-4, rtol=0)


def test_pixel_unshuffle_stem_tiles_without_seams() -> None:
    # The stem halves the first level's resolution: tiles must still sit on its grid (multiples of
    # 32, not 16) and share statistics with the whole image.
    stemmed = FastInstructIR(tiny_network(seed=5, stem=2))
    assert stemmed.config.size_multiple == 32
    image = scene(320, 416)
    gates = stemmed.gates(embedding())
    whole = stemmed.forward(image, gates)
    tiled = TiledRestorer(stemmed, TilingSettings(tile=128)).restore(image, gates)
    assert psnr(whole, image) < 30
    assert psnr(whole, tiled) >= MIN_TILED_PSNR


def test_executor_depends_on_instruction(executor: FastInstructIR) -> None:
    image = scene(32, 48)
    first = executor.forward(image, executor.gates(embedding(1)))
    second = executor.forward(image, executor.gates(embedding(2)))
    assert (first - second).abs().max() > 1e-3


def test_executor_replayed_statistics_equal_recorded(executor: FastInstructIR) -> None:
    image = scene(64, 64)
    gates = executor.gates(embedding())
    statistics = ChannelStatistics()
    recorded = executor.forward(image, gates, statistics, record=True)
    assert len(statistics) > 0
    replayed = executor.forward(image, gates, statistics)
    torch.testing.assert_close(replayed, recorded, atol=1e-6, rtol=0)
    # Replaying another image's statistics must change the result (they are really used).
    other = ChannelStatistics()
    executor.forward(torch.zeros_like(image) + 0.9, gates, other, record=True)
    assert (executor.forward(image, gates, other) - recorded).abs().max() > 1e-4


def test_executor_rejects_odd_sizes_and_unrecorded_batches(executor: FastInstructIR) -> None:
    gates = executor.gates(embedding())
    with pytest.raises(ValueError, match="multiples of 16"):
        executor.forward(torch.rand(1, 3, 40, 48), gates)
    with pytest.raises(ValueError, match="batch of one"):
        executor.forward(torch.rand(2, 3, 32, 32), gates)


def test_executor_cancel_callback_runs_between_blocks(executor: FastInstructIR) -> None:
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        executor.forward(scene(32, 32), executor.gates(embedding()), check_cancel=check)
    assert calls == 3


# ----------------------------------------------------------------------------- tile plans


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap", "feather"),
    [
        (1024, 1280, 256, 64, 16),
        (1008, 1280, 512, 64, 16),
        (1000, 777, 256, 64, 16),  # not multiples of anything
        (100, 900, 128, 32, 16),
        (512, 512, 512, 64, 16),  # a single tile
        (96, 60, 256, 64, 16),  # smaller than a tile
        (600, 600, 128, 16, 16),
        (300, 300, 128, 96, 16),
        (1040, 1040, 256, 64, 16),  # last stride of 16 pixels
    ],
)
def test_blend_weights_sum_to_one_and_cover(height: int, width: int, tile: int, overlap: int, feather: int) -> None:
    tiles = plan_tiles(height, width, tile, overlap, feather)
    total = np.zeros((height, width), dtype=np.float32)
    for t in tiles:
        assert t.top >= 0 and t.left >= 0 and t.top + t.height <= height and t.left + t.width <= width
        assert t.weight.shape == (t.height, t.width) and t.weight.dtype == np.float32
        assert t.weight.min() >= 0 and t.weight.max() <= 1
        total[t.top : t.top + t.height, t.left : t.left + t.width] += t.weight
    assert np.all(total == 1.0), f"max deviation {np.abs(total - 1).max()}"
    assert len(tiles) == estimate_tile_count(height, width, TilingSettings(tile=tile, overlap=overlap), multiple=1)


def test_blend_weights_with_odd_feather_sum_to_one() -> None:
    height, width = 4000, 3000
    total = np.zeros((height, width), dtype=np.float64)
    for t in plan_tiles(height, width, 512, 64, feather=37):
        total[t.top : t.top + t.height, t.left : t.left + t.width] += t.weight
    np.testing.assert_allclose(total, 1.0, atol=1e-6, rtol=0)


def test_tile_edges_inside_the_photo_get_no_weight() -> None:
    """The pixels next to an inner tile edge saw padding, not the photo: they must not count."""
    tile, overlap, feather = 256, 64, 16
    height, width = 1024, 1280
    dead = overlap // 2 - feather // 2  # the ramp is centred in the overlap
    for t in plan_tiles(height, width, tile, overlap, feather):
        if t.top > 0:
            assert t.weight[:dead].max() == 0
        if t.left > 0:
            assert t.weight[:, :dead].max() == 0
        if t.top + t.height < height:
            assert t.weight[-dead:].max() == 0
        if t.left + t.width < width:
            assert t.weight[:, -dead:].max() == 0
        # ...while the tile's centre is fully its own.
        assert t.weight[t.height // 2, t.width // 2] == 1


def test_axis_starts_and_weights() -> None:
    starts = axis_starts(1024, 256, 64)
    assert starts == [0, 192, 384, 576, 768]
    assert axis_starts(200, 256, 64) == [0]
    weights = axis_weights(1024, starts, 256, 16)
    total = np.zeros(1024, dtype=np.float32)
    for start, weight in zip(starts, weights, strict=True):
        total[start : start + 256] += weight
    assert np.all(total == 1)
    # The hand-over between tile 0 and tile 1 is a 16-pixel ramp centred at (192 + 256) / 2 = 224.
    ramp = weights[1][224 - 192 - 8 : 224 - 192 + 8]
    assert ramp[0] < 0.1 and ramp[-1] > 0.9 and np.all(np.diff(ramp) > 0)


def test_tiling_for_memory_and_statistics_tiles() -> None:
    settings = tiling_for_memory(384, width=32, memory_bytes=3e9)
    assert settings.tile == 384
    # The largest single pass (whole image, or the joint statistics pass) fits the memory.
    largest = max(settings.whole_image_pixels, settings.exact_statistics_pixels, settings.statistics_sample_pixels)
    assert largest * ACTIVATION_BYTES_PER_PIXEL_PER_WIDTH * 32 <= 3e9
    assert 0 < settings.statistics_sample_pixels <= settings.exact_statistics_pixels
    # Wider networks get fewer exact pixels.
    assert tiling_for_memory(384, width=64).exact_statistics_pixels < settings.exact_statistics_pixels
    small = TilingSettings(tile=256, exact_statistics_pixels=10 * 65536, statistics_sample_pixels=3 * 65536)
    assert small.statistics_tiles(10, 65536) == list(range(10))
    sample = small.statistics_tiles(40, 65536)
    assert len(sample) == 3 and sample[0] == 0 and sample[-1] == 39


def test_restorer_rejects_tiles_off_the_grid(executor: FastInstructIR) -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        TiledRestorer(executor, TilingSettings(tile=250))


# ----------------------------------------------------------------------------- tiled vs whole


def test_single_tile_of_odd_size_equals_module(network: InstructIRNet, executor: FastInstructIR) -> None:
    """An image that is not a multiple of 16 is padded like the module pads it, then cropped back."""
    image = scene(50, 70)
    instruction = embedding()
    with torch.no_grad():
        reference = network(image, instruction)
    restored = TiledRestorer(executor).restore(image, executor.gates(instruction))
    assert restored.shape == image.shape
    torch.testing.assert_close(restored, reference, atol=1e-4, rtol=0)


def test_tiled_restore_matches_whole_image(executor: FastInstructIR) -> None:
    image = scene(1024, 1280)
    gates = executor.gates(embedding())
    whole = executor.forward(image, gates)
    reports: list[TileProgress] = []
    settings = TilingSettings(tile=256)
    tiled = TiledRestorer(executor, settings).restore(image, gates, progress=reports.append)
    assert tiled.shape == image.shape
    assert torch.isfinite(tiled).all()
    assert psnr(whole, image) < 30  # the network really changes the photo
    value = psnr(whole, tiled)
    print(f"tiled (256) vs whole 1024x1280: {value:.1f} dB")
    assert value >= MIN_TILED_PSNR
    # 35 tiles, all measured together (they fit in exact_statistics_pixels): one report at the end.
    assert reports[-1].tiles_done == reports[-1].tiles_total == 35
    assert reports[-1].fraction == 1.0


def test_sampled_statistics_have_no_seams(
    network: InstructIRNet, executor: FastInstructIR, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A photo larger than exact_statistics_pixels: statistics come from a sample, still seamless."""
    height, width = 500, 760  # padded to 512 x 768 inside the restorer
    image = scene(height, width, seed=5)
    instruction = embedding()
    gates = executor.gates(instruction)
    area = 128 * 128
    settings = TilingSettings(tile=128, overlap=64, exact_statistics_pixels=4 * area, statistics_sample_pixels=6 * area)
    tile_count = estimate_tile_count(height, width, settings)
    assert len(settings.statistics_tiles(tile_count, area)) < tile_count  # really sampled

    batches: list[int] = []
    original_forward = executor.forward

    def spy(batch: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        batches.append(batch.shape[0])
        return original_forward(batch, *args, **kwargs)

    monkeypatch.setattr(executor, "forward", spy)
    reports: list[TileProgress] = []
    tiled = TiledRestorer(executor, settings).restore(image, gates, progress=reports.append)
    monkeypatch.undo()
    assert batches[0] == 6 and all(b == 1 for b in batches[1:]) and sum(batches) == tile_count
    assert [r.tiles_done for r in reports] == list(range(6, tile_count + 1))
    assert reports[0].eta_seconds is not None and reports[-1].fraction == 1.0

    with torch.no_grad():
        whole = network(image, instruction)
    assert tiled.shape == whole.shape
    assert torch.isfinite(tiled).all()
    value = psnr(whole, tiled)
    error = (tiled - whole)[0].abs().amax(dim=0)  # (H, W)
    print(f"sampled statistics vs whole 500x760: {value:.1f} dB, max error {float(error.max()):.2e}")
    assert value >= MIN_TILED_PSNR
    assert float(error.max()) < 1e-2

    # The check has teeth: abutting tiles with their own statistics leave visible seams.
    padded = F.pad(image, (0, 768 - width, 0, 512 - height), mode="reflect")
    naive = torch.zeros_like(padded)
    for top in range(0, 512, 128):
        for left in range(0, 768, 128):
            crop = padded[..., top : top + 128, left : left + 128]
            naive[..., top : top + 128, left : left + 128] = executor.forward(crop, gates)
    naive = naive[..., :height, :width]
    naive_error = (naive - whole)[0].abs().amax(dim=0)
    seam_columns = list(range(127, width - 1, 128))
    across = naive_error[:, seam_columns].mean()
    print(f"naive tiling: {psnr(whole, naive):.1f} dB, seam error {float(across):.2e}")
    assert float(across) > 3 * float(naive_error.mean())  # the naive seams stand out
    # ...while on those same lines the sampled-statistics result is orders of magnitude cleaner.
    assert float(error[:, seam_columns].mean()) < 1e-2 * float(across)


# ----------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("phase", ["statistics pass", "tile pass"])
def test_cancel_stops_restore_promptly(executor: FastInstructIR, phase: str) -> None:
    """Cancel from another thread, at a moment the job does not choose: it stops within a second."""
    image = scene(768, 1024)  # 20 tiles of 256: 4 measured together, then 16 one by one
    gates = executor.gates(embedding())
    area = 256 * 256
    settings = TilingSettings(tile=256, exact_statistics_pixels=4 * area, statistics_sample_pixels=4 * area)
    restorer = TiledRestorer(executor, settings)
    flag = threading.Event()
    flagged_at: list[float] = []
    timers: list[threading.Timer] = []
    reports: list[TileProgress] = []
    calls = 0

    def check_cancel() -> None:
        nonlocal calls
        calls += 1
        if flag.is_set():
            raise Cancelled

    def cancel_now() -> None:
        flagged_at.append(time.perf_counter())
        flag.set()

    def cancel_later() -> None:
        timers.append(threading.Timer(0.2, cancel_now))
        timers[-1].start()

    def progress(report: TileProgress) -> None:
        reports.append(report)
        if phase == "tile pass" and len(reports) == 1:
            cancel_later()

    if phase == "statistics pass":
        cancel_later()
    try:
        with pytest.raises(Cancelled):
            restorer.restore(image, gates, progress=progress, check_cancel=check_cancel)
    finally:
        for timer in timers:
            timer.cancel()
    stopped = time.perf_counter()
    assert flagged_at, "the restore finished before the cancel came: use a larger image"
    latency = stopped - flagged_at[0]
    print(f"cancel in the {phase}: stopped {latency * 1000:.0f} ms after the request ({calls} checks)")
    assert latency < 1.0
    # Stopped before the end (in the statistics pass no tile is even reported yet, on this machine).
    assert not reports or reports[-1].tiles_done < reports[-1].tiles_total


def test_cancel_after_n_checks_stops_at_once(executor: FastInstructIR) -> None:
    image = scene(256, 384)
    gates = executor.gates(embedding())
    area = 128 * 128
    settings = TilingSettings(tile=128, exact_statistics_pixels=2 * area, statistics_sample_pixels=2 * area)
    restorer = TiledRestorer(executor, settings)
    calls = 0
    reports: list[TileProgress] = []

    def check_cancel() -> None:
        nonlocal calls
        calls += 1
        if calls >= 40:  # well into the per-tile phase (the sample pass makes ~18 checks)
            raise Cancelled

    with pytest.raises(Cancelled):
        restorer.restore(image, gates, progress=reports.append, check_cancel=check_cancel)
    assert calls == 40  # nothing ran a check (or a block) after the one that raised
    assert reports and reports[-1].tiles_done < reports[-1].tiles_total


def test_balanced_tiles_waste_less_than_fixed_tiles() -> None:
    # 2000 px with 512-px tiles overlapping by 64: five tiles either way, but evenly sized ones.
    assert balanced_tile_size(2000, 512, 64) == 464  # (2000 + 4 * 64) / 5, rounded up to 16
    assert balanced_tile_size(300, 512, 64) == 300
    for length in (520, 1000, 2000, 4000, 6000):
        size = balanced_tile_size(length, 512, 64)
        assert size % 16 == 0 and size <= 512
        assert len(axis_starts(length, size, 64)) == len(axis_starts(length, 512, 64))


def test_small_photo_runs_as_one_tile_equal_to_whole_image(executor: FastInstructIR) -> None:
    image = scene(208, 272)
    gates = executor.gates(embedding())
    whole = executor.forward(image, gates)
    settings = TilingSettings(tile=128, whole_image_pixels=208 * 272)
    reports: list[TileProgress] = []
    result = TiledRestorer(executor, settings).restore(image, gates, progress=reports.append)
    assert torch.equal(result, whole)
    assert [r.tiles_total for r in reports] == [1]
    assert estimate_tile_count(208, 272, settings) == 1
