"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def single_torch_thread() -> Iterator[None]:
    """Run torch on one thread: on a small shared machine, two threads fighting a background job for
    two cores make tiny CPU workloads many times slower. Modules opt in with ``usefixtures``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
