"""``instructir-desktop restore --recipe FILE|auto INPUT... -o OUT``: a saved recipe on many photos.

Inputs and outputs are planned like any ``restore`` (``batch.plan_batch``); the photos run one
after another through the plugin host (``editing.recipe_runs``), under one progress bar for the
whole batch. A photo that fails is reported and the rest still done; outputs finished by an
earlier, interrupted run of the same recipe are recognised by the recipe they record and kept.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from instructir_desktop.cli.batch import Planned, plan_batch
from instructir_desktop.cli.progress import ProgressBar, say
from instructir_desktop.cli.usage import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError

if TYPE_CHECKING:
    from instructir_desktop.editing.recipe_runs import Tally
    from instructir_desktop.editing.recipes import Recipe
    from instructir_desktop.inference.requests import RestorationRuntime
    from instructir_desktop.plugins.host import PluginHost

# Options of ``restore`` that a recipe decides instead; given together with --recipe they are refused.
_RECIPE_DECIDES = {"instruction": "-i/--instruction", "scale": "--scale"}


def recipe_request(text: str) -> Recipe | str:
    """The recipe file named by ``--recipe``, or ``auto`` (UsageError when it cannot be used)."""
    from instructir_desktop.editing.recipes import (
        ANALYSIS_UNAVAILABLE,
        AUTO,
        RecipeError,
        load_recipe,
        photo_analysis_available,
    )

    if text == AUTO:
        if not photo_analysis_available():
            raise UsageError(ANALYSIS_UNAVAILABLE)
        return AUTO
    try:
        return load_recipe(text)
    except RecipeError as error:
        raise UsageError(str(error)) from None


def check_recipe_arguments(args: argparse.Namespace) -> None:
    for name, flag in _RECIPE_DECIDES.items():
        if getattr(args, name, None) is not None:
            raise UsageError(f"{flag} cannot be used with --recipe: the recipe says what to do")
    if args.strength != 1.0:
        raise UsageError("--strength cannot be used with --recipe: each step keeps the strength it was saved with")


def recipe_command(
    args: argparse.Namespace, host_for: Callable[[], PluginHost], runtime_for: Callable[[], RestorationRuntime]
) -> int:
    """Run ``args.recipe`` on ``args.inputs`` into ``args.output``; the model loads on first use."""
    check_recipe_arguments(args)
    request = recipe_request(args.recipe)
    planned = plan_batch(args.inputs, args.output, args.overwrite, args.format)
    if isinstance(planned, int):
        return planned
    if isinstance(request, str):
        say(f"recipe: each photo's own analysis, on {len(planned.jobs)} photo(s)")
    else:
        say(f"recipe: {request.describe()}, on {len(planned.jobs)} photo(s)")
    host = host_for()
    try:
        return run_planned(args, host, request, planned, runtime_for)
    finally:
        host.close()


def run_planned(
    args: argparse.Namespace,
    host: PluginHost,
    request: Recipe | str,
    planned: Planned,
    runtime_for: Callable[[], RestorationRuntime],
) -> int:
    from instructir_desktop.editing.recipe_runs import RecipeBatch, RecipeJob
    from instructir_desktop.editing.recipes import RecipeError
    from instructir_desktop.io import ExportOptions
    from instructir_desktop.plugins.jobs import RuntimeServices

    loaded: list[RestorationRuntime] = []

    def runtime() -> RestorationRuntime:
        if not loaded:  # one model for the whole batch, loaded when the first photo needs it
            from instructir_desktop.inference.backends import BackendError
            from instructir_desktop.inference.devices import DeviceError
            from instructir_desktop.model.weights import WeightsError

            try:
                loaded.append(runtime_for())
            except (WeightsError, DeviceError, BackendError) as error:
                raise RecipeError(str(error)) from None  # the same for every photo: the batch stops
        return loaded[0]

    options = ExportOptions(
        args.format,
        args.quality,
        args.bit_depth,
        not args.strip_metadata,
        "srgb" if args.profile == "srgb" else "original",
    )
    bar = ProgressBar(enabled=not args.quiet)

    def services_for(report: Callable[[float], None]) -> RuntimeServices:
        return RuntimeServices(runtime, lambda fraction, _eta: report(fraction))

    batch = RecipeBatch(host, request, services_for, options, max_pixels=args.max_pixels)
    jobs = [RecipeJob(job.source, job.target) for job in planned.jobs]
    try:
        tally = batch.run(jobs, lambda fraction, label: bar.update(f"recipe [{label}]", fraction, None))
    except KeyboardInterrupt:
        bar.finish()
        tally = batch.tally
        say(f"interrupted: {tally.summary()}; run the same command again to finish the rest")
        return EXIT_INTERRUPTED
    except RecipeError as error:
        bar.finish()
        say(f"error: {error}")
        return EXIT_USAGE
    bar.finish()
    return _report(tally, planned.failures)


def _report(tally: Tally, failures_before: int) -> int:
    for target in tally.written:
        say(f"→ {target}")
    for target in tally.already_done:
        say(f"already done: {target}")
    for source in tally.nothing_to_do:
        say(f"{source}: nothing to do")
    for source, reason in tally.failed:
        say(f"error: {source}: {reason.removeprefix(f'{source.name}: ')}")
    for notice in tally.notices:
        say(f"note: {notice}")
    say(tally.summary())
    return EXIT_FAILED if tally.failed or failures_before else EXIT_OK
