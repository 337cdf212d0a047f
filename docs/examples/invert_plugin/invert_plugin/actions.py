import numpy as np

from instructir_desktop.plugins.api import ActionContext


def negative(image: np.ndarray, mask, params, context: ActionContext) -> np.ndarray:
    context.check_cancel()
    amount = float(params["amount"])
    context.progress(1.0)
    return (image + amount * (1.0 - 2.0 * image)).astype(np.float32)
