"""``instructir-desktop analyze IMAGE|FOLDER... [--json]``: what is wrong with each photo, and the fix.

With ``--json`` each photo is one line, ``{"path", "suggestions": [{"task", "confidence",
"reason", "instruction"}]}``, most confident first, with the task names ``interpret`` uses; a
photo with nothing to fix has an empty list. A file that cannot be read is one line on stderr and
the others still run (exit code 1 at the end).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from instructir_desktop.cli.progress import say
from instructir_desktop.cli.usage import EXIT_FAILED, EXIT_OK


def add_analyze_parser(commands: Any) -> None:
    analyze = commands.add_parser(
        "analyze",
        help="say what is wrong with photos and how to fix it",
        description="Measure noise, blur, exposure, haze, rain, resolution and colour, and suggest the fixes.",
    )
    analyze.add_argument("images", nargs="+", metavar="IMAGE", help="photos, or folders of photos, to analyse")
    analyze.add_argument("--json", action="store_true", help="one JSON object per photo")
    analyze.add_argument(
        "--all", action="store_true", help="also list problems below the suggestion threshold (not with --json)"
    )


def analysis_record(path: str, analysis: Any) -> dict[str, object]:
    """The ``--json`` object of one photo (the contract in DESIGN.md §4)."""
    return {"path": path, "suggestions": [finding.to_dict() for finding in analysis.suggestions()]}


def _photos(names: list[str]) -> list[str]:
    """The names as given, a folder as the photos directly inside it (like ``restore``); a folder
    with none stays, to be reported."""
    from instructir_desktop.io import READ_EXTENSIONS

    photos: list[str] = []
    for name in names:
        folder = Path(name)
        inside: list[Path] = []
        if folder.is_dir():
            try:
                inside = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in READ_EXTENSIONS)
            except OSError:
                inside = []  # unreadable: reported as a folder with no photos to read
        if inside:
            photos.extend(str(p) for p in inside)
        else:
            photos.append(name)
    return photos


def analyze_command(args: argparse.Namespace) -> int:
    from instructir_desktop.editing.analysis import analyse_file
    from instructir_desktop.io import ImageReadError

    failed = 0
    for name in _photos(args.images):
        path = Path(name)
        try:
            if path.is_dir():
                raise ImageReadError(path, "no photos to read in this folder")
            if not path.exists():
                raise ImageReadError(path, "no such file")
            analysis = analyse_file(path)
        except (ImageReadError, OSError, ValueError, MemoryError) as error:
            failed += 1
            reason = error.reason if isinstance(error, ImageReadError) else " ".join(str(error).split())
            say(f"error: {name}: {reason or type(error).__name__}")
            continue
        if args.json:
            print(json.dumps(analysis_record(name, analysis), ensure_ascii=False), flush=True)
            continue
        print(f"{name}: {analysis.width}×{analysis.height} ({analysis.megapixels:.1f} MP)", flush=True)
        shown = analysis.findings if args.all else analysis.suggestions()
        if not shown:
            print("  looks fine: nothing to fix", flush=True)
        for finding in shown:
            print(f"  {finding.task:<9} {finding.confidence:4.0%}  {finding.reason}", flush=True)
    return EXIT_FAILED if failed else EXIT_OK
