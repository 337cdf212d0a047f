"""The classical floors that evaluate measures beside the model: each must really restore."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from instructir_desktop.training import floors
from instructir_desktop.training.evaluation import (
    EVAL_SETTINGS,
    degrade_with_clue,
    evaluate,
    psnr,
    rows_to_markdown,
)
from tests.test_training import write_images

pytestmark = pytest.mark.usefixtures("single_torch_thread")

BY_KEY = {setting.key: setting for setting in EVAL_SETTINGS}


def photo(height: int = 96, width: int = 112, seed: int = 0) -> torch.Tensor:
    """A (1, 3, H, W) scene with edges and texture, like a photo, in [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 0.5 + 0.3 * np.sin(x / 9) * np.cos(y / 13)
    green = 0.3 + 0.4 * ((x // 16 + y // 16) % 2)
    blue = 0.5 + 0.3 * (((x - width / 2) ** 2 + (y - height / 2) ** 2) < (height / 3) ** 2)
    image = np.stack([red, green, blue]) + rng.normal(0, 0.02, (3, height, width))
    return torch.from_numpy(np.clip(image, 0.1, 0.9).astype(np.float32))[None]


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None]


def as_array(image: torch.Tensor) -> np.ndarray:
    return image[0].permute(1, 2, 0).numpy().astype(np.float32)


def test_non_local_means_with_the_true_sigma_removes_noise() -> None:
    clean = photo()
    noisy, clue = degrade_with_clue(clean, BY_KEY["denoise_25"], seed=3)
    assert clue.sigma_255 == 25.0
    restored = as_tensor(floors.non_local_means(0.8)(as_array(noisy), clue))
    assert psnr(restored, clean) > psnr(noisy, clean) + 3


def test_wiener_and_richardson_lucy_with_the_true_kernel_sharpen() -> None:
    clean = photo(seed=1)
    blurred, clue = degrade_with_clue(clean, BY_KEY["deblur_mild"], seed=5)
    assert clue.kernel is not None and clue.kernel.sum() == pytest.approx(1.0)
    before = psnr(blurred, clean)
    for method in (floors.wiener(0.01), floors.richardson_lucy(20)):
        assert psnr(as_tensor(method(as_array(blurred), clue)), clean) > before + 1.5
    # The wrong kernel (turned a quarter) must do worse: the floor really uses the one given.
    turned = floors.Clue(kernel=np.rot90(clue.kernel).copy())
    assert psnr(as_tensor(floors.wiener(0.01)(as_array(blurred), turned)), clean) < psnr(
        as_tensor(floors.wiener(0.01)(as_array(blurred), clue)), clean
    )


def test_lanczos_upscales_the_low_resolution_photo() -> None:
    clean = photo(seed=2)
    degraded, clue = degrade_with_clue(clean, BY_KEY["upscale_2"], seed=7)
    assert clue.small is not None and clue.small.shape == (48, 56, 3)
    restored = floors.lanczos(as_array(degraded), clue)
    assert restored.shape == (96, 112, 3)
    # Lanczos and bicubic are close relatives: within a dB of each other on the same small photo.
    assert abs(psnr(as_tensor(restored), clean) - psnr(degraded, clean)) < 1.0


def test_dark_channel_prior_lifts_uniform_haze() -> None:
    # Outdoor photos have a dark pixel in almost every patch (shadows, saturated colours): the prior.
    clean = photo(seed=3)
    clean[:, 1] = torch.where(clean[:, 1] < 0.5, torch.full_like(clean[:, 1], 0.02), clean[:, 1])
    transmission, airlight = 0.45, 0.92
    hazy = clean * transmission + airlight * (1 - transmission)
    restored = as_tensor(floors.dark_channel_prior()(as_array(hazy), floors.Clue()))
    assert psnr(restored, clean) > psnr(hazy, clean) + 5


def test_auto_gamma_brings_the_mean_to_its_target() -> None:
    dark = np.full((8, 8, 3), 0.1, np.float32)
    np.testing.assert_allclose(floors.auto_gamma(0.45)(dark, floors.Clue()), 0.45, rtol=1e-5)


def test_auto_levels_stretches_each_channel_to_the_full_range() -> None:
    ramp = np.linspace(0.2, 0.6, 1000, dtype=np.float32).reshape(25, 40, 1).repeat(3, axis=2)
    stretched = floors.auto_levels(cut=0.0)(ramp, floors.Clue())
    assert stretched.min() == pytest.approx(0.0) and stretched.max() == pytest.approx(1.0)
    # Linear: the middle of the ramp (0.4) lands in the middle.
    assert float(np.median(stretched)) == pytest.approx(0.5, abs=1e-3)


def test_evaluate_reports_the_best_floor_beside_the_model(tmp_path: Path) -> None:
    data = write_images(tmp_path / "mcmaster", 2, 64, 64, seed=11, low=0.2, high=0.8).parent
    settings = (BY_KEY["denoise_25"], BY_KEY["lowlight"])
    rows = evaluate(lambda degraded, task: degraded, data, settings=settings, with_floors=True)
    for row in rows:
        assert row.floor is not None
        candidates = [name for name, _ in floors.FLOORS[row.setting.task]]
        assert row.floor.method in candidates
        # The identity "model" sits exactly at the input; every floor here beats it.
        assert row.over_floor == pytest.approx(row.input_psnr - row.floor.psnr)
        assert row.floor.psnr > row.input_psnr
    table = rows_to_markdown(rows)
    assert "best classical method" in table and "model − method" in table
    worst = min(row.over_floor for row in rows if row.over_floor is not None)
    assert f"(worst {worst:+.2f})" in table
    assert not math.isnan(worst)
