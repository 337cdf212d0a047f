"""The ``instructir-desktop`` command: the application, batch restoration, and developer tools.

Heavy packages (torch, sentence-transformers, Qt) are imported inside the command that needs
them, so ``--help`` and argument errors are instant and the GUI window shows before the model
loads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from instructir_desktop.cli.analyze import add_analyze_parser, analyze_command
from instructir_desktop.cli.batch import Batch, OutputOptions, describe, plan_batch
from instructir_desktop.cli.progress import ProgressBar, say
from instructir_desktop.cli.usage import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from instructir_desktop.core.logs import configure_logging, details_hint, one_line, record_failure

if TYPE_CHECKING:
    from instructir_desktop.inference.requests import RestorationRuntime
    from instructir_desktop.inference.runtime import Runtime
    from instructir_desktop.plugins.host import PluginHost

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "ProgressBar", "UsageError", "main"]

SUBCOMMANDS = (
    "restore",
    "interpret",
    "analyze",
    "train",
    "evaluate",
    "plugins",
    "apply",
    "desktop-entry",
    "models",
)


# ----------------------------------------------------------------------------- argument parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="instructir-desktop",
        description="Offline photo restoration from plain-language instructions. "
        "Without a subcommand, opens the application.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    restore = commands.add_parser(
        "restore",
        help="restore images from the command line",
        description="Restore image files (or every image in the given folders) following an instruction.",
    )
    restore.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    restore.add_argument("-i", "--instruction", help='what to fix, e.g. "remove the noise"')
    restore.add_argument(
        "--recipe",
        metavar="FILE|auto",
        help="instead of -i: replay a recipe saved in the editor (auto: each photo's own analysis); "
        "outputs an interrupted run finished are kept",
    )
    restore.add_argument("-o", "--output", required=True, help="output file, or folder (required for several inputs)")
    restore.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    restore.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "torch", "onnxruntime"),
        help="auto (default: ONNX Runtime on the CPU, torch on a GPU), torch or onnxruntime",
    )
    restore.add_argument("--scale", type=int, help="upscale by this factor (2, 3, 4 ...) after the instruction's steps")
    restore.add_argument(
        "--strength", type=float, default=1.0, help="0 keeps the input, 1 (default) is the full restoration"
    )
    restore.add_argument("--weights", help="image-model weights (.safetensors or .pt) instead of the bundled model")
    restore.add_argument("--text-head", help="text-head weights to go with --weights")
    restore.add_argument(
        "--model",
        help="a model from `models list` (id or name) for the steps of its tasks, or an InstructIR model folder "
        "(image.safetensors + text_head.safetensors + model.json)",
    )
    restore.add_argument("--encoder", help="a sentence-transformers folder to use as the text encoder")
    restore.add_argument("--tile", type=int, default=0, help="tile size in pixels (default: chosen per device)")
    restore.add_argument("--overwrite", action="store_true", help="allow writing over an input file")
    restore.add_argument("--quiet", action="store_true", help="no progress bar")
    export = restore.add_argument_group("output file (the format follows the -o extension)")
    export.add_argument("--format", choices=["jpeg", "png", "tiff", "webp", "heic", "avif"], help="override the format")
    export.add_argument("--quality", type=int, default=95, help="JPEG, WebP, HEIC and AVIF quality, 1-100 (95)")
    export.add_argument("--bit-depth", type=int, choices=[8, 16], help="PNG or TIFF depth (default: the input's)")
    export.add_argument("--strip-metadata", action="store_true", help="write no EXIF, XMP or resolution")
    export.add_argument(
        "--profile",
        choices=["original", "srgb"],
        default="original",
        help="colour profile of a wide-gamut input: keep it (default) or convert to sRGB",
    )
    export.add_argument("--max-pixels", type=int, help="refuse inputs larger than this (default 200,000,000)")

    interpret = commands.add_parser(
        "interpret", help="show how instructions are understood", description="Print the plan for instructions."
    )
    interpret.add_argument("texts", nargs="*", metavar="TEXT", help="instructions")
    interpret.add_argument("--file", help="read one instruction per line from this file ('-' for stdin)")
    interpret.add_argument("--json", action="store_true", help="one JSON object per line")
    interpret.add_argument("--text-head", help="text-head weights instead of the bundled model's")
    interpret.add_argument("--encoder", help="a sentence-transformers folder to use as the text encoder")

    add_analyze_parser(commands)

    train = commands.add_parser("train", help="train a model", description="Train the image model and text head.")
    train.add_argument("--config", required=True, help="a training configuration (.toml)")

    evaluate = commands.add_parser(
        "evaluate",
        help="measure a model on the validation images",
        description="PSNR/SSIM per task on McMaster (seeded synthetic degradations) and Rain100H.",
    )
    evaluate.add_argument("--weights", help="image-model weights (default: the bundled model)")
    evaluate.add_argument("--text-head", help="text-head weights to go with --weights")
    evaluate.add_argument("--model", help="a model folder")
    evaluate.add_argument("--encoder", help="a sentence-transformers folder")
    evaluate.add_argument("--data", help="validation folder with mcmaster/ and rain100h/ (default ../shared/data/val)")
    evaluate.add_argument("--sheet", help="save a contact sheet (input | output | clean) to this PNG")
    evaluate.add_argument("--limit", type=int, help="use only the first N images of each set")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime"))
    evaluate.add_argument("--output", help="also write the Markdown table to this file")
    evaluate.add_argument(
        "--record",
        action="store_true",
        help="store the per-task gains in the evaluated model folder's model.json (the chat then says "
        "which tasks the model barely improves)",
    )
    evaluate.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SETTING",
        help="evaluate only this setting (repeatable): a key such as deblur or upscale_2, or a task name",
    )
    evaluate.add_argument(
        "--no-floors",
        dest="floors",
        action="store_false",
        help="skip the classical methods measured beside the model (non-local means, Wiener, Lanczos, ...)",
    )

    plugins = commands.add_parser("plugins", help="list plugins", description="Plugins and their actions.")
    plugins_commands = plugins.add_subparsers(dest="plugins_command", metavar="COMMAND", required=True)
    listing = plugins_commands.add_parser("list", help="list installed plugins")
    listing.add_argument("--json", action="store_true", help="a JSON array")
    listing.add_argument("--folder", action="append", default=[], help="also scan this user plugin folder")

    apply = commands.add_parser(
        "apply",
        help="run a plugin action on images",
        description="Run any plugin action on files or folders, e.g. apply photo-tools.unsharp-mask in.jpg -o out.jpg",
    )
    apply.add_argument("action", metavar="ACTION_ID")
    apply.add_argument("inputs", nargs="+", metavar="INPUT")
    apply.add_argument("-o", "--output", required=True, help="output file, or folder for several inputs")
    apply.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="an action parameter")
    apply.add_argument("--folder", action="append", default=[], help="also scan this user plugin folder")
    apply.add_argument("--overwrite", action="store_true", help="allow writing over an input file")
    apply.add_argument("--device", default="auto", help="for actions that restore: auto, cpu, cuda or mps")
    apply.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop a plugin action that runs longer than this on one image (default 300)",
    )

    desktop = commands.add_parser(
        "desktop-entry",
        help="add the editor to the desktop's application menu",
        description="Add the editor to the application menu (with its icon, and as the opener of .irproject "
        "files) for this user, launching this installation; or remove it again.",
    )
    desktop.add_argument("action", choices=("install", "remove"))
    desktop.add_argument(
        "--data-home", type=Path, default=None, help="instead of $XDG_DATA_HOME (normally ~/.local/share)"
    )
    from instructir_desktop.cli.models import add_models_parser

    add_models_parser(commands)
    return parser


# ----------------------------------------------------------------------------- restore and apply


def plugin_host(folders: Sequence[str] = ()) -> PluginHost:
    """Every installed plugin (the built-in restore action among them), and those in ``folders``."""
    from instructir_desktop.plugins.host import PluginHost

    return PluginHost(user_folders=folders)


def load_runtime_for(args: argparse.Namespace, tile: int = 0) -> Runtime:
    from instructir_desktop.inference.requests import EngineSettings
    from instructir_desktop.inference.runtime import load_runtime

    settings = EngineSettings(
        device=args.device,
        backend=args.backend,
        tile_size=tile,
        model_folder=args.model,
        weights=args.weights,
        text_head=args.text_head,
        encoder=args.encoder,
    )
    runtime = load_runtime(settings, progress=lambda _, message: say(message))
    for notice in runtime.load_notices:
        say(f"note: {notice}")
    return runtime


def restore_command(args: argparse.Namespace) -> int:
    """The built-in restore action on every input, through the plugin host like any action."""
    if args.recipe is not None:
        from instructir_desktop.cli.recipes import recipe_command

        return recipe_command(args, plugin_host, lambda: load_runtime_for(args, args.tile))
    if args.instruction is None:
        raise UsageError("say what to fix with -i INSTRUCTION, or replay a recipe with --recipe FILE")
    if not 0.0 <= args.strength <= 1.0:
        raise UsageError("--strength must be between 0 and 1")
    if args.scale is not None and not 1 <= args.scale <= 8:
        raise UsageError("--scale must be between 1 and 8")
    if args.text_head and not args.weights:
        raise UsageError("--text-head goes with --weights")
    if not 1 <= args.quality <= 100:
        raise UsageError("--quality must be between 1 and 100")
    if args.max_pixels is not None and args.max_pixels < 1:
        raise UsageError("--max-pixels must be positive")
    planned = plan_batch(args.inputs, args.output, args.overwrite, args.format)
    if isinstance(planned, int):
        return planned
    from instructir_desktop.inference.backends import BackendError
    from instructir_desktop.inference.devices import DeviceError
    from instructir_desktop.model.weights import WeightsError
    from instructir_desktop.plugins.host import BUILTIN_RESTORE_ACTION

    started = time.perf_counter()
    try:
        runtime = load_runtime_for(args, args.tile)
    except (WeightsError, DeviceError, BackendError) as error:
        say(f"error: {error}")
        return EXIT_USAGE
    load_seconds = time.perf_counter() - started
    say(f"model: {runtime.model_name} on {runtime.device_description} (loaded in {load_seconds:.1f}s)")
    router = getattr(runtime, "router", None)  # a test's stand-in runtime may have none
    forced = router.forced if router is not None else None
    if forced is not None and not forced.bundled:
        say(f"model for {', '.join(forced.tasks)}: {forced.label}")
    params = {"instruction": args.instruction, "strength": args.strength, "scale": args.scale or 0}
    output = OutputOptions(args.format, args.quality, args.bit_depth, not args.strip_metadata, args.profile == "srgb")
    host = plugin_host()
    try:
        batch = Batch(host, BUILTIN_RESTORE_ACTION, params, lambda: runtime, quiet=args.quiet, output=output)
        return batch.run(planned, max_pixels=args.max_pixels)
    finally:
        host.close()


def apply_command(args: argparse.Namespace) -> int:
    """Any plugin action on every input; actions that restore load the model on first use."""
    from instructir_desktop.plugins.api import PluginError

    given: dict[str, str] = {}
    for item in args.param:
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        given[key.strip()] = value.strip()
    if args.time_limit is not None and not args.time_limit > 0:
        raise UsageError("--time-limit must be a positive number of seconds")
    host = plugin_host(args.folder)
    if args.time_limit is not None:
        host.time_limit = args.time_limit
    try:
        host.action(args.action).resolve_params(given)
    except PluginError as error:
        raise UsageError(str(error)) from error
    planned = plan_batch(args.inputs, args.output, args.overwrite)
    if isinstance(planned, int):
        return planned
    loaded: list[RestorationRuntime] = []

    def runtime() -> RestorationRuntime:
        """One runtime for the whole batch, loaded when the first action asks to restore."""
        if not loaded:
            from instructir_desktop.inference.requests import EngineSettings
            from instructir_desktop.inference.runtime import load_runtime

            loaded.append(load_runtime(EngineSettings(device=args.device)))
        return loaded[0]

    try:
        return Batch(host, args.action, given, runtime, quiet=True).run(planned)
    finally:
        host.close()


# ----------------------------------------------------------------------------- interpret


def read_instruction_lines(path: str) -> Iterator[str]:
    """The non-empty lines of an instruction file ('-': standard input), checked as UTF-8 text line
    by line, so a bad byte is blamed on its file and line rather than on whatever reads it later."""
    handle = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    name = "standard input" if path == "-" else path
    try:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise UsageError(
                    f"{name}: line {number} is not valid UTF-8 text; save the file as UTF-8 and try again"
                ) from None
            if line:
                yield line
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def interpret_command(args: argparse.Namespace) -> int:
    if not args.texts and not args.file:
        raise UsageError("give instructions as arguments or with --file FILE")
    if args.file and args.file != "-" and not Path(args.file).is_file():
        raise UsageError(f"{args.file}: no such file")
    from instructir_desktop.inference.runtime import load_interpreter
    from instructir_desktop.instructions import intent
    from instructir_desktop.model.weights import WeightsError

    try:
        interpreter = load_interpreter(args.text_head, args.encoder)
    except WeightsError as error:
        say(f"error: {error}")
        return EXIT_USAGE
    texts: Iterator[str] = iter(args.texts) if args.texts else read_instruction_lines(args.file)
    for text in texts:
        interpretation = interpreter.interpret(text)
        if args.json:
            print(json.dumps(interpretation.to_dict(), ensure_ascii=False), flush=True)
        else:
            steps = ", ".join(f"{s.task} ({s.confidence:.0%})" for s in interpretation.steps) or "nothing to do"
            offers = intent.offers_in_words(interpretation.suggestions)
            print(f"{text}\n  → {steps}\n  {interpretation.reply}" + (f"\n  {offers}" if offers else ""), flush=True)
    return EXIT_OK


# ----------------------------------------------------------------------------- train / evaluate


def train_command(args: argparse.Namespace) -> int:
    from instructir_desktop.training.trainer import TrainConfig, train

    config_path = Path(args.config)
    if not config_path.is_file():
        raise UsageError(f"{config_path}: no such configuration file")
    try:
        config = TrainConfig.from_file(config_path)
    except (ValueError, TypeError, OSError) as error:
        raise UsageError(f"{config_path}: {describe(error)}") from error
    folder = train(config)
    say(f"model written to {folder}")
    return EXIT_OK


def evaluate_command(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from instructir_desktop.inference.backends import BackendError
    from instructir_desktop.inference.devices import DeviceError
    from instructir_desktop.model.registry import record_evaluation
    from instructir_desktop.model.tasks import CANONICAL_INSTRUCTIONS
    from instructir_desktop.model.weights import WeightsError
    from instructir_desktop.training.evaluation import (
        evaluate,
        gains_by_task,
        resolve_eval_data,
        rows_to_markdown,
        select_settings,
    )

    try:
        data = resolve_eval_data(args.data)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from error
    try:
        runtime = load_runtime_for(args)
    except (WeightsError, DeviceError, BackendError) as error:
        say(f"error: {error}")
        return EXIT_USAGE

    if runtime.router.forced is not None:
        raise UsageError(
            f"{args.model} is a model from the store: measure it against the bundled one with "
            f"`instructir-desktop models check {runtime.router.forced.id}`"
        )

    def restore(degraded: torch.Tensor, task: str) -> torch.Tensor:
        # The evaluation's upscale inputs are already resized back, so the network runs as is.
        image = degraded[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
        restored = runtime.run_network(image, CANONICAL_INSTRUCTIONS[task])
        return torch.from_numpy(restored).permute(2, 0, 1)[None].to(degraded.device)

    say(f"evaluating {runtime.model.spec.name} on {runtime.device_description} with {data}")
    try:
        settings = select_settings(args.only)
    except ValueError as error:
        raise UsageError(str(error)) from error
    from instructir_desktop.training import floors

    with_floors = args.floors and floors.available()
    if args.floors and not with_floors:
        say("note: the classical floors need OpenCV and scikit-image: pip install 'instructir-desktop[eval]'")
    rows = evaluate(
        restore,
        data,
        contact_sheet=args.sheet,
        limit=args.limit,
        settings=settings,
        progress=say,
        with_floors=with_floors,
    )
    title = f"### {runtime.model.spec.name} ({runtime.model.spec.id})"
    table = rows_to_markdown(rows, title)
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n", encoding="utf-8")
    if args.sheet:
        say(f"contact sheet: {args.sheet}")
    if args.record:
        spec = runtime.model.spec
        if spec.source not in ("bundled", "folder"):
            raise UsageError("--record writes into a model folder: evaluate the bundled model or --model FOLDER")
        how = "instructir-desktop evaluate" + (f" --limit {args.limit}" if args.limit else "")
        say(f"recorded in {record_evaluation(spec.image_weights.parent, gains_by_task(rows), how)}")
    return EXIT_OK


# ----------------------------------------------------------------------------- plugins


def plugins_command(args: argparse.Namespace) -> int:
    from instructir_desktop.plugins.host import PluginHost

    host = PluginHost(user_folders=args.folder)
    if args.json:
        print(json.dumps(host.list(), ensure_ascii=False))
        return EXIT_OK
    for record in host.records:
        state = "enabled" if record.enabled else "disabled"
        print(f"{record.id} {record.version} ({record.source}, {state})")
        if record.error:
            print(f"  error: {record.error}")
        for action in record.manifest.actions if record.manifest else ():
            params = ", ".join(f"{p.name}={p.default}" for p in action.parameters)
            print(f"  {action.id}: {action.title}" + (f" [{params}]" if params else ""))
    return EXIT_OK


def desktop_entry_command(args: argparse.Namespace) -> int:
    from instructir_desktop.cli import desktop_entry

    try:
        if args.action == "install":
            done = desktop_entry.install(args.data_home)
        else:
            done = desktop_entry.remove(args.data_home)
    except OSError as error:
        say(f"error: {describe(error)}")
        return EXIT_FAILED
    for line in done:
        say(line)
    return EXIT_OK


# ----------------------------------------------------------------------------- entry points


# Arguments that are text for the model or a plugin (file names may hold any bytes the file system allows).
_TEXT_ARGUMENTS = {"instruction": "the instruction (-i)", "texts": "an instruction", "param": "a --param value"}


def check_text_arguments(args: argparse.Namespace) -> None:
    """Text that came from the terminal as bytes that are not UTF-8 (Python keeps them as lone
    surrogates) is refused here, naming the argument, instead of failing later on an image."""
    for name, what in _TEXT_ARGUMENTS.items():
        value = getattr(args, name, None)
        for text in [value] if isinstance(value, str) else list(value or ()):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(
                    f"{what} is not valid UTF-8 text; type it again (or set a UTF-8 locale, e.g. LANG=C.UTF-8)"
                ) from None


def main(argv: Sequence[str] | None = None) -> int:
    """The command line's one boundary: whatever goes wrong in a command ends as one line on the
    terminal (the traceback goes to the log file) and an exit code; Ctrl-C ends as "interrupted"."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        return gui_main(argv)
    try:
        configure_logging()
        return _run_command(argv)
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # the last boundary: anything unforeseen is one line, not a traceback
        record_failure("instructir-desktop " + " ".join(argv), error)
        say(f"error: {one_line(error)} ({type(error).__name__}; {details_hint()})")
        return EXIT_FAILED


