"""From measurements (and the camera's own record) to problems: a task, a confidence, a reason.

Each confidence is a ramp between the value a clean photo shows and the value a clearly degraded
one shows; the ramps' ends were set on the McMaster validation photos degraded by the training
degradations and checked on Rain100H photos and on clean training photos the thresholds never saw
(``benchmarks/calibrate_analysis.py``, ``docs/analysis.md``, which says how blind each check is).
Where two problems leave the same traces (a dark photo is also noisy, rain leaves a veil like
haze) the one that explains both takes the lead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from instructir_desktop.editing.analysis.measures import Measurements
from instructir_desktop.io.metadata import CameraInfo
from instructir_desktop.model.tasks import CANONICAL_INSTRUCTIONS

# A finding at or above this is what the chat greets with and what "fix it" runs.
SUGGEST_AT = 0.5
# Below this a finding is not worth mentioning at all.
MENTION_AT = 0.2

# Ramps: (value at confidence 0, value at confidence 1).
NOISE_SIGMA = (3.0, 6.5)  # 8-bit levels; clean photos measure 0.4-2.7
HIGH_ISO = 3200  # EXIF ISO from which grain is expected
SOFTNESS_DB = (-6.5, -10.0)  # clean photos keep -7..+1.5 dB of fine detail (0.18-0.3 cycles/px)
BLUR_DB = (-5.5, -8.5)  # and -6..0 dB one octave lower, where any real blur already bites
SHAKE_ANISOTROPY_DB = (9.0, 12.0)  # clean photos differ by under 8.5 dB between directions
REBOUND_DB = (2.5, 4.5)  # enlarged photos rise 3-10 dB again, blurred ones under 2
VERY_SOFT_DB = -18.0  # beyond any blur we model: enlarged 4x or more
UNDEREXPOSED_EV = (0.55, 0.95)  # how far the brightest 1 % sits below 90 % of full scale, in stops
HAZE_DARK_CHANNEL = (0.2, 0.32)  # 10th percentile of the dark channel: clean ≤ 0.23
HAZE_SATURATION = (0.45, 0.25)  # hazy scenes are washed out
HAZE_MIN_CONTRAST = (0.05, 0.15)  # but still show a scene: hazy photos keep 0.3-0.6 of luminance spread
STREAK_COHERENCE = (0.3, 0.5)
STREAK_PEAK = (7.0, 11.0)  # clean photos' line-like pixels peak at 2-8x the mean 5° bin, rain's at 8-25x
STREAK_STRENGTH = (7.0, 11.0)  # 8-bit levels of the thin bright residual
STREAK_MAX_TILT = (30.0, 45.0)  # rain falls within ~35° of vertical
DULL_COLOURFULNESS = (25.0, 12.0)  # Hasler-Süsstrunk: ~15 is "not colourful"
MONOCHROME_COLOURFULNESS = 3.0  # a black-and-white photo is not "flat colour"
FLAT_CONTRAST = (0.5, 0.3)
MIN_SIDE_TO_JUDGE = 16  # under this (an icon, a thumbnail) no statistic of the pixels means much
# Under four 128-px spectrum tiles the spectrum scatters too much to judge sharpness at all.
MIN_SIDE_FOR_SHARPNESS = 256
SMALL_MEGAPIXELS = (1.0, 0.3)
SIZE_ONLY_CAP = 0.35  # pixel count alone says little about quality: never a suggestion by itself
DISPLAY_PIXELS = 1920 * 1080

# Fix order: what the network does best on a clean signal first (rain and noise hide the edges that
# deblurring needs), light and haze before colour, enlargement last (it multiplies the pixels).
FIX_ORDER = ("derain", "denoise", "lowlight", "dehaze", "deblur", "enhance", "upscale")


@dataclass(frozen=True)
class Finding:
    task: str
    confidence: float
    reason: str  # plain words, for the chat and the command line
    instruction: str  # what the network is conditioned on when this is run
    factor: int | None = None  # upscale factor

    def to_dict(self) -> dict[str, object]:
        return {
            "task": self.task,
            "confidence": round(self.confidence, 3),
            "reason": self.reason,
            "instruction": self.instruction,
        }


def ramp(value: float, zero: float, one: float) -> float:
    """0 at ``zero``, 1 at ``one`` (either direction), smooth in between."""
    t = min(1.0, max(0.0, (value - zero) / (one - zero)))
    return t * t * (3 - 2 * t)


def judge(m: Measurements, camera: CameraInfo | None = None) -> list[Finding]:
    """Every problem seen with confidence ≥ MENTION_AT, most confident first."""
    if min(m.width, m.height) < MIN_SIDE_TO_JUDGE:  # a thumbnail or an icon: only its size says anything
        return [f for f in _softness(m, camera) if f.confidence >= MENTION_AT]
    lowlight = _lowlight(m)
    rain = _rain(m)
    haze = _haze(m, rain.confidence, lowlight.confidence)
    findings = [
        lowlight,
        rain,
        haze,
        _noise(m, camera, lowlight.confidence),
        *_softness(m, camera),
        # Haze, rain's veil and darkness all dull the colours: fixing them is what brings colour back.
        _colour(m, max(rain.confidence, lowlight.confidence, haze.confidence)),
    ]
    kept = [f for f in findings if f.confidence >= MENTION_AT]
    # Two findings for one task (soft and small): keep the stronger.
    best: dict[str, Finding] = {}
    for finding in kept:
        if finding.task not in best or finding.confidence > best[finding.task].confidence:
            best[finding.task] = finding
    return sorted(best.values(), key=lambda f: -f.confidence)


def fix_order(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: FIX_ORDER.index(f.task))


def _finding(task: str, confidence: float, reason: str, factor: int | None = None) -> Finding:
    return Finding(task, round(min(1.0, max(0.0, confidence)), 3), reason, CANONICAL_INSTRUCTIONS[task], factor)


def _noise(m: Measurements, camera: CameraInfo | None, lowlight: float) -> Finding:
    sigma = m.noise_sigma
    confidence = ramp(sigma, *NOISE_SIGMA)
    iso = camera.iso if camera is not None and camera.iso else None
    if iso is not None and iso >= HIGH_ISO and sigma >= NOISE_SIGMA[0] * 0.8:
        confidence = min(1.0, confidence + 0.15)  # the camera says grain is to be expected
    # Brightening a dark photo also takes its noise away; the dark photo is the first thing to say.
    confidence *= 1 - 0.5 * lowlight
    word = "Slight" if sigma < 5 else "Noticeable" if sigma < 12 else "Heavy"
    reason = f"{word} grain (noise about {sigma:.0f} of 255"
    reason += f"; ISO {iso:g})" if iso is not None else ")"
    return _finding("denoise", confidence, reason)


def _lowlight(m: Measurements) -> Finding:
    stops = math.log2(0.9 / max(m.bright_luminance, 1e-3))
    confidence = ramp(stops, *UNDEREXPOSED_EV)
    reason = (
        f"Too dark (under-exposed by about {stops:.1f} stops): "
        f"the brightest parts reach only {m.bright_luminance * 100:.0f} %"
    )
    return _finding("lowlight", confidence, reason)


def _rain(m: Measurements) -> Finding:
    bright_lines = ramp(m.streak_strength, *STREAK_STRENGTH)
    heavy = ramp(m.streak_coherence, *STREAK_COHERENCE) * ramp(
        abs(m.streak_angle_deg), STREAK_MAX_TILT[1], STREAK_MAX_TILT[0]
    )
    sparse = ramp(m.streak_peak, *STREAK_PEAK) * ramp(
        abs(m.streak_peak_angle_deg), STREAK_MAX_TILT[1], STREAK_MAX_TILT[0]
    )
    confidence = max(heavy, sparse) * bright_lines
    tilt = abs(m.streak_angle_deg if heavy >= sparse else m.streak_peak_angle_deg)
    reason = f"Rain streaks: thin bright lines running one way, {tilt:.0f}° from vertical"
    return _finding("derain", confidence, reason)


def _haze(m: Measurements, rain: float, lowlight: float) -> Finding:
    confidence = ramp(m.dark_channel_low, *HAZE_DARK_CHANNEL) * max(0.5, ramp(m.saturation, *HAZE_SATURATION))
    # A featureless bright frame (a white wall, snow, an overexposed sky) has no scene to be hazy.
    confidence *= ramp(m.contrast, *HAZE_MIN_CONTRAST)
    # Heavy rain scatters a veil over the frame: that is the rain's, not haze.
    confidence *= (1 - 0.8 * rain) * (1 - lowlight)
    reason = (
        f"Hazy (even the darkest parts are lifted to {m.dark_channel_low * 100:.0f} % grey): "
        f"colours washed out, saturation {m.saturation * 100:.0f} %"
    )
    return _finding("dehaze", confidence, reason)


def _softness(m: Measurements, camera: CameraInfo | None) -> list[Finding]:
    soft = ramp(m.softness_db, *SOFTNESS_DB)
    enlarged = ramp(m.rebound_db, *REBOUND_DB)
    # Noise fills the fine band with its own energy and rebounds like an enlargement: only a photo
    # that is quiet says anything about its sharpness this way.
    quiet = ramp(m.noise_sigma, NOISE_SIGMA[0], 1.5)
    findings = []
    if min(m.width, m.height) < MIN_SIDE_FOR_SHARPNESS:
        soft = enlarged = quiet = 0.0
    very_soft = m.softness_db < VERY_SOFT_DB and quiet > 0
    enlargement = max(enlarged * soft, 1.0 if very_soft else 0.0) * quiet
    if enlargement > 0:
        factor = 4 if very_soft else 2
        reason = (
            f"Looks enlarged from a smaller image (about {factor}×): the finest detail is missing "
            f"({m.softness_db:.0f} dB) in the pattern interpolation leaves"
        )
        findings.append(_finding("upscale", enlargement, reason, factor))
    blurred = ramp(m.blur_db, *BLUR_DB)
    shaken = ramp(m.blur_anisotropy_db, *SHAKE_ANISOTROPY_DB) * ramp(m.blur_db, -3.0, -5.0)
    blur = (1 - (1 - blurred) * (1 - shaken)) * (1 - enlarged) * (0.0 if very_soft else 1.0) * quiet
    if blur > 0:
        word = "Slightly soft" if m.blur_db > -8 else "Blurry"
        reason = f"{word}: detail is {-m.blur_db:.0f} dB below a sharp photo's"
        if shaken > blurred:
            reason += ", more in one direction (camera shake)"
        if camera is not None and camera.exposure_time and camera.exposure_time >= 1 / 30:
            reason += f" (1/{round(1 / camera.exposure_time)} s exposure: camera shake is likely)"
            blur = min(1.0, blur + 0.1)
        findings.append(_finding("deblur", blur, reason))
    small = ramp(m.megapixels, *SMALL_MEGAPIXELS) * SIZE_ONLY_CAP
    if small > 0:
        share = m.width * m.height / DISPLAY_PIXELS
        reason = f"Small: {m.width}×{m.height} ({m.megapixels:.2f} MP) fills {share * 100:.0f} % of a Full HD screen"
        findings.append(_finding("upscale", small, reason, 2))
    return findings


def _colour(m: Measurements, explained: float) -> Finding:
    if m.colourfulness < MONOCHROME_COLOURFULNESS:
        return _finding("enhance", 0.0, "black and white")
    dull = ramp(m.colourfulness, *DULL_COLOURFULNESS)
    flat = ramp(m.contrast, *FLAT_CONTRAST)
    # Muted colours alone are often the scene (fog, snow, an overcast street): both must be flat.
    confidence = min(dull, flat) * (1 - explained)
    reason = f"Flat, dull colours (colourfulness {m.colourfulness:.0f}, contrast {m.contrast * 100:.0f} %)"
    return _finding("enhance", confidence, reason)
