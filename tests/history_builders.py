"""Builders and constants shared by the tests split out of test_history.py."""

from __future__ import annotations

import numpy as np

from instructir_desktop.core.document import Document
from instructir_desktop.history import (
    History,
)

RNG = np.random.default_rng(20240613)
H, W = 48, 64
GRID_STEP = 1.0 / 65535


def photo(height: int = H, width: int = W) -> np.ndarray:
    """Pixels as read from an 8-bit file: k / 255 in float32."""
    return np.divide(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8), np.float32(255), dtype=np.float32)


def network_output(height: int, width: int) -> np.ndarray:
    """Float pixels on no grid at all, like a network's output."""
    return RNG.random((height, width, 3), dtype=np.float32)


def new_history(height: int = H, width: int = W, **kwargs: int) -> History:
    return History(Document.from_image(photo(height, width)), **kwargs)


def pixels_of(history: History) -> list[np.ndarray]:
    return [layer.pixels.copy() for layer in history.document.layers]


def assert_same_document(actual: Document, expected: Document) -> None:
    assert actual.size == expected.size and actual.active_index == expected.active_index
    assert [layer.id for layer in actual.layers] == [layer.id for layer in expected.layers]
    for got, want in zip(actual.layers, expected.layers, strict=True):
        assert (got.name, got.opacity, got.visible, got.blend_mode) == (
            want.name,
            want.opacity,
            want.visible,
            want.blend_mode,
        )
        np.testing.assert_array_equal(got.pixels, want.pixels)
        assert (got.alpha is None) == (want.alpha is None)
        if got.alpha is not None:
            np.testing.assert_array_equal(got.alpha, want.alpha)
