"""Helpers for testing plugins with pytest (for plugin authors and for this project's tests)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from instructir_desktop.plugins.api import NullContext
from instructir_desktop.plugins.host import PluginHost


def sample_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A small deterministic photo-like image: smooth gradients, an edge and a little noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    image = np.stack([x / max(1, width - 1), y / max(1, height - 1), 0.5 + 0.3 * np.sin(x / 5)], axis=-1)
    image[:, width // 2 :] *= 0.6  # an edge
    return np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1).astype(np.float32)


def run_action(
    action_id: str,
    image: np.ndarray,
    params: Mapping[str, Any] | None = None,
    mask: np.ndarray | None = None,
    user_folders: Iterable[str | Path] = (),
) -> np.ndarray:
    """Run an installed (or folder) plugin's action through a real host, as the application does."""
    host = PluginHost(user_folders=user_folders)
    return host.run(action_id, image, mask, params, NullContext())


# pytest fixtures: a plugin's conftest.py enables them with
#     pytest_plugins = ["instructir_desktop.plugins.testing"]
try:
    import pytest
except ImportError:  # the helpers above work without pytest
    pass
else:

    @pytest.fixture
    def sample_photo() -> np.ndarray:
        """A fresh copy of :func:`sample_image` for each test."""
        return sample_image()

    @pytest.fixture
    def plugin_host() -> PluginHost:
        """A host that sees every installed plugin, as the application does."""
        return PluginHost()

    @pytest.fixture
    def action_context() -> NullContext:
        """A context that records progress fractions and log lines (``.fractions``, ``.messages``)."""
        return NullContext()
