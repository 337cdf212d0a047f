"""``instructir-desktop models ...``: the model store from the command line.

models list [--json]
models add PATH [--task TASK ...] [--name NAME] [--default] [--licence TEXT]
models remove ID
models default TASK ID
models check ID [--limit N] [--data FOLDER]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from instructir_desktop.cli.progress import say
from instructir_desktop.cli.usage import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from instructir_desktop.model.tasks import TASKS


def add_models_parser(commands: Any) -> None:
    models = commands.add_parser(
        "models",
        help="list, add and choose restoration models",
        description="The model store: third-party networks (SwinIR, SCUNet, NAFNet, SPAN, FFDNet, ...) that "
        "serve a task instead of the bundled model.",
    )
    sub = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="the models and the tasks each serves by default")
    listing.add_argument("--json", action="store_true", help="a JSON array")
    add = sub.add_parser("add", help="add a weights file (.safetensors, or a .pth/.pt state dict)")
    add.add_argument("path", metavar="PATH")
    add.add_argument("--task", action="append", default=[], choices=TASKS, help="what it restores (repeatable)")
    add.add_argument("--name", help="how it is shown (default: the file name)")
    add.add_argument("--default", action="store_true", help="make it the default for its tasks")
    add.add_argument("--licence", default="", help="a licence note to keep with it")
    remove = sub.add_parser("remove", help="remove an added model")
    remove.add_argument("model", metavar="ID")
    default = sub.add_parser("default", help="choose the model that serves a task ('bundled' for the built-in one)")
    default.add_argument("task", choices=TASKS)
    default.add_argument("model", metavar="ID")
    check = sub.add_parser("check", help="measure a model on the validation images against the bundled model")
    check.add_argument("model", metavar="ID")
    check.add_argument("--data", help="validation folder with mcmaster/ (default ../shared/data/val)")
    check.add_argument("--limit", type=int, help="use only the first N images")
    check.add_argument("--sigma", type=float, action="append", default=[], help="noise levels for denoise (15 25 50)")
    check.add_argument("--device", default="auto")


def models_command(args: argparse.Namespace) -> int:
    from instructir_desktop.model.store import ModelStore
    from instructir_desktop.model.weights import WeightsError

    store = ModelStore()
    try:
        if args.models_command == "list":
            return _list(store, args.json)
        if args.models_command == "add":
            added = store.add(
                args.path, tasks=args.task, name=args.name, make_default=args.default, licence=args.licence
            )
            say(f"added {added.name}: {added.architecture}, x{added.scale}, for {', '.join(added.tasks)}")
            if added.default_for:
                say(f"default for {', '.join(added.default_for)}")
            print(added.id)
            return EXIT_OK
        if args.models_command == "remove":
            removed = store.remove(args.model)
            say(f"removed {removed.name} ({removed.id})")
            return EXIT_OK
        if args.models_command == "default":
            chosen = store.set_default(args.task, args.model)
            say(f"{args.task} now runs on {chosen.name} ({chosen.id})")
            return EXIT_OK
        if args.models_command == "check":
            from instructir_desktop.cli.model_check import check_command

            return check_command(store, args)
    except WeightsError as error:
        say(f"error: {error}")
        return EXIT_FAILED
    except (KeyError, ValueError, FileExistsError) as error:
        raise UsageError(str(error.args[0]) if error.args else str(error)) from None
    return EXIT_USAGE


def _list(store: Any, as_json: bool) -> int:
    models = store.list()
    if as_json:
        print(json.dumps([model.to_dict() for model in models], ensure_ascii=False))
        return EXIT_OK
    for model in models:
        scale = f" x{model.scale}" if model.scale > 1 else ""
        default = f"  default for: {', '.join(model.default_for)}" if model.default_for else ""
        tasks = ", ".join(model.tasks)
        print(f"{model.id}  {model.name} ({model.architecture}{scale}, {model.source}) tasks: {tasks}{default}")
    return EXIT_OK
