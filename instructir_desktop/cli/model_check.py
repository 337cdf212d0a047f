"""``instructir-desktop models check ID``: what an added model is worth, measured before trusting it.

The validation images of the model's tasks (McMaster with the evaluation's seeded degradations)
are restored by the bundled model and by the chosen one, on the same inputs, and the table shows
both PSNR/SSIM and the difference. A denoiser that takes a noise level (FFDNet) gets it estimated
from each photo, as it would in use. Upscalers get the bicubic reduction of the evaluation's input
(which is the small image enlarged back to full size), so their numbers are a close approximation.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from instructir_desktop.cli.progress import say
from instructir_desktop.cli.usage import EXIT_OK, UsageError

if TYPE_CHECKING:
    from instructir_desktop.model.store import ModelStore


def check_command(store: ModelStore, args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from instructir_desktop.inference.requests import EngineSettings
    from instructir_desktop.inference.runtime import load_runtime
    from instructir_desktop.instructions.interpret import PlanStep
    from instructir_desktop.model.resampling import resize_bicubic
    from instructir_desktop.model.tasks import CANONICAL_INSTRUCTIONS
    from instructir_desktop.training.evaluation import (
        EvalRow,
        degrade_with_clue,
        evaluate,
        resolve_eval_data,
        select_settings,
    )
    from instructir_desktop.training.patches import list_images, load_rgb_uint8

    model = store.find(args.model)
    if model.bundled:
        raise UsageError("check compares an added model with the bundled one: name an added model")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be positive")
    try:
        data = resolve_eval_data(args.data)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
    settings = [s for s in select_settings(list(model.tasks)) if s.dataset == "mcmaster"]
    if args.sigma:
        wanted = {f"denoise_{round(sigma)}" for sigma in args.sigma}
        settings = [s for s in settings if s.task != "denoise" or s.key in wanted]
    if not settings:
        raise UsageError(f"no validation setting measures {', '.join(model.tasks)}")
    runtime = load_runtime(EngineSettings(device=args.device, backend="torch"))
    expert = runtime.router.expert(model)
    say(f"checking {model.name} ({model.architecture}) against {runtime.model_name} on {runtime.device_description}")

    def as_image(tensor: torch.Tensor) -> Any:
        return tensor[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)

    def as_tensor(image: Any, like: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(like.device)

    clean_images = [load_rgb_uint8(path) for path in list_images([data / "mcmaster"])[: args.limit]]
    table: list[tuple[EvalRow, EvalRow]] = []
    for setting in settings:
        factor = int(setting.key.split("_")[1]) if setting.task == "upscale" else 1
        # An upscaler is given the small photo each enlarged input was made from: the evaluation's
        # own seeded reduction, recomputed here and found again by the input's bytes.
        small_of: dict[bytes, Any] = {}
        if factor > 1:
            for index, image in enumerate(clean_images):
                clean = image.float().div(255).unsqueeze(0)
                degraded, clue = degrade_with_clue(clean, setting, seed=1000 + index)
                small_of[degraded.numpy().tobytes()] = clue.small

        def bundled(degraded: torch.Tensor, task: str) -> torch.Tensor:
            return as_tensor(runtime.run_network(as_image(degraded), CANONICAL_INSTRUCTIONS[task]), degraded)

        def chosen(
            degraded: torch.Tensor, task: str, factor: int = factor, small_of: dict[bytes, Any] = small_of
        ) -> torch.Tensor:
            step = PlanStep(task, 1.0, CANONICAL_INSTRUCTIONS[task], factor if task == "upscale" else None)
            image = as_image(degraded)
            if factor > 1:  # the expert enlarges by itself: give it the small image
                small = small_of.get(degraded.cpu().numpy().tobytes())
                if small is None:  # not one of ours: the nearest thing, a bicubic reduction
                    size = (degraded.shape[-2] // factor, degraded.shape[-1] // factor)
                    small = as_image(resize_bicubic(degraded, size))
                image = small
            restored, _ = runtime.router.run(model, image, step)
            result = as_tensor(restored, degraded)
            if result.shape != degraded.shape:  # sides that were not multiples of the factor
                result = resize_bicubic(result, (degraded.shape[-2], degraded.shape[-1]))
            return result

        ours = evaluate(bundled, data, limit=args.limit, settings=(setting,))
        theirs = evaluate(chosen, data, limit=args.limit, settings=(setting,))
        if ours and theirs:
            table.append((ours[0], theirs[0]))
            mine, other = ours[0].output_psnr, theirs[0].output_psnr
            say(f"{setting.description}: bundled {mine:.2f} dB, {model.name} {other:.2f} dB")
    scale = f" x{expert.scale}" if expert.scale > 1 else ""
    print(f"### {model.name} ({model.architecture}{scale}, {model.id}) vs {runtime.model_name}\n")
    print(f"| task, data | images | input PSNR | bundled PSNR / SSIM | {model.name} PSNR / SSIM | difference (dB) |")
    print("|---|---|---|---|---|---|")
    for ours_row, theirs_row in table:
        print(
            f"| {ours_row.setting.description} | {ours_row.images} | {ours_row.input_psnr:.2f} | "
            f"{ours_row.output_psnr:.2f} / {ours_row.output_ssim:.3f} | "
            f"{theirs_row.output_psnr:.2f} / {theirs_row.output_ssim:.3f} | "
            f"{theirs_row.output_psnr - ours_row.output_psnr:+.2f} |"
        )
    return EXIT_OK
