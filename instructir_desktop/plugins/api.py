"""The plugin API: the only module a plugin imports from InstructIR Desktop.

A plugin is a Python package with a ``plugin.toml`` manifest beside its ``__init__.py``. The
manifest names the plugin, its actions with their typed parameters, and optional chat commands,
so the host can list everything and build the controls without importing any plugin code. Each
action points at a function in the plugin's code, imported the first time the action runs:

    def run(image, mask, params, context) -> image | ActionResult

``image`` is float32 RGB (H, W, 3) in [0, 1], read-only; ``mask`` is None (whole photo) or float32
(H, W) in [0, 1] (the feathered selection; the host composites the result through it, so an action
may ignore it); ``params`` holds the parameters already checked against their declared ranges;
``context`` reports progress, shows previews, checks for cancel, logs, and reads and runs the
restoration model. The function returns its full-strength output: a new float32 array of the
image's size (or an integer multiple of it: an enlargement), or an :class:`ActionResult` that also
says at which strength to apply it and what was done.

The application's own restore action is a plugin like any other and uses nothing more than this
module (``instructir_desktop/plugins/builtin/restore``).

The API is versioned: a manifest declares ``api_version``; the host refuses a plugin written for
a newer API than it has, with a message naming both versions. Version 2 added ``ActionResult``,
previews, notices, plans and the model's interpreter to version 1, which still loads as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference.requests import PreviewResult, RestoreResult
from instructir_desktop.instructions.intent import offers_in_words
from instructir_desktop.instructions.interpret import Interpretation, PlanStep, parse_plan, plan_summary, step_for_task

API_VERSION = 2
ENTRY_POINT_GROUP = "instructir_desktop.plugins"
MANIFEST_NAME = "plugin.toml"
# "plan": an ordered list of restoration steps (``PlanStep``); written by hand as "denoise, upscale x2".
PARAMETER_KINDS = ("float", "int", "bool", "choice", "text", "plan")

Plan = tuple[PlanStep, ...]
ParameterValue = float | int | bool | str | Plan


class PluginError(Exception):
    """Something wrong with a plugin (manifest, import, run, output); one line for the user."""


class NothingToDo(PluginError):
    """The request asks for nothing the action can do; the message says what it can do instead."""


class ActionCancelled(Exception):
    """Raised by ``context.check_cancel()`` when the person cancelled; plugins let it propagate."""


class HostServices(Protocol):
    """What the caller of ``PluginHost.execute`` provides to an action's context: the editor's
    worker (progress and previews become engine events), the command line (a progress bar, the
    model loaded in process), or nothing at all (``NullServices``). Every method is safe to call
    from the action's thread."""

    def progress(
        self,
        fraction: float,
        message: str = "",
        *,
        tiles_done: int = 0,
        tiles_total: int = 0,
        eta_seconds: float | None = None,
    ) -> None:
        """Report how far the action is, 0..1 (tiles and time left when known)."""

    def show_preview(self, pixels: np.ndarray, bounds: Bounds, scale: float) -> None:
        """Show ``pixels`` over the part ``bounds`` of the image until the result arrives; ``scale``
        is preview pixels per image pixel. Show what the result will look like there."""

    def notice(self, message: str) -> None:
        """A line the person should read (a fallback taken, a limit met), shown with the result."""

    def check_cancel(self) -> None:
        """Raise :class:`ActionCancelled` if the person cancelled; call it between chunks of work."""

    def log(self, message: str) -> None:
        """A line for the log (not shown as an error)."""

    def interpret(self, instruction: str, image_size: tuple[int, int] | None = None) -> Interpretation:
        """The restoration model's plan for ``instruction`` (steps may be empty: then its reply
        says what it can do). Loads the model on first use."""
        ...

    def restore_plan(self, image: np.ndarray, plan: Sequence[PlanStep]) -> RestoreResult:
        """Run ``plan`` with the restoration model on ``image``, at full strength, with progress
        and cancel. An upscale step makes the result larger (``RestoreResult.scale``)."""
        ...

    def preview_plan(
        self, image: np.ndarray, plan: Sequence[PlanStep], bounds: Bounds | None, mask: np.ndarray | None = None
    ) -> PreviewResult:
        """A quick low-resolution restoration of ``bounds`` of ``image`` (upscale steps left out)."""
        ...


class ActionContext(HostServices, Protocol):
    """What a running action may use: the services, seen from the part of the image it was given."""

    @property
    def preview_bounds(self) -> Bounds | None:
        """The part of ``image`` the person is looking at, when a quick preview of it is wanted
        before the full result (big photos); None: no preview wanted."""
        ...

    def restore(self, image: np.ndarray, instruction: str, mask: np.ndarray | None = None) -> np.ndarray:
        """Restore ``image`` following ``instruction`` at full strength, same size (the host
        applies the selection). Raises NothingToDo when the instruction asks for nothing the model
        does, PluginError for an upscale (use ``restore_plan``) or where no model is available."""
        ...


@dataclass(frozen=True, eq=False)
class ActionResult:
    """An action's full-strength output and what it did; an action may return a plain array instead.

    ``pixels`` has the image's height and width, or both multiplied by the same whole number (an
    enlargement: the host then resizes the alpha channel and the image it blends with to match).
    """

    pixels: np.ndarray
    # How much of ``pixels`` to apply: 0 keeps the image, 1 is the output. The person can change it
    # afterwards without running the action again.
    strength: float = 1.0
    tasks: tuple[str, ...] = ()  # what was done, for the history (default: the action's id)
    plan: Plan = ()  # the restoration steps run, when the action ran a plan
    model_id: str = ""
    device: str = ""
    notices: tuple[str, ...] = ()
    seconds: float | None = None  # how long the work took (None: the host's clock decides)


