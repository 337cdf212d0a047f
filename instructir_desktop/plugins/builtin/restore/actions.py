"""The restore action: the application's model through the plugin context, blended by strength."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from instructir_desktop.plugins.api import ActionContext


def instruct(
    image: np.ndarray, mask: np.ndarray | None, params: Mapping[str, Any], context: ActionContext
) -> np.ndarray:
    restored = context.restore(image, str(params["instruction"]), mask)
    strength = np.float32(params["strength"])
    return (image + strength * (restored - image)).astype(np.float32)