def models_command(args: argparse.Namespace) -> int:
    from instructir_desktop.cli.models import models_command as run

    return run(args)


def _run_command(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "restore": restore_command,
        "interpret": interpret_command,
        "analyze": analyze_command,
        "train": train_command,
        "evaluate": evaluate_command,
        "plugins": plugins_command,
        "apply": apply_command,
        "desktop-entry": desktop_entry_command,
        "models": models_command,
    }
    try:
        check_text_arguments(args)
        return handlers[args.command](args)
    except UsageError as error:
        say(f"error: {error}")
        return EXIT_USAGE


def gui_main(argv: Sequence[str] | None = None) -> int:
    """Open the application, with an image if one is given. Ctrl-C at any moment, start-up
    included, ends it without a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    try:
        configure_logging()
        from instructir_desktop.ui.app import run_application

        code = run_application(argv)
    except KeyboardInterrupt:
        say("interrupted")
        code = EXIT_INTERRUPTED
    except Exception as error:  # the window could not even start: say why in one line
        record_failure("the application could not start", error)
        say(f"error: the application could not start: {one_line(error)} ({details_hint()})")
        return EXIT_FAILED
    if code == EXIT_INTERRUPTED:
        _leave_now(code)
    return code


def _leave_now(code: int) -> None:
    """End an interrupted window at once. The engine's worker may still be inside torch or ONNX
    Runtime (a model loading, an export): finalising the interpreter under a native thread aborts
    the process, so once the recovery file is written and the streams are flushed, skip it."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
