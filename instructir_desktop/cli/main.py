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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from instructir_desktop.inference.runtime import Runtime
    from instructir_desktop.instructions.interpret import Interpretation

EXIT_OK = 0
EXIT_FAILED = 1  # some inputs failed; the others were written
EXIT_USAGE = 2  # nothing was attempted: bad arguments, no weights, nothing restorable asked

SUBCOMMANDS = ("restore", "interpret", "train", "evaluate", "plugins", "apply", "desktop-entry")


class UsageError(Exception):
    """A mistake in the command line; printed as one line, exit code 2."""


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
    restore.add_argument("-i", "--instruction", required=True, help='what to fix, e.g. "remove the noise"')
    restore.add_argument("-o", "--output", required=True, help="output file, or folder (required for several inputs)")
    restore.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    restore.add_argument("--scale", type=int, help="upscale by this factor (2, 3, 4 ...) after the instruction's steps")
    restore.add_argument(
        "--strength", type=float, default=1.0, help="0 keeps the input, 1 (default) is the full restoration"
    )
    restore.add_argument("--weights", help="image-model weights (.safetensors or .pt) instead of the bundled model")
    restore.add_argument("--text-head", help="text-head weights to go with --weights")
    restore.add_argument("--model", help="a model folder (image.safetensors + text_head.safetensors + model.json)")
    restore.add_argument("--encoder", help="a sentence-transformers folder to use as the text encoder")
    restore.add_argument("--tile", type=int, default=0, help="tile size in pixels (default: chosen per device)")
    restore.add_argument("--overwrite", action="store_true", help="allow writing over an input file")
    restore.add_argument("--quiet", action="store_true", help="no progress bar")

    interpret = commands.add_parser(
        "interpret", help="show how instructions are understood", description="Print the plan for instructions."
    )
    interpret.add_argument("texts", nargs="*", metavar="TEXT", help="instructions")
    interpret.add_argument("--file", help="read one instruction per line from this file ('-' for stdin)")
    interpret.add_argument("--json", action="store_true", help="one JSON object per line")
    interpret.add_argument("--text-head", help="text-head weights instead of the bundled model's")
    interpret.add_argument("--encoder", help="a sentence-transformers folder to use as the text encoder")

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
    return parser


# ----------------------------------------------------------------------------- progress display


class ProgressBar:
    """One status line on a terminal; occasional plain lines when the output is a file or pipe."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.interactive = enabled and stream.isatty()
        self._last_line = 0.0
        self._last_length = 0

    def update(self, label: str, fraction: float, eta_seconds: float | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.interactive:
            if now - self._last_line < 0.1 and fraction < 1:
                return
            width = 28
            filled = round(width * min(1.0, fraction))
            eta = f" ETA {format_seconds(eta_seconds)}" if eta_seconds is not None and fraction < 1 else ""
            line = f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {fraction * 100:5.1f}%{eta}"
            self.stream.write(line + " " * max(0, self._last_length - len(line)))
            self._last_length = len(line)
        else:
            if now - self._last_line < 5 and fraction < 1:
                return
            self.stream.write(f"{label}: {fraction * 100:.0f}%\n")
        self._last_line = now
        self.stream.flush()

    def finish(self) -> None:
        if self.interactive and self._last_length:
            self.stream.write("\n")
            self.stream.flush()
        self._last_length = 0


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- restore


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Files as given, folders as the images directly inside them; and problems found on the way."""
    from instructir_desktop.io import READ_EXTENSIONS

    files: list[Path] = []
    problems: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in READ_EXTENSIONS)
            if not found:
                problems.append(f"{path}: no images in this folder")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    unique = list({file.resolve(): file for file in files}.values())  # a file named twice runs once
    return unique, problems


def plan_outputs(sources: Sequence[Path], output: str, several: bool) -> list[Job]:
    """Where each input goes. A folder output keeps the input file names."""
    from instructir_desktop.io import WRITE_EXTENSIONS

    out = Path(output)
    into_folder = several or out.is_dir() or output.endswith(("/", os.sep))
    if not into_folder and out.suffix.lower() not in WRITE_EXTENSIONS:
        known = ", ".join(sorted(WRITE_EXTENSIONS))
        raise UsageError(f"{out}: cannot tell the image format from the name (use one of {known}, or a folder)")
    jobs: list[Job] = []
    for source in sources:
        target = out / output_name(source) if into_folder else out
        jobs.append(Job(source, target))
    names = [j.target.resolve() for j in jobs]
    if len(set(names)) != len(names):
        raise UsageError("two inputs have the same file name and would be written to the same output file")
    return jobs


