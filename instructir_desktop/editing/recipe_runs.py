"""Replaying a recipe on many photos: the loop the command line and the editor share.

Each photo is read, run through the plugin host once per recipe step (the built-in restore
action with the step's plan and strength, exactly as the chat runs it), and written with the
recipe it was made with in its XMP metadata (or, when metadata is stripped, in a sidecar
``NAME.recipe.toml``). That record doubles as the completed-output marker: an output whose record
names this recipe and this source is finished and is not redone when an interrupted batch runs
again, while a file without it (an older result, a foreign file) is replaced. Outputs are written
under a temporary name and renamed (``io.write_image``), so an interruption never leaves a
half-written file under the output's name.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from instructir_desktop.core.logs import record_failure
from instructir_desktop.editing.recipes import AUTO, Recipe, RecipeError, auto_recipe
from instructir_desktop.io import (
    READ_EXTENSIONS,
    WRITE_EXTENSIONS,
    ExportOptions,
    ImageMetadata,
    ImageReadError,
    read_image,
    read_image_header,
    write_image,
)
from instructir_desktop.plugins.api import ActionCancelled, HostServices, NothingToDo
from instructir_desktop.plugins.host import BUILTIN_RESTORE_ACTION, PluginHost
from instructir_desktop.plugins.outcome import ActionInput

SIDECAR_SUFFIX = ".recipe.toml"
XMP_NAMESPACE = "https://github.com/instructir-desktop/ns/recipe/1.0/"
_MARKER = re.compile(rb'irecipe:marker="([0-9a-f]{16})"')
_OUR_DESCRIPTION = re.compile(rb"<rdf:Description[^>]*xmlns:irecipe=.*?</rdf:Description>\s*", re.DOTALL)


@dataclass(frozen=True)
class RecipeJob:
    source: Path
    target: Path


def folder_jobs(folder: Path, output_folder: Path) -> list[RecipeJob]:
    """The images directly inside ``folder``, each to a file of the same name in ``output_folder``
    (a camera RAW, never written, becomes a 16-bit TIFF)."""
    sources = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in READ_EXTENSIONS)
    jobs = []
    for source in sources:
        name = source.name if source.suffix.lower() in WRITE_EXTENSIONS else source.stem + ".tif"
        jobs.append(RecipeJob(source, output_folder / name))
    return jobs


# ---------------------------------------------------------------------------------------------- one photo


@dataclass(frozen=True)
class Replayed:
    rgb: np.ndarray
    alpha: np.ndarray | None
    notices: tuple[str, ...] = ()


def replay(
    host: PluginHost, recipe: Recipe, rgb: np.ndarray, alpha: np.ndarray | None, services: HostServices
) -> Replayed:
    """Run every step of ``recipe`` on the pixels, in order, through the plugin host."""
    notices: list[str] = []
    for step in recipe.steps:
        params = {"plan": step.plan(), "strength": step.strength, "scale": 0}
        outcome = host.execute(BUILTIN_RESTORE_ACTION, ActionInput(rgb, alpha=alpha), params, services)
        if step.model_id and outcome.model_id and outcome.model_id != step.model_id:
            notice = f"the recipe was made with model {step.model_id}; this used {outcome.model_id}"
            if notice not in notices:
                notices.append(notice)
        rgb = outcome.applied_to(rgb)
        alpha = outcome.alpha if outcome.scale != 1 else alpha
    return Replayed(rgb, alpha, tuple(notices))


# ---------------------------------------------------------------------------------------------- the record


def output_marker(request: Recipe | str, source: Path) -> str:
    """What an output made from ``source`` with this recipe (or "auto") records to say it is done."""
    recipe_id = request if isinstance(request, str) else request.digest
    return hashlib.sha256(f"{recipe_id}\0{source.name}".encode()).hexdigest()[:16]


def recipe_xmp(existing: bytes | None, recipe: Recipe, marker: str) -> bytes:
    """XMP carrying the recipe, keeping what the source's XMP said (a previous recipe is replaced)."""
    description = (
        f'<rdf:Description rdf:about="" xmlns:irecipe="{XMP_NAMESPACE}" irecipe:marker="{marker}">'
        f"<irecipe:recipe>{escape(recipe.to_toml())}</irecipe:recipe></rdf:Description>\n"
    ).encode()
    if existing and b"</rdf:RDF>" in existing:
        kept = _OUR_DESCRIPTION.sub(b"", existing)
        at = kept.rindex(b"</rdf:RDF>")
        return kept[:at] + description + kept[at:]
    return (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        + description
        + b'</rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>'
    )


def recorded_marker(target: Path) -> str | None:
    """The marker an existing output recorded (XMP first, then its sidecar); None: none, or unreadable."""
    sidecar = sidecar_path(target)
    try:
        xmp = read_image_header(target).metadata.xmp
    except (ImageReadError, OSError):
        return None  # a half-written or foreign file: not finished
    found = _MARKER.search(xmp or b"")
    if found is not None:
        return found.group(1).decode()
    if not sidecar.is_file():
        return None
    try:
        recorded = re.search(r'^marker = "([0-9a-f]{16})"', sidecar.read_text("utf-8"), re.MULTILINE)
    except (OSError, UnicodeDecodeError):
        return None
    return None if recorded is None else recorded.group(1)


def sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + SIDECAR_SUFFIX)


