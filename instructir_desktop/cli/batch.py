"""One batch loop for every command that runs an action on files (``restore``, ``apply``): inputs
expanded, outputs planned, each file read, run through the plugin host, written; a bad file is
reported and the rest still done."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from instructir_desktop.cli.progress import ProgressBar, say
from instructir_desktop.cli.usage import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from instructir_desktop.core.logs import record_failure

if TYPE_CHECKING:
    from instructir_desktop.inference.requests import RestorationRuntime
    from instructir_desktop.plugins.host import PluginHost


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


def plan_outputs(sources: Sequence[Path], output: str, several: bool, fmt: str | None = None) -> list[Job]:
    """Where each input goes. A folder output keeps the input file names."""
    from instructir_desktop.io import WRITE_EXTENSIONS

    out = Path(output)
    into_folder = several or out.is_dir() or output.endswith(("/", os.sep))
    if not into_folder and fmt is None and out.suffix.lower() not in WRITE_EXTENSIONS:
        known = ", ".join(sorted(WRITE_EXTENSIONS))
        raise UsageError(f"{out}: cannot tell the image format from the name (use one of {known}, or a folder)")
    jobs: list[Job] = []
    for source in sources:
        target = out / output_name(source, fmt) if into_folder else out
        jobs.append(Job(source, target))
    names = [j.target.resolve() for j in jobs]
    if len(set(names)) != len(names):
        raise UsageError("two inputs have the same file name and would be written to the same output file")
    return jobs


def output_name(source: Path, fmt: str | None = None) -> str:
    """The input's name, with an extension we can write: the chosen format's, the input's own, or for a
    camera RAW (never written) a 16-bit TIFF's."""
    from instructir_desktop.io import FORMATS, READ_EXTENSIONS, WRITE_EXTENSIONS

    suffix = source.suffix.lower()
    if fmt is not None:
        return source.stem + FORMATS[fmt.upper()].extensions[0]
    if suffix in WRITE_EXTENSIONS:
        return source.name
    return source.stem + (".tif" if suffix in READ_EXTENSIONS else ".png")


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def describe(error: BaseException, source: Path | None = None) -> str:
    """One line for ``error``; without the file name when the line already starts with ``source``
    (a file error names its file, and the line that shows it names the input)."""
    text = " ".join(str(error).split())
    if source is not None:
        text = text.removeprefix(f"{source.name}: ")
    return text or type(error).__name__


@dataclass(frozen=True)
class Planned:
    """The jobs to do, and how many inputs already failed while planning them."""

    jobs: list[Job]
    failures: int


def plan_batch(inputs: Sequence[str], output: str, overwrite: bool, fmt: str | None = None) -> Planned | int:
    """The jobs to do, with the problems found on the way said; an exit code when there are none."""
    sources, problems = expand_inputs(inputs)
    for problem in problems:
        say(f"error: {problem}")
    if not sources:
        return EXIT_USAGE if not problems else EXIT_FAILED
    jobs = plan_outputs(sources, output, several=len(inputs) > 1 or len(sources) > 1, fmt=fmt)
    refused = [job for job in jobs if same_file(job.source, job.target) and not overwrite]
    for job in refused:
        say(f"error: {job.source}: the output would overwrite the input (pass --overwrite to allow it)")
    kept = [job for job in jobs if job not in refused]
    if not kept:
        return EXIT_FAILED
    return Planned(kept, len(problems) + len(refused))


@dataclass(frozen=True)
class OutputOptions:
    """How the outputs are written (``restore``'s output flags; the defaults keep the input's)."""

    format: str | None = None  # None: from the output's extension
    quality: int = 95
    bit_depth: int | None = None  # None: the input's
    keep_metadata: bool = True
    convert_to_srgb: bool = False  # else a wide-gamut input keeps its colour profile


class Batch:
    """Runs ``action_id`` with ``params`` on each job through ``host``; the model, when the action
    asks for it, comes from ``runtime``."""

    def __init__(
        self,
        host: PluginHost,
        action_id: str,
        params: Mapping[str, object],
        runtime: Callable[[], RestorationRuntime],
        *,
        quiet: bool = False,
        output: OutputOptions | None = None,
    ) -> None:
        self.output = output or OutputOptions()
        self.host = host
        self.action_id = action_id
        self.params = params
        self.runtime = runtime
        self.bar = ProgressBar(enabled=not quiet)

    def run(self, planned: Planned, max_pixels: int | None = None) -> int:
        from instructir_desktop.plugins.api import NothingToDo

        jobs, failures = planned.jobs, planned.failures
        written = 0
        for number, job in enumerate(jobs, 1):
            label = f"[{number}/{len(jobs)}] {job.source.name}"
            try:
                summary = self.run_one(job, label, max_pixels)
            except KeyboardInterrupt:
                self.bar.finish()
                say(f"interrupted: {written} of {len(jobs)} written; {job.target} was not written")
                return EXIT_INTERRUPTED
            except NothingToDo as reply:
                self.bar.finish()
                say(f"{job.source}: {reply}")
                return EXIT_USAGE
            except Exception as error:  # one bad input must not stop the batch
                self.bar.finish()
                failures += 1
                record_failure(f"{self.action_id} on {job.source} failed", error)
                say(f"error: {job.source}: {describe(error, job.source)}")
                continue
            self.bar.finish()
            written += 1
            say(f"{job.source} → {job.target}  ({summary})")
        if failures:
            say(f"{failures} input(s) failed, {written} written")
        return EXIT_FAILED if failures else EXIT_OK

    def run_one(self, job: Job, label: str, max_pixels: int | None = None) -> str:
        """One file: read, run, write. Returns what was done, for the log line."""
        from instructir_desktop.instructions.interpret import plan_summary
        from instructir_desktop.io import read_image, write_image
        from instructir_desktop.plugins.jobs import RuntimeServices
        from instructir_desktop.plugins.outcome import ActionInput

        image = read_image(job.source, max_pixels=max_pixels)
        for notice in image.notices:
            say(f"note: {job.source.name}: {notice}")
        services = RuntimeServices(self.runtime, lambda fraction, eta: self.bar.update(label, fraction, eta))
        outcome = self.host.execute(self.action_id, ActionInput(image.rgb, alpha=image.alpha), self.params, services)
        for notice in services.notices:
            self.bar.finish()
            say(f"note: {notice}")
        job.target.parent.mkdir(parents=True, exist_ok=True)
        alpha = outcome.alpha if outcome.scale != 1 else image.alpha
        output = self.output
        write_image(
            job.target,
            outcome.applied_to(image.rgb),
            alpha,
            metadata=image.metadata,
            format=output.format,
            quality=output.quality,
            bit_depth=output.bit_depth,
            keep_metadata=output.keep_metadata,
            colour_profile="srgb" if output.convert_to_srgb else "original",
        )
        done = plan_summary(outcome.plan) if outcome.plan else self.host.action(self.action_id).title
        return f"{done}, {outcome.seconds:.1f}s"