def output_name(source: Path) -> str:
    """The input's name, with an extension we can write (e.g. a .jpe becomes .jpg)."""
    from instructir_desktop.io import WRITE_EXTENSIONS

    return source.name if source.suffix.lower() in WRITE_EXTENSIONS else source.stem + ".png"


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def load_runtime_for(args: argparse.Namespace) -> Runtime:
    from instructir_desktop.inference.requests import EngineSettings
    from instructir_desktop.inference.runtime import load_runtime

    settings = EngineSettings(
        device=args.device,
        tile_size=getattr(args, "tile", 0) or 0,
        model_folder=args.model,
        weights=args.weights,
        text_head=args.text_head,
        encoder=args.encoder,
    )
    return load_runtime(settings)


def restore_command(args: argparse.Namespace) -> int:
    if not 0.0 <= args.strength <= 1.0:
        raise UsageError("--strength must be between 0 and 1")
    if args.scale is not None and not 1 <= args.scale <= 8:
        raise UsageError("--scale must be between 1 and 8")
    if args.text_head and not args.weights:
        raise UsageError("--text-head goes with --weights")
    sources, problems = expand_inputs(args.inputs)
    for problem in problems:
        say(f"error: {problem}")
    if not sources:
        return EXIT_USAGE if not problems else EXIT_FAILED
    jobs = plan_outputs(sources, args.output, several=len(args.inputs) > 1 or len(sources) > 1)
    refused = [j for j in jobs if same_file(j.source, j.target) and not args.overwrite]
    for job in refused:
        say(f"error: {job.source}: the output would overwrite the input (pass --overwrite to allow it)")
    jobs = [j for j in jobs if j not in refused]
    failures = len(problems) + len(refused)
    if not jobs:
        return EXIT_FAILED

    from instructir_desktop.inference.devices import DeviceError
    from instructir_desktop.model.weights import WeightsError

    started = time.perf_counter()
    try:
        runtime = load_runtime_for(args)
    except (WeightsError, DeviceError) as error:
        say(f"error: {error}")
        return EXIT_USAGE
    load_seconds = time.perf_counter() - started
    say(f"model: {runtime.model.spec.name} on {runtime.device_description} (loaded in {load_seconds:.1f}s)")

    bar = ProgressBar(enabled=not args.quiet)
    written = 0
    for number, job in enumerate(jobs, 1):
        label = f"[{number}/{len(jobs)}] {job.source.name}"
        try:
            seconds, plan = restore_one(runtime, job, args, bar, label)
        except KeyboardInterrupt:
            bar.finish()
            say(f"interrupted: {written} of {len(jobs)} written; {job.target} was not written")
            return 130
        except NothingToDo as reply:
            bar.finish()
            say(f"{job.source}: {reply}")
            return EXIT_USAGE
        except Exception as error:  # one bad input must not stop the batch
            bar.finish()
            failures += 1
            say(f"error: {job.source}: {describe(error)}")
            continue
        bar.finish()
        written += 1
        say(f"{job.source} → {job.target}  ({plan}, {seconds:.1f}s)")
    if failures:
        say(f"{failures} input(s) failed, {written} written")
    return EXIT_FAILED if failures else EXIT_OK


class NothingToDo(Exception):
    """The instruction asks for nothing the network can do; carries the reply."""


def plan_for(runtime: Runtime, instruction: str, scale: int | None, size: tuple[int, int]) -> Interpretation:
    from dataclasses import replace

    from instructir_desktop.instructions.interpret import step_for_task

    interpretation = runtime.interpret(instruction, size)
    steps = list(interpretation.steps)
    if scale is not None:
        steps = [s for s in steps if s.task != "upscale"]
        if scale > 1:
            steps.append(step_for_task("upscale", scale))
    if not steps:
        raise NothingToDo(interpretation.reply)
    return replace(interpretation, steps=tuple(steps))


def restore_one(
    runtime: Runtime, job: Job, args: argparse.Namespace, bar: ProgressBar, label: str
) -> tuple[float, str]:
    from instructir_desktop.inference.requests import RestoreRequest
    from instructir_desktop.inference.runtime import plan_summary
    from instructir_desktop.io import read_image, write_image

    image = read_image(job.source)
    interpretation = plan_for(runtime, args.instruction, args.scale, (image.height, image.width))
    request = RestoreRequest(
        pixels=image.rgb, plan=interpretation.steps, strength=args.strength, alpha=image.alpha, label=label
    )
    result = runtime.restore(request, progress=lambda p: bar.update(label, p.fraction, _eta(p)))
    for notice in result.notices:
        bar.finish()
        say(f"note: {notice}")
    job.target.parent.mkdir(parents=True, exist_ok=True)
    write_image(job.target, result.pixels, result.alpha, metadata=image.metadata)
    return result.seconds, plan_summary(interpretation.steps)


