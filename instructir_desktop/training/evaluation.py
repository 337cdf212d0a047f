"""Evaluation: PSNR/SSIM per task on McMaster with seeded synthetic degradations at fixed
settings, and on Rain100H's real rainy/clean pairs, each next to the degraded input.

Scores are computed on RGB in [0, 1] after rounding to 8 bits, over the whole image.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from instructir_desktop.training import floors
from instructir_desktop.training.degradations import (
    add_gaussian_noise,
    blur_with_kernels,
    degrade,
    downscale_upscale,
    quantize_8bit,
    resize_bicubic,
)
from instructir_desktop.training.patches import list_images, load_rgb_uint8

Restorer = Callable[[Tensor, str], Tensor]  # (1,3,H,W) degraded, task -> restored


@dataclass(frozen=True)
class EvalSetting:
    key: str
    task: str
    description: str
    dataset: str  # "mcmaster" | "rain100h"
    level: float = 0.5  # the degradation's strength, for the settings that use one


EVAL_SETTINGS: tuple[EvalSetting, ...] = (
    EvalSetting("denoise_15", "denoise", "denoise, Gaussian σ=15", "mcmaster"),
    EvalSetting("denoise_25", "denoise", "denoise, Gaussian σ=25", "mcmaster"),
    EvalSetting("denoise_50", "denoise", "denoise, Gaussian σ=50", "mcmaster"),
    EvalSetting("deblur", "deblur", "deblur, camera shake 17 px", "mcmaster"),
    EvalSetting("deblur_mild", "deblur", "deblur, camera shake 8 px", "mcmaster", level=0.18),
    EvalSetting("derain_synthetic", "derain", "derain, synthetic streaks", "mcmaster"),
    EvalSetting("derain_rain100h", "derain", "derain, Rain100H (real pairs)", "rain100h"),
    EvalSetting("dehaze", "dehaze", "dehaze, t 0.78→0.29", "mcmaster"),
    EvalSetting("lowlight", "lowlight", "low light, exposure ×0.087", "mcmaster"),
    EvalSetting("enhance", "enhance", "enhance, flattened edit", "mcmaster"),
    EvalSetting("upscale_2", "upscale", "upscale ×2 (bicubic)", "mcmaster"),
    EvalSetting("upscale_4", "upscale", "upscale ×4 (bicubic)", "mcmaster"),
)


def psnr(a: Tensor, b: Tensor) -> float:
    mse = F.mse_loss(a.float().clamp(0, 1), b.float().clamp(0, 1)).item()
    return float("inf") if mse == 0 else 10 * float(np.log10(1.0 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim(a: Tensor, b: Tensor) -> float:
    """Structural similarity (Gaussian window 11, sigma 1.5), averaged over RGB channels."""
    # float64: E[x²] − E[x]² loses the small variances of flat regions in float32.
    a = a.double().clamp(0, 1).cpu()
    b = b.double().clamp(0, 1).cpu()
    channels = a.shape[1]
    window = _gaussian_window().double().repeat(channels, 1, 1, 1)
    c1, c2 = 0.01**2, 0.03**2

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, window, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(score.mean())


def degrade_for_setting(clean: Tensor, setting: EvalSetting, seed: int) -> Tensor:
    return degrade_with_clue(clean, setting, seed)[0]


def degrade_with_clue(clean: Tensor, setting: EvalSetting, seed: int) -> tuple[Tensor, floors.Clue]:
    """The degraded (1, 3, H, W) image and what a classical method would be told about it."""
    generator = torch.Generator(device=clean.device).manual_seed(seed)
    if setting.key.startswith("denoise_"):
        sigma = float(setting.key.split("_")[1])
        return add_gaussian_noise(clean, generator, sigma), floors.Clue(sigma_255=sigma)
    if setting.key.startswith("upscale_"):
        factor = int(setting.key.split("_")[1])
        degraded = downscale_upscale(clean, generator, level=0.0, factor=factor)
        # At level 0 the upscale input is a plain antialiased bicubic reduction, so it can be redone.
        size = (max(1, clean.shape[-2] // factor), max(1, clean.shape[-1] // factor))
        return degraded, floors.Clue(small=_numpy(quantize_8bit(resize_bicubic(clean, size))))
    if setting.task == "deblur":
        degraded, kernels = blur_with_kernels(clean, generator, setting.level)
        kernel = kernels[0].double()
        return degraded, floors.Clue(kernel=(kernel / kernel.sum()).cpu().numpy())
    return degrade(clean, setting.task, generator, setting.level), floors.Clue()


def select_settings(names: Sequence[str]) -> tuple[EvalSetting, ...]:
    """The settings named by key (``upscale_2``) or by task (``upscale``: all of its settings), in
    the table's order; all of them when ``names`` is empty. Raises ValueError for an unknown name."""
    if not names:
        return EVAL_SETTINGS
    known = {s.key for s in EVAL_SETTINGS} | {s.task for s in EVAL_SETTINGS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown evaluation setting {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return tuple(s for s in EVAL_SETTINGS if s.key in names or s.task in names)


@dataclass
class Floor:
    """The best classical method on a setting's images."""

    method: str
    psnr: float
    ssim: float


@dataclass
class EvalRow:
    setting: EvalSetting
    images: int
    input_psnr: float
    input_ssim: float
    output_psnr: float
    output_ssim: float
    seconds: float
    floor: Floor | None = None

    @property
    def gain(self) -> float:
        return self.output_psnr - self.input_psnr

    @property
    def over_floor(self) -> float | None:
        """How far the model is above the best classical method (dB); None when not measured."""
        return None if self.floor is None else self.output_psnr - self.floor.psnr


def gains_by_task(rows: Sequence[EvalRow]) -> dict[str, float]:
    """Each task's gain in dB over its worst setting (denoise at σ 15, 25 and 50 → the smallest)."""
    gains: dict[str, float] = {}
    for row in rows:
        task = row.setting.task
        gains[task] = min(gains.get(task, row.gain), row.gain)
    return {task: round(gain, 2) for task, gain in gains.items()}


def resolve_eval_data(data: str | os.PathLike[str] | None) -> Path:
    candidates = [Path(data)] if data else []
    if not data:
        if os.environ.get("INSTRUCTIR_EVAL_DATA"):
            candidates.append(Path(os.environ["INSTRUCTIR_EVAL_DATA"]))
        candidates += [Path("../shared/data/val"), Path("shared/data/val")]
    for candidate in candidates:
        if (candidate / "mcmaster").is_dir():
            return candidate
    raise FileNotFoundError(
        "evaluation data not found: pass --data DIR, a folder holding mcmaster/ (clean images) and optionally "
        "rain100h/input + rain100h/target"
    )


def evaluate(
    restore: Restorer,
    data_dir: str | os.PathLike[str],
    *,
    contact_sheet: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    settings: tuple[EvalSetting, ...] = EVAL_SETTINGS,
    device: torch.device | None = None,
    progress: Callable[[str], None] | None = None,
    with_floors: bool = False,
) -> list[EvalRow]:
    """Score ``restore`` on every setting; ``with_floors`` also scores the classical floors."""
    root = Path(data_dir)
    device = device or torch.device("cpu")
    clean_images = [load_rgb_uint8(p) for p in list_images([root / "mcmaster"])[:limit]]
    rain_inputs = (
        sorted((root / "rain100h" / "input").glob("*.png"), key=_numeric_key) if (root / "rain100h").is_dir() else []
    )
    rain_inputs = rain_inputs[:limit]
    rows: list[EvalRow] = []
    sheet_rows: list[np.ndarray] = []
    for setting in settings:
        pairs: list[tuple[Tensor, Tensor]] = []
        clues: list[floors.Clue] = []
        if setting.dataset == "rain100h":
            for path in rain_inputs:
                target = path.parent.parent / "target" / path.name
                pairs.append((_float(load_rgb_uint8(path), device), _float(load_rgb_uint8(target), device)))
                clues.append(floors.Clue())
        else:
            for index, image in enumerate(clean_images):
                clean = _float(image, device)
                degraded, clue = degrade_with_clue(clean, setting, seed=1000 + index)
                pairs.append((degraded, clean))
                clues.append(clue)
        if not pairs:
            continue
        scores = np.zeros((len(pairs), 4))
        started = time.perf_counter()
        for index, (degraded, clean) in enumerate(pairs):
            restored = _round8(restore(degraded, setting.task))
            scores[index] = (psnr(degraded, clean), ssim(degraded, clean), psnr(restored, clean), ssim(restored, clean))
            if index == 0 and contact_sheet is not None:
                sheet_rows.append(_sheet_row(degraded, restored, clean))
        elapsed = time.perf_counter() - started
        mean = scores.mean(axis=0)
        input_psnr, input_ssim, output_psnr, output_ssim = (float(value) for value in mean)
        floor = best_floor(setting.task, pairs, clues) if with_floors else None
        rows.append(EvalRow(setting, len(pairs), input_psnr, input_ssim, output_psnr, output_ssim, elapsed, floor))
        if progress:
            against = f" (floor {floor.psnr:.2f}, {floor.method})" if floor else ""
            progress(f"{setting.description}: {mean[0]:.2f} → {mean[2]:.2f} dB{against}")
    if contact_sheet is not None and sheet_rows:
        width = max(r.shape[1] for r in sheet_rows)
        padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in sheet_rows]
        Image.fromarray(np.concatenate(padded, axis=0)).save(contact_sheet)
    return rows


def best_floor(task: str, pairs: Sequence[tuple[Tensor, Tensor]], clues: Sequence[floors.Clue]) -> Floor:
    """Run every classical candidate of ``task`` on the pairs; the best by mean PSNR is the floor."""
    best: Floor | None = None
    for name, method in floors.FLOORS[task]:
        scores = np.zeros((len(pairs), 2))
        for index, ((degraded, clean), clue) in enumerate(zip(pairs, clues, strict=True)):
            restored = torch.from_numpy(method(_numpy(degraded), clue)).permute(2, 0, 1)[None]
            restored = _round8(restored.to(clean.device))
            scores[index] = (psnr(restored, clean), ssim(restored, clean))
        mean_psnr, mean_ssim = (float(v) for v in scores.mean(axis=0))
        if best is None or mean_psnr > best.psnr:
            best = Floor(name, mean_psnr, mean_ssim)
    assert best is not None
    return best


def _numpy(image: Tensor) -> np.ndarray:
    """(1, 3, H, W) tensor -> (H, W, 3) float32 array."""
    return image[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)


def _numeric_key(path: Path) -> tuple[int, str]:
    return (int(path.stem), "") if path.stem.isdigit() else (1 << 30, path.stem)


def _float(image: Tensor, device: torch.device) -> Tensor:
    return image.to(device).float().div(255).unsqueeze(0)


def _round8(x: Tensor) -> Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def _sheet_row(degraded: Tensor, restored: Tensor, clean: Tensor, height: int = 200) -> np.ndarray:
    tiles = []
    for image in (degraded, restored, clean):
        h, w = image.shape[-2:]
        resized = F.interpolate(image.float().cpu(), size=(height, max(1, round(w * height / h))), mode="area")
        tiles.append((resized[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8))
    return np.concatenate(tiles, axis=1)


def rows_to_markdown(rows: list[EvalRow], title: str = "") -> str:
    lines = [title, ""] if title else []
    with_floors = any(row.floor is not None for row in rows)
    header = "| task, data | images | input PSNR / SSIM | output PSNR / SSIM | gain (dB) |"
    rule = "|---|---|---|---|---|"
    if with_floors:
        header += " best classical method | its PSNR / SSIM | model − method (dB) |"
        rule += "---|---|---|"
    lines += [header, rule]
    for row in rows:
        line = (
            f"| {row.setting.description} | {row.images} | {row.input_psnr:.2f} / {row.input_ssim:.3f} | "
            f"{row.output_psnr:.2f} / {row.output_ssim:.3f} | {row.gain:+.2f} |"
        )
        if with_floors:
            line += (
                f" {row.floor.method} | {row.floor.psnr:.2f} / {row.floor.ssim:.3f} | {row.over_floor:+.2f} |"
                if row.floor is not None and row.over_floor is not None
                else " – | – | – |"
            )
        lines.append(line)
    if rows:
        mean_gain = sum(r.gain for r in rows) / len(rows)
        mean_in = np.mean([r.input_psnr for r in rows])
        mean_out = np.mean([r.output_psnr for r in rows])
        line = f"| **mean** | | {mean_in:.2f} | {mean_out:.2f} | **{mean_gain:+.2f}** |"
        margins = [r.over_floor for r in rows if r.over_floor is not None]
        if with_floors and margins:
            line += f" | | **{float(np.mean(margins)):+.2f}** (worst {min(margins):+.2f}) |"
        lines.append(line)
    return "\n".join(lines)