def write_output(
    target: Path,
    replayed: Replayed,
    metadata: ImageMetadata,
    recipe: Recipe,
    marker: str,
    options: ExportOptions,
) -> None:
    """The output with its recipe in its XMP, or in a sidecar when metadata is stripped."""
    target.parent.mkdir(parents=True, exist_ok=True)
    keep = options.keep_metadata
    if keep:
        metadata = replace(metadata, xmp=recipe_xmp(metadata.xmp, recipe, marker))
    write_image(
        target,
        replayed.rgb,
        replayed.alpha,
        metadata=metadata,
        format=options.format,
        quality=options.quality,
        bit_depth=options.bit_depth,
        keep_metadata=keep,
        colour_profile=options.colour_profile,
    )
    sidecar = sidecar_path(target)
    if keep:
        sidecar.unlink(missing_ok=True)
        return
    partial = sidecar.with_name(f".{sidecar.name}.saving")
    partial.write_text(f'marker = "{marker}"\n' + recipe.to_toml(), encoding="utf-8")
    partial.replace(sidecar)


# ---------------------------------------------------------------------------------------------- the batch


@dataclass
class Tally:
    """How a batch is going; shared between the thread that runs it and the one that shows it."""

    total: int = 0
    written: list[Path] = field(default_factory=list)
    already_done: list[Path] = field(default_factory=list)
    nothing_to_do: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    current: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def finished(self) -> int:
        return len(self.written) + len(self.already_done) + len(self.nothing_to_do) + len(self.failed)

    def summary(self) -> str:
        parts = [f"{len(self.written)} written"]
        if self.already_done:
            parts.append(f"{len(self.already_done)} already done")
        if self.nothing_to_do:
            parts.append(f"{len(self.nothing_to_do)} needed nothing")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        rest = self.total - self.finished
        if rest:
            parts.append(f"{rest} not done")
        return ", ".join(parts)


# What a batch says as it goes: (photos finished and the fraction of the current one) / total, and a label.
Report = Callable[[float, str], None]
# The host's services for one photo, reporting that photo's progress (0..1) to the callback.
ServicesFor = Callable[[Callable[[float], None]], HostServices]


class RecipeBatch:
    """Runs ``request`` (a recipe, or ``AUTO``: each photo's own analysis) on jobs; a photo that
    fails is recorded and the rest still done. Cancel (``ActionCancelled``) and Ctrl-C
    (``KeyboardInterrupt``) pass through, leaving what was finished finished."""

    def __init__(
        self,
        host: PluginHost,
        request: Recipe | str,
        services_for: ServicesFor,
        options: ExportOptions | None = None,
        *,
        max_pixels: int | None = None,
        tally: Tally | None = None,
    ) -> None:
        if isinstance(request, str) and request != AUTO:
            raise ValueError(f"a recipe request is a Recipe or {AUTO!r}")
        self.host = host
        self.request = request
        self.services_for = services_for
        self.options = options or ExportOptions()
        self.max_pixels = max_pixels
        self.tally = tally if tally is not None else Tally()

    def run(
        self,
        jobs: Sequence[RecipeJob],
        report: Report | None = None,
        photo_done: Callable[[RecipeJob], None] | None = None,
    ) -> Tally:
        """Every job in turn; ``report`` hears the progress, ``photo_done`` each photo finished
        (written, already done, nothing to do, or failed)."""
        tally = self.tally
        tally.total = len(jobs)
        for job in jobs:
            with tally.lock:
                tally.current = job.source.name
            self._one(job, report)
            if report is not None:
                report(tally.finished / max(1, tally.total), f"{tally.finished} of {tally.total}")
            if photo_done is not None:
                photo_done(job)
        return tally

    def _one(self, job: RecipeJob, report: Report | None) -> None:
        tally = self.tally
        marker = output_marker(self.request, job.source)
        if job.target.exists() and recorded_marker(job.target) == marker:
            with tally.lock:
                tally.already_done.append(job.target)
            return
        done = tally.finished

        def photo_progress(fraction: float) -> None:
            if report is not None:
                report((done + min(1.0, max(0.0, fraction))) / max(1, tally.total), job.source.name)

        try:
            image = read_image(job.source, max_pixels=self.max_pixels)
            recipe = (
                self.request
                if isinstance(self.request, Recipe)
                else auto_recipe(image.rgb, job.source.name, image.metadata.camera)
            )
            if not recipe.steps:
                with tally.lock:
                    tally.nothing_to_do.append(job.source)
                return
            replayed = replay(self.host, recipe, image.rgb, image.alpha, self.services_for(photo_progress))
            write_output(job.target, replayed, image.metadata, recipe, marker, self.options)
        except (ActionCancelled, KeyboardInterrupt):
            raise
        except RecipeError:
            raise  # no analysis: the same for every photo, so the batch stops with the reason
        except NothingToDo as reply:
            with tally.lock:
                tally.nothing_to_do.append(job.source)
                tally.notices.append(f"{job.source.name}: {reply}")
            return
        except Exception as error:  # one bad photo must not stop the batch
            if isinstance(error.__cause__, RecipeError):  # the model did not load: no photo can run
                raise error.__cause__ from None
            record_failure(f"the recipe on {job.source} failed", error)
            with tally.lock:
                tally.failed.append((job.source, _one_line(error)))
            return
        with tally.lock:
            tally.written.append(job.target)
            tally.notices.extend(f"{job.source.name}: {notice}" for notice in (*image.notices, *replayed.notices))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