ActionOutput = np.ndarray | ActionResult
ActionFunction = Callable[[np.ndarray, np.ndarray | None, Mapping[str, Any], ActionContext], ActionOutput]


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
        if self.kind == "plan" and self.default is None:
            object.__setattr__(self, "default", ())
        object.__setattr__(self, "default", self.coerce(self.default))  # the default must itself be valid

    @property
    def label(self) -> str:
        return self.title or self.name.replace("_", " ").capitalize()

    def coerce(self, value: object) -> ParameterValue:
        """``value`` (a typed value, or text from a command line or chat) as this parameter's type."""
        if self.kind == "plan":
            return self._plan(value)
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
            if not isinstance(value, (str, int, float, np.number)) or isinstance(value, bool):
                raise TypeError
            number: float | int = int(value) if self.kind == "int" else float(value)
        except (TypeError, ValueError, OverflowError):
            raise PluginError(f"{self.label}: “{value}” is not {self._expected()}") from None
        if self.kind == "float" and not np.isfinite(number):
            raise PluginError(f"{self.label}: “{value}” is not a finite number")
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise PluginError(f"{self.label}: {number:g} is outside the allowed range ({self._expected()})")
        return number

    def _expected(self) -> str:
        """What a value must be, as a person reads it (the messages never show Python literals)."""
        if self.kind == "choice":
            return f"one of {', '.join(self.choices)}"
        if self.kind == "bool":
            return "on or off (yes/no)"
        if self.kind == "text":
            return "text"
        noun = "a whole number" if self.kind == "int" else "a number"
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"{noun} from {low:g} to {high:g}"
        if low is not None:
            return f"{noun} of at least {low:g}"
        if high is not None:
            return f"{noun} of at most {high:g}"
        return noun

    def _plan(self, value: object) -> Plan:
        if isinstance(value, str):
            try:
                return parse_plan(value)
            except ValueError as error:
                raise PluginError(f"{self.label}: {error}") from None
        if isinstance(value, (tuple, list)) and all(isinstance(step, PlanStep) for step in value):
            return tuple(value)
        raise PluginError(f"{self.label}: “{value}” is not a plan")

    def format(self, value: object) -> str:
        """A value as a person reads (and could type) it."""
        if self.kind == "plan" and isinstance(value, tuple):
            return plan_summary(value) if value else "(from the instruction)"
        return str(value)


@dataclass(frozen=True)
class ActionInfo:
    """An action as the manifest declares it (no code imported)."""

    id: str
    title: str
    function: str  # attribute of the plugin's module
    parameters: tuple[Parameter, ...] = ()
    description: str = ""
    plugin_id: str = ""
    # With a selection, the action gets the selected region and this many pixels around it instead
    # of the whole image (None: always the whole image, say to measure it); a local edit then costs
    # a local computation.
    selection_context: int | None = None

    def resolve_params(self, given: Mapping[str, object]) -> dict[str, ParameterValue]:
        """Defaults filled in, every value checked; unknown names refused."""
        known = {p.name: p for p in self.parameters}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise PluginError(
                f"{self.id}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known) or 'none'}"
            )
        return {name: p.coerce(given[name]) if name in given else p.default for name, p in known.items()}

    def parameter(self, kind: str) -> Parameter | None:
        """The first parameter of ``kind`` (None: there is none)."""
        return next((p for p in self.parameters if p.kind == kind), None)


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
    extra: Mapping[str, object] = field(default_factory=dict)
    # The action (qualified id) that receives the chat's plain messages, in its first text
    # parameter; "" for none. The built-in restore plugin declares one.
    chat_messages: str = ""


class NullServices:
    """Services for running an action outside the application (scripts, tests): no model, no
    previews; progress fractions and log lines are recorded."""

    def __init__(self) -> None:
        self.fractions: list[float] = []
        self.messages: list[str] = []

    def progress(
        self,
        fraction: float,
        message: str = "",
        *,
        tiles_done: int = 0,
        tiles_total: int = 0,
        eta_seconds: float | None = None,
    ) -> None:
        self.fractions.append(fraction)

    def show_preview(self, pixels: np.ndarray, bounds: Bounds, scale: float) -> None:
        return None

    def notice(self, message: str) -> None:
        self.messages.append(message)

    def check_cancel(self) -> None:
        return None

    def log(self, message: str) -> None:
        self.messages.append(message)

    def interpret(self, instruction: str, image_size: tuple[int, int] | None = None) -> Interpretation:
        raise PluginError("no restoration model in this context")

    def restore_plan(self, image: np.ndarray, plan: Sequence[PlanStep]) -> RestoreResult:
        raise PluginError("no restoration model in this context")

    def preview_plan(
        self, image: np.ndarray, plan: Sequence[PlanStep], bounds: Bounds | None, mask: np.ndarray | None = None
    ) -> PreviewResult:
        raise PluginError("no restoration model in this context")


# Version 1's name for it (plugin tests written against it keep working).
NullContext = NullServices

__all__ = [
    "API_VERSION",
    "ActionCancelled",
    "ActionContext",
    "ActionFunction",
    "ActionInfo",
    "ActionOutput",
    "ActionResult",
    "Bounds",
    "ChatCommand",
    "HostServices",
    "Interpretation",
    "Manifest",
    "NothingToDo",
    "NullContext",
    "NullServices",
    "Parameter",
    "ParameterValue",
    "Plan",
    "PlanStep",
    "PluginError",
    "PreviewResult",
    "RestoreResult",
    "offers_in_words",
    "step_for_task",
]
