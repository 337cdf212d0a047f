"""The restore action: the application's model through the plugin context, like any plugin.

The chat reads a message first (the plan's chips the person can edit) and passes the plan in;
``/restore``, the Plugins menu and the command line pass only the instruction, and the plan is
read here. A big photo gets a quick preview of the part on screen before the full result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from instructir_desktop.plugins.api import (
    ActionContext,
    ActionResult,
    NothingToDo,
    Plan,
    PluginError,
    offers_in_words,
    step_for_task,
)


def instruct(
    image: np.ndarray, mask: np.ndarray | None, params: Mapping[str, Any], context: ActionContext
) -> ActionResult:
    plan = _plan(image, params, context)
    strength = float(params["strength"])
    upscaling = any(step.task == "upscale" for step in plan)
    if upscaling and mask is not None:
        raise PluginError("upscaling changes the photo's size, so it applies to the whole photo, not a selection")
    if context.preview_bounds is not None and not upscaling:  # a preview shows a restoration, not an enlargement
        preview = context.preview_plan(image, plan, context.preview_bounds, mask)
        context.show_preview(preview.blended(strength), preview.bounds, preview.scale)
    result = context.restore_plan(image, plan)
    if result.step_models:  # the history records which model ran each step
        plan = tuple(step.on_model(model or None) for step, model in zip(plan, result.step_models, strict=True))
    return ActionResult(
        result.restored,
        strength=strength,
        tasks=tuple(step.task for step in plan),
        plan=plan,
        model_id=result.model_id,
        device=result.device,
        notices=result.notices,
        seconds=result.seconds,
    )


def _plan(image: np.ndarray, params: Mapping[str, Any], context: ActionContext) -> Plan:
    """The steps given, or those the instruction asks for; ``scale`` adds (or removes) an upscale."""
    plan: Plan = tuple(params["plan"])
    reply = ""
    if not plan:
        interpretation = context.interpret(str(params["instruction"]), image.shape[:2])
        plan, reply = interpretation.steps, interpretation.reply
        offers = offers_in_words(interpretation.suggestions)
        reply = f"{reply} {offers}" if reply and offers else reply or offers
    scale = int(params["scale"])
    if scale:
        plan = tuple(step for step in plan if step.task != "upscale")
        if scale > 1:
            plan = (*plan, step_for_task("upscale", scale))
    if not plan:
        raise NothingToDo(reply or "There is nothing to do: give an instruction or some steps.")
    return plan