def _eta(progress: object) -> float | None:
    tiles = getattr(progress, "tiles", None)
    step_count = getattr(progress, "step_count", 1)
    step_index = getattr(progress, "step_index", 0)
    if tiles is None or tiles.eta_seconds is None:
        return None
    # Later steps take about as long as this one (the same number of pixels, unless upscaling).
    return float(tiles.eta_seconds + (step_count - step_index - 1) * tiles.eta_seconds / max(1e-6, 1 - tiles.fraction))


def describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


# ----------------------------------------------------------------------------- interpret


def read_instruction_lines(path: str) -> Iterator[str]:
    handle = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    try:
        for line in handle:
            if line.strip():
                yield line.strip()
    finally:
        if handle is not sys.stdin:
            handle.close()


def interpret_command(args: argparse.Namespace) -> int:
    if not args.texts and not args.file:
        raise UsageError("give instructions as arguments or with --file FILE")
    if args.file and args.file != "-" and not Path(args.file).is_file():
        raise UsageError(f"{args.file}: no such file")
    from instructir_desktop.inference.runtime import load_interpreter
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
            print(f"{text}\n  → {steps}\n  {interpretation.reply}", flush=True)
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
    except (WeightsError, DeviceError) as error:
        say(f"error: {error}")
        return EXIT_USAGE

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
    rows = evaluate(restore, data, contact_sheet=args.sheet, limit=args.limit, settings=settings, progress=say)
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


_action_runtime: dict[str, Runtime] = {}


def runtime_for_actions(device: str) -> Runtime:
    """One runtime for the whole batch, loaded when the first action asks to restore."""
    if device not in _action_runtime:
        from instructir_desktop.inference.requests import EngineSettings
        from instructir_desktop.inference.runtime import load_runtime

        _action_runtime[device] = load_runtime(EngineSettings(device=device))
    return _action_runtime[device]


def apply_command(args: argparse.Namespace) -> int:
    from instructir_desktop.io import read_image, write_image
    from instructir_desktop.plugins.api import PluginError
    from instructir_desktop.plugins.host import PluginHost
    from instructir_desktop.plugins.jobs import StandaloneContext

    given: dict[str, str] = {}
    for item in args.param:
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        given[key.strip()] = value.strip()
    host = PluginHost(user_folders=args.folder)
    try:
        action = host.action(args.action)
        action.resolve_params(given)
    except PluginError as error:
        raise UsageError(str(error)) from error
    sources, problems = expand_inputs(args.inputs)
    for problem in problems:
        say(f"error: {problem}")
    if not sources:
        return EXIT_FAILED
    jobs = plan_outputs(sources, args.output, several=len(args.inputs) > 1 or len(sources) > 1)
    failures = len(problems)
    for job in jobs:
        if same_file(job.source, job.target) and not args.overwrite:
            say(f"error: {job.source}: the output would overwrite the input (pass --overwrite to allow it)")
            failures += 1
            continue
        try:
            image = read_image(job.source)
            started = time.perf_counter()
            context = StandaloneContext(lambda: runtime_for_actions(args.device))
            result = host.run(action.id, image.rgb, params=given, context=context)
            job.target.parent.mkdir(parents=True, exist_ok=True)
            write_image(job.target, result, image.alpha, metadata=image.metadata)
        except Exception as error:  # report and go on with the next file
            failures += 1
            say(f"error: {job.source}: {describe(error)}")
            continue
        say(f"{job.source} → {job.target}  ({action.title}, {time.perf_counter() - started:.1f}s)")
    return EXIT_FAILED if failures else EXIT_OK


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUBCOMMANDS, "-h", "--help"):
        return gui_main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "restore": restore_command,
        "interpret": interpret_command,
        "train": train_command,
        "evaluate": evaluate_command,
        "plugins": plugins_command,
        "apply": apply_command,
        "desktop-entry": desktop_entry_command,
    }
    try:
        return handlers[args.command](args)
    except UsageError as error:
        say(f"error: {error}")
        return EXIT_USAGE


def gui_main(argv: Sequence[str] | None = None) -> int:
    """Open the application, with an image if one is given."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    from instructir_desktop.ui.app import run_application

    return run_application(argv)


if __name__ == "__main__":
    sys.exit(main())
