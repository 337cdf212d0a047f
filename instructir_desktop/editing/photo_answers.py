"""Answers, in words, to questions about the open photo, from its analysis and the camera's record;
and the chips that offer the analysis's fixes (one per problem, and "Fix all" in fix order)."""

from __future__ import annotations

from datetime import datetime

from instructir_desktop.editing.analysis import LOOKS_FINE, Analysis, Finding
from instructir_desktop.editing.analysis.verdict import DISPLAY_PIXELS, fix_order
from instructir_desktop.instructions.interpret import PlanStep, Suggestion
from instructir_desktop.instructions.questions import PhotoQuestion
from instructir_desktop.io.metadata import CameraInfo
from instructir_desktop.model.tasks import TASK_TITLES

FIX_ALL = "Fix all"
NOT_IN_FILE = "The file does not say"


def finding_step(finding: Finding) -> PlanStep:
    # Full confidence: the person chose it by pressing, whatever the measurement's certainty.
    return PlanStep(finding.task, 1.0, finding.instruction, finding.factor)


def fix_steps(findings: tuple[Finding, ...] | list[Finding]) -> tuple[PlanStep, ...]:
    """What "Fix all" and "fix it" run: a step per finding, in fix order."""
    return tuple(finding_step(f) for f in fix_order(list(findings)))


def fix_suggestions(findings: tuple[Finding, ...] | list[Finding]) -> tuple[Suggestion, ...]:
    """A chip per problem (most confident first) and, for two or more, "Fix all" in fix order."""
    chips = [Suggestion(f.task, f.instruction, TASK_TITLES[f.task], f.reason, (finding_step(f),)) for f in findings]
    if len(findings) >= 2:
        steps = fix_steps(findings)
        order = ", then ".join(TASK_TITLES[step.task].lower() for step in steps)
        chips.append(Suggestion("", "", FIX_ALL, f"Runs them in this order: {order}.", steps))
    return tuple(chips)


def greeting(analysis: Analysis) -> str:
    """What the chat says when a photo has opened and been looked at."""
    found = analysis.suggestions()
    if not found:
        return LOOKS_FINE
    press = "Press one to fix it" if len(found) == 1 else "Press one to fix it, or Fix all"
    return f"What I see: {analysis.summary()} {press}."


def answer(question: PhotoQuestion, analysis: Analysis, camera: CameraInfo | None) -> tuple[str, tuple[Finding, ...]]:
    """The reply to ``question`` and the findings to offer as chips with it."""
    findings = {f.task: f for f in analysis.suggestions()}
    m = analysis.measurements
    if question is PhotoQuestion.PROBLEMS:
        return greeting(analysis), analysis.suggestions()
    if question is PhotoQuestion.SIZE:
        text = f"It is {analysis.width}×{analysis.height} pixels: {analysis.megapixels:.1f} megapixels."
        if analysis.width * analysis.height < DISPLAY_PIXELS:
            text += " That is smaller than a Full HD screen; upscaling would help to show or print it large."
        return text, _offer(findings, "upscale")
    if question is PhotoQuestion.SHARPNESS:
        soft = _offer(findings, "deblur", "upscale")
        if soft:
            return f"Not quite: {_lower(soft[0].reason)}.", soft
        return f"It looks sharp: fine detail is where a focused photo has it ({m.blur_db:+.0f} dB).", ()
    if question is PhotoQuestion.NOISE:
        noisy = _offer(findings, "denoise")
        if noisy:
            return f"Yes: {_lower(noisy[0].reason)}.", noisy
        return f"Hardly: the noise I measure is about {m.noise_sigma:.1f} of 255, too little to need removing.", ()
    if question is PhotoQuestion.EXPOSURE:
        dark = _offer(findings, "lowlight")
        if dark:
            return f"Yes: {_lower(dark[0].reason)}.", dark
        return (
            f"The exposure looks fine: the brightest parts reach {m.bright_luminance * 100:.0f} %, the middle "
            f"{m.median_luminance * 100:.0f} %.",
            (),
        )
    return _from_camera(question, camera, analysis), ()


def _from_camera(question: PhotoQuestion, camera: CameraInfo | None, analysis: Analysis) -> str:
    c = camera or CameraInfo()
    if question is PhotoQuestion.ISO:
        if c.iso:
            grain = " and I can see grain from it" if any(f.task == "denoise" for f in analysis.suggestions()) else ""
            return f"It was taken at ISO {c.iso:g}{grain}."
        sigma = analysis.measurements.noise_sigma
        return f"{NOT_IN_FILE} (no ISO in its EXIF). The noise I measure is about {sigma:.1f} of 255."
    if question is PhotoQuestion.CAMERA:
        name = " ".join(part for part in (c.make, c.model) if part)
        if not name:
            return f"{NOT_IN_FILE} which camera took it."
        settings = c.describe().removeprefix(name).strip(", ")
        return f"It was taken with a {name}" + (f" ({settings})." if settings else ".")
    if question is PhotoQuestion.LENS:
        parts = [p for p in (c.lens, f"{c.focal_length:g} mm" if c.focal_length else "") if p]
        return f"Lens: {', '.join(parts)}." if parts else f"{NOT_IN_FILE} which lens was used."
    if question is PhotoQuestion.SHUTTER:
        if not c.exposure_time:
            return f"{NOT_IN_FILE} how long the exposure was."
        t = c.exposure_time
        return f"The shutter was open for {f'1/{round(1 / t)}' if t < 1 else f'{t:g}'} s."
    if question is PhotoQuestion.APERTURE:
        return f"The aperture was f/{c.f_number:g}." if c.f_number else f"{NOT_IN_FILE} the aperture."
    if question is PhotoQuestion.TAKEN:
        if not c.taken:
            return f"{NOT_IN_FILE} when it was taken."
        try:
            moment = datetime.strptime(c.taken, "%Y:%m:%d %H:%M:%S")
        except ValueError:
            return f"It was taken on {c.taken}."
        return f"It was taken on {moment:%d %B %Y} at {moment:%H:%M}."
    return greeting(analysis)  # FIX is handled by running the plan; anything else: what it sees


def _offer(findings: dict[str, Finding], *tasks: str) -> tuple[Finding, ...]:
    return tuple(findings[t] for t in tasks if t in findings)


def _lower(reason: str) -> str:
    return reason[:1].lower() + reason[1:]
