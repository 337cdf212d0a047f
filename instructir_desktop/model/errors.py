"""The model layer's error for the person, in a module light enough for the editor to import."""

from __future__ import annotations


class WeightsError(Exception):
    """A weights file that cannot be used; the message is one line meant for the user."""
