"""From an action's outcome to an undo step. The heavy part (snapping, blending, compressing: a
second for a large photo) runs on the worker right after the action, so that the loop's thread
only swaps the result in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instructir_desktop.history import PreparedRestoration, Restoration, prepare_restoration
from instructir_desktop.plugins.outcome import ActionOutcome


@dataclass(frozen=True, eq=False)
class ReadyResult:
    """An action's outcome, with its undo step made ready when it can be swapped in as it is."""

    outcome: ActionOutcome
    prepared: PreparedRestoration | None  # None: applied on the loop's thread (an upscale, a new layer)
    changed: bool  # False: the action left every pixel as it was, so no step is added


def restoration_of(outcome: ActionOutcome) -> Restoration:
    """What the history keeps of an outcome to re-blend it later at another strength."""
    return Restoration(outcome.original, outcome.result, outcome.mask, outcome.strength)


def make_ready(outcome: ActionOutcome, layer: np.ndarray | None) -> ReadyResult:
    """On the worker: compare and prepare. ``layer`` is the whole layer the action ran on, when the
    step will be swapped into it in place (None: it will be applied another way)."""
    changed = outcome.scale != 1 or (outcome.strength > 0 and not np.array_equal(outcome.result, outcome.original))
    if layer is None or outcome.scale != 1 or not changed:
        return ReadyResult(outcome, None, changed)
    prepared = prepare_restoration(outcome.original, restoration_of(outcome), layer=layer, bounds=outcome.bounds)
    return ReadyResult(outcome, prepared, changed)
