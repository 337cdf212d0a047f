"""The plugin API: the only module a plugin imports from InstructIR Desktop.

A plugin is a Python package with a ``plugin.toml`` manifest beside its ``__init__.py``. The
manifest names the plugin, its actions with their typed parameters, and optional chat commands,
so the host can list everything and build the controls without importing any plugin code. Each
action points at a function in the plugin's code, imported the first time the action runs:

    def run(image, mask, params, context) -> image

``image`` is float32 RGB (H, W, 3) in [0, 1]; ``mask`` is None (whole photo) or float32 (H, W)
in [0, 1] (the feathered selection; the host composites the result through it, so an action may
ignore it); ``params`` holds the parameters already checked against their declared ranges;
``context`` reports progress, checks for cancel, logs, and can run the restoration model. The
function returns a new float32 (H, W, 3) array and must not modify ``image`` in place.

The API is versioned: a manifest declares ``api_version``; the host refuses a plugin written for
a newer API than it has, with a message naming both versions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

API_VERSION = 1
ENTRY_POINT_GROUP = "instructir_desktop.plugins"
MANIFEST_NAME = "plugin.toml"
PARAMETER_KINDS = ("float", "int", "bool", "choice", "text")


class PluginError(Exception):
    """Something wrong with a plugin (manifest, import, run, output); one line for the user."""


class ActionCancelled(Exception):
    """Raised by ``context.check_cancel()`` when the person cancelled; plugins let it propagate."""


class ActionContext(Protocol):
    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the action is, 0..1."""

    def check_cancel(self) -> None:
        """Raise :class:`ActionCancelled` if the person cancelled; call it between chunks of work."""

    def log(self, message: str) -> None:
        """A line for the log (not shown as an error)."""

    def restore(self, image: np.ndarray, instruction: str, mask: np.ndarray | None = None) -> np.ndarray:
        """Run the application's restoration model on ``image`` following ``instruction``.

        Returns the full-strength result, same shape (the host applies the selection). Raises
        PluginError where no model is available or the instruction asks for nothing the model
        does; loads the model on first use, so the first call can take seconds.
        """


ActionFunction = Callable[[np.ndarray, np.ndarray | None, Mapping[str, Any], ActionContext], np.ndarray]


@dataclass(frozen=True)
class Parameter:
    """A typed action parameter; the host generates a control from it and checks values against it."""

    name: str
    kind: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    title: str = ""
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in PARAMETER_KINDS:
            raise PluginError(f"parameter {self.name!r}: kind must be one of {', '.join(PARAMETER_KINDS)}")
        if self.kind == "choice" and not self.choices:
            raise PluginError(f"parameter {self.name!r}: a choice needs choices")
        self.coerce(self.default)  # the default must itself be valid

    @property
    def label(self) -> str:
        return self.title or self.name.replace("_", " ").capitalize()

    def coerce(self, value: Any) -> Any:
        """``value`` (a typed value, or text from a command line or chat) as this parameter's type."""
        try:
            if self.kind == "bool":
                if isinstance(value, str):
                    lowered = value.strip().lower()
                    if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                        raise ValueError
                    return lowered in {"1", "true", "yes", "on"}
                return bool(value)
            if self.kind == "text":
                if value is None:
                    raise ValueError
                return str(value)
            if self.kind == "choice":
                text = str(value)
                if text not in self.choices:
                    raise ValueError
                return text
            number: float | int = int(value) if self.kind == "int" else float(value)
        except (TypeError, ValueError):
            expected = f"one of {', '.join(self.choices)}" if self.kind == "choice" else f"a {self.kind}"
            raise PluginError(f"{self.name}: {value!r} is not {expected}") from None
        if self.kind == "float" and not np.isfinite(number):
            raise PluginError(f"{self.name}: {value!r} is not a finite number")
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise PluginError(f"{self.name}: {number} is outside {self.minimum}..{self.maximum}")
        return number


@dataclass(frozen=True)
class ActionInfo:
    """An action as the manifest declares it (no code imported)."""

    id: str
    title: str
    function: str  # attribute of the plugin's module
    parameters: tuple[Parameter, ...] = ()
    description: str = ""
    plugin_id: str = ""

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in, every value checked; unknown names refused."""
        known = {p.name: p for p in self.parameters}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise PluginError(
                f"{self.id}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known) or 'none'}"
            )
        return {name: p.coerce(given[name]) if name in given else p.default for name, p in known.items()}


@dataclass(frozen=True)
class ChatCommand:
    """``/name value ...`` in the chat runs ``action`` with the values bound to ``arguments`` in order."""

    name: str
    action: str
    arguments: tuple[str, ...] = ()
    help: str = ""


@dataclass(frozen=True)
class Manifest:
    id: str
    name: str
    version: str
    api_version: int
    module: str
    actions: tuple[ActionInfo, ...]
    commands: tuple[ChatCommand, ...] = ()
    description: str = ""
    author: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    # The action (qualified id) that receives the chat's plain messages, in its first text
    # parameter; "" for none. The built-in restore plugin declares one.
    chat_messages: str = ""


class NullContext:
    """A context for running an action outside the application (scripts, tests)."""

    def __init__(self) -> None:
        self.fractions: list[float] = []
        self.messages: list[str] = []

    def progress(self, fraction: float, message: str = "") -> None:
        self.fractions.append(fraction)

    def check_cancel(self) -> None:
        return None

    def log(self, message: str) -> None:
        self.messages.append(message)

    def restore(self, image: np.ndarray, instruction: str, mask: np.ndarray | None = None) -> np.ndarray:
        raise PluginError("no restoration model in this context")
