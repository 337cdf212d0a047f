"""What is wrong with a photo: measured problems, each with a confidence and a reason in words.

``analyse`` measures a photo's pixels (numpy only, on a downscaled overview and a few full-size
crops, so a 12 MP photo takes about a second) and judges them together with the camera's record
(ISO, exposure time). The result offers the problems worth fixing as suggestions, a plan that
fixes them in a sensible order, and the words the chat greets a photo with.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from instructir_desktop.editing.analysis.measures import Measurements, measure
from instructir_desktop.editing.analysis.verdict import SUGGEST_AT, Finding, fix_order, judge
from instructir_desktop.instructions.interpret import PlanStep
from instructir_desktop.io.metadata import CameraInfo

__all__ = ["LOOKS_FINE", "SUGGEST_AT", "Analysis", "Finding", "Measurements", "analyse", "analyse_file", "fix_plan"]

LOOKS_FINE = "It looks fine to me: I see no noise, blur, haze, rain or exposure problem worth fixing."


@dataclass(frozen=True)
class Analysis:
    width: int
    height: int
    measurements: Measurements
    findings: tuple[Finding, ...]  # everything worth mentioning, most confident first
    camera: CameraInfo | None = None
    seconds: float = field(default=0.0, compare=False)

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def suggestions(self, at: float = SUGGEST_AT) -> tuple[Finding, ...]:
        """The problems sure enough to propose fixing, most confident first."""
        return tuple(f for f in self.findings if f.confidence >= at)

    def fix_plan(self) -> tuple[PlanStep, ...]:
        """The suggestions as restore steps, in the order they should run (empty: nothing to fix)."""
        return tuple(
            PlanStep(f.task, f.confidence, f.instruction, f.factor) for f in fix_order(list(self.suggestions()))
        )

    def summary(self) -> str:
        """What the chat greets the photo with: the suggestions' reasons, or that it looks fine."""
        found = self.suggestions()
        if not found:
            return LOOKS_FINE
        heads = [_short(f.reason) for f in found]
        return "; ".join([heads[0], *(head[:1].lower() + head[1:] for head in heads[1:])]) + "."


def _short(reason: str) -> str:
    """The head of a reason, before its colon: "Noticeable grain (noise about 14 of 255)"; a size
    says its numbers ("Small: 480×320 (0.15 MP) …")."""
    return reason.split(":")[0] if ":" in reason and not reason.startswith("Small") else reason


def analyse(rgb: np.ndarray, camera: CameraInfo | None = None) -> Analysis:
    """Analyse float RGB pixels in [0, 1], (H, W, 3 or 4)."""
    start = time.perf_counter()
    measurements = measure(rgb)
    findings = tuple(judge(measurements, camera))
    return Analysis(
        measurements.width, measurements.height, measurements, findings, camera, time.perf_counter() - start
    )


def analyse_file(path: str | os.PathLike[str]) -> Analysis:
    """Read a photo (any format the editor opens) and analyse it with its EXIF; raises the reader's errors."""
    from instructir_desktop.io import read_image

    image = read_image(Path(path))
    return analyse(image.rgb, image.metadata.camera)


def fix_plan(rgb: np.ndarray, camera: CameraInfo | None = None) -> tuple[PlanStep, ...]:
    """The steps that fix this photo, in order (what ``--recipe auto`` runs)."""
    return analyse(rgb, camera).fix_plan()
