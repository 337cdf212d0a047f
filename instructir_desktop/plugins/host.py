"""Finding plugins, reading their manifests without importing them, and running their actions safely.

Sources, in order: the plugins built into the application, installed packages that declare an
entry point in the ``instructir_desktop.plugins`` group (its value is the plugin's top-level
package), and the user's plugin folders (each sub-folder a package with a ``plugin.toml``).

A broken plugin (unreadable manifest, a plugin folder that is a file, import error, exception
while running, wrong output) is recorded with its error and listed; it never stops the host, hides
the good plugins, or changes the image it was given. Third-party actions run in a worker process
(``isolation.py``), so one that crashes, hangs or exits is reported and stopped; the built-in
actions run in this process.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import cast

import numpy as np

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.logs import one_line
from instructir_desktop.inference.requests import frozen_array
from instructir_desktop.model.errors import WeightsError
from instructir_desktop.plugins.api import (
    ENTRY_POINT_GROUP,
    MANIFEST_NAME,
    ActionCancelled,
    ActionFunction,
    ActionInfo,
    ActionOutput,
    ActionResult,
    ChatCommand,
    HostServices,
    Manifest,
    NullServices,
    ParameterValue,
    PluginError,
)
from instructir_desktop.plugins.isolation import DEFAULT_TIME_LIMIT, MAX_SCALE, PluginProcess, WorkerFailure
from instructir_desktop.plugins.loading import PluginCode, import_module
from instructir_desktop.plugins.manifest import parse_manifest, read_manifest
from instructir_desktop.plugins.outcome import ActionInput, ActionOutcome, HostContext

__all__ = ["BUILTIN_RESTORE_ACTION", "PluginHost", "PluginRecord", "parse_manifest"]

_log = logging.getLogger(__name__)

# Plugins inside the application package; the photo tools ship as their own package from
# plugins/photo_tools and are discovered like any third-party plugin.
BUILTIN_PACKAGES: tuple[str, ...] = ("instructir_desktop.plugins.builtin.restore",)
# The built-in restore action: it receives the chat's plain messages unless it is disabled.
BUILTIN_RESTORE_ACTION = "restore.instruct"


@dataclass
class PluginRecord:
    """A plugin the host knows about, working or not."""

    id: str
    source: str  # "builtin" | "entry point <name>" | "folder <path>"
    package: str
    location: Path | None
    manifest: Manifest | None = None
    enabled: bool = True
    error: str | None = None
    _module: ModuleType | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.manifest.name if self.manifest else self.id

    @property
    def version(self) -> str:
        return self.manifest.version if self.manifest else ""

    @property
    def isolated(self) -> bool:
        """Its actions run in the worker process: every plugin but the application's own."""
        return self.source != "builtin"

    def to_dict(self) -> dict[str, object]:
        actions = [a.id for a in self.manifest.actions] if self.manifest else []
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "actions": actions,
            "enabled": self.enabled,
            "error": self.error,
        }


# ----------------------------------------------------------------------------- the host


class PluginHost:
    def __init__(
        self,
        user_folders: Iterable[str | Path] = (),
        disabled: Iterable[str] = (),
        builtin_packages: Iterable[str] = BUILTIN_PACKAGES,
        use_entry_points: bool = True,
        *,
        time_limit: float = DEFAULT_TIME_LIMIT,
    ) -> None:
        """Discovery reads manifests only and never raises: every source that cannot be read
        becomes a record with its error, beside the plugins that work."""
        self.records: list[PluginRecord] = []
        self._disabled = set(disabled)
        # Third-party actions run here, started on the first one.
        self._process = PluginProcess(time_limit)
        for package in builtin_packages:
            self._add_package(package, "builtin")
        if use_entry_points:
            for entry_point in _entry_points():
                source = f"entry point {entry_point.name}"
                try:
                    package = entry_point.value.split(":")[0].strip()
                except Exception as error:  # a distribution's metadata holding garbage
                    self._broken(str(entry_point.name), source, f"unreadable entry point ({one_line(error)})")
                    continue
                self._add_package(package, source)
        for folder in user_folders:
            self._add_folder(Path(folder))

    @property
    def time_limit(self) -> float:
        """How long a third-party action may run on one image before it is stopped (seconds)."""
        return self._process.time_limit

    @time_limit.setter
    def time_limit(self, seconds: float) -> None:
        self._process.time_limit = seconds

    def close(self) -> None:
        """End the worker process (it also ends when the host is dropped, or with the application)."""
        self._process.close()

    # -------------------------------------------------------------- discovery

    def _broken(self, plugin_id: str, source: str, error: str, location: Path | None = None) -> None:
        _log.warning("plugin %s (%s): %s", plugin_id, source, error)
        self._register(PluginRecord(id=plugin_id, source=source, package="", location=location, error=error))

    def _add_package(self, package: str, source: str) -> None:
        try:
            location = _package_folder(package)
        except Exception as error:  # a package whose parent raises on import, say
            self._broken(package, source, f"package {package} cannot be found ({one_line(error)})")
            return
        record = PluginRecord(id=package, source=source, package=package, location=location)
        if location is None:
            record.error = f"package {package} not found"
        else:
            self._read_manifest(record, location / MANIFEST_NAME)
        self._register(record)

    def _add_folder(self, root: Path) -> None:
        """Each sub-folder of ``root`` with a manifest is a plugin; a folder that cannot be scanned,
        or a sub-folder that cannot be a plugin, is listed as broken with its reason."""
        source = f"folder {root}"
        try:
            if not root.exists():
                self._broken(str(root), source, f"{root}: the plugin folder does not exist", root)
                return
            if not root.is_dir():
                self._broken(str(root), source, f"{root} is a file, not a folder of plugins", root)
                return
            if (root / MANIFEST_NAME).is_file():
                self._broken(
                    root.name, source, f"{root} is itself a plugin: add the folder that holds it instead", root
                )
                return
            children = sorted(root.iterdir())
        except OSError as error:
            self._broken(str(root), source, f"{root}: cannot read the plugin folder ({error.strerror or error})", root)
            return
        for child in children:
            try:
                if (child / MANIFEST_NAME).is_file():
                    record = PluginRecord(id=child.name, source=source, package=child.name, location=child)
                    self._read_manifest(record, child / MANIFEST_NAME)
                    self._register(record)
                elif child.is_dir() and (child / "__init__.py").is_file():
                    self._broken(child.name, source, f"{child}: a Python package without a {MANIFEST_NAME}", child)
            except OSError as error:
                self._broken(child.name, source, f"{child}: cannot be read ({error.strerror or error})", child)

    def _read_manifest(self, record: PluginRecord, path: Path) -> None:
        try:
            record.manifest = read_manifest(path)
            record.id = record.manifest.id
        except OSError as error:
            record.error = f"{path}: cannot read the manifest ({error.strerror or error})"
        except PluginError as error:
            record.error = str(error)
        if record.error:
            _log.warning("plugin %s (%s): %s", record.id, record.source, record.error)

    def _register(self, record: PluginRecord) -> None:
        if any(r.id == record.id and r.manifest for r in self.records) and record.manifest:
            record.error = f"another plugin already has the id {record.id!r}"
            record.manifest = None
            record.id = f"{record.id} ({record.source})"
        record.enabled = record.id not in self._disabled
        self.records.append(record)

    # -------------------------------------------------------------- queries

    def plugin(self, plugin_id: str) -> PluginRecord:
        for record in self.records:
            if record.id == plugin_id:
                return record
        raise PluginError(f"no plugin {plugin_id!r}")

    def set_enabled(self, plugin_id: str, enabled: bool) -> None:
        record = self.plugin(plugin_id)
        record.enabled = enabled
        (self._disabled.discard if enabled else self._disabled.add)(plugin_id)

    @property
    def disabled(self) -> set[str]:
        return set(self._disabled)

    def actions(self) -> list[ActionInfo]:
        """Actions of the enabled plugins whose manifests are sound."""
        return [a for r in self.records if r.enabled and r.manifest for a in r.manifest.actions]

    def action(self, action_id: str) -> ActionInfo:
        for record in self.records:
            if record.manifest:
                for action in record.manifest.actions:
                    if action.id == action_id:
                        if not record.enabled:
                            raise PluginError(f"{action_id}: the plugin {record.id} is disabled")
                        return action
        raise PluginError(f"no action {action_id!r}; known: {', '.join(a.id for a in self.actions()) or 'none'}")

    def message_action(self) -> ActionInfo | None:
        """The action the chat's plain messages go to: that of the first enabled plugin declaring
        ``chat_messages`` (the built-in restore plugin comes first); None when every such plugin is
        disabled or broken."""
        for record in self.records:
            if record.enabled and record.manifest and record.manifest.chat_messages:
                return self.action(record.manifest.chat_messages)
        return None

    def commands(self) -> dict[str, ChatCommand]:
        return {c.name: c for r in self.records if r.enabled and r.manifest for c in r.manifest.commands}

    def parse_command(self, text: str) -> tuple[ActionInfo, dict[str, ParameterValue]] | None:
        """``/sharpen 0.5`` → (action, params); None when ``text`` is not a slash command."""
        if not text.startswith("/"):
            return None
        name, *values = text[1:].split()
        command = self.commands().get(name)
        if command is None:
            known = ", ".join(f"/{n}" for n in sorted(self.commands())) or "none"
            raise PluginError(f"unknown command /{name}; known: {known}")
        action = self.action(command.action)
        kinds = {p.name: p.kind for p in action.parameters}
        if command.arguments and kinds[command.arguments[-1]] == "text" and len(values) > len(command.arguments):
            # A trailing text parameter takes the rest of the message: "/restore remove the noise".
            keep = len(command.arguments) - 1
            values = [*values[:keep], " ".join(values[keep:])]
        if len(values) > len(command.arguments):
            raise PluginError(f"/{name} takes at most {len(command.arguments)} value(s)")
        return action, action.resolve_params(dict(zip(command.arguments, values, strict=False)))

    def list(self) -> list[dict[str, object]]:
        return [r.to_dict() for r in self.records]

    # -------------------------------------------------------------- running

    def resolve(self, action: ActionInfo) -> ActionFunction:
        """A built-in action's function, importing its code on first use. Third-party actions are
        never imported here: they run in the worker process (``execute``)."""
        record = self.plugin(action.plugin_id)
        if record.isolated:
            raise PluginError(f"{action.id}: a third-party action runs in its own process, through execute()")
        if record._module is None:
            code = self._code(record, action)
            try:
                record._module = import_module(code)
            except Exception as error:  # any import-time failure is the plugin's, not ours
                record.error = f"cannot import {code.label()}: {type(error).__name__}: {error}"
                raise PluginError(f"{record.id}: {record.error}") from error
        function = getattr(record._module, action.function, None)
        if not callable(function):
            record.error = (
                f"{action.id}: {record.manifest.module if record.manifest else ''} has no {action.function}()"
            )
            raise PluginError(record.error)
        return cast(ActionFunction, function)

    @staticmethod
    def _code(record: PluginRecord, action: ActionInfo) -> PluginCode:
        if record.manifest is None:
            raise PluginError(f"{record.id}: {record.error}")
        folder = record.location if record.source.startswith("folder") else None
        module = record.manifest.module or ("" if folder is not None else record.package)
        return PluginCode(record.id, module, action.function, None if folder is None else str(folder))

    def _call(
        self,
        action: ActionInfo,
        source: np.ndarray,
        mask: np.ndarray | None,
        values: Mapping[str, ParameterValue],
        context: HostContext,
    ) -> ActionOutput:
        """The action's output: in this process for a built-in action, else in the worker."""
        record = self.plugin(action.plugin_id)
        if not record.isolated:
            function = self.resolve(action)
            try:
                return function(source, mask, values, context)
            except (ActionCancelled, PluginError):
                raise
            except WeightsError as error:  # already one sentence for the person (a model gone from the store)
                raise PluginError(str(error)) from error
            except Exception as error:
                raise PluginError(f"{action.id} failed: {type(error).__name__}: {error}") from error
        code = self._code(record, action)
        try:
            return self._process.run(code, action.id, source, mask, values, context)
        except WorkerFailure as failure:
            if failure.kind == "import":
                record.error = str(failure)
                raise PluginError(f"{record.id}: {record.error}") from None
            record.error = f"{action.id}: {failure}"
            raise PluginError(record.error) from None

    def execute(
        self,
        action_id: str,
        given: ActionInput,
        params: Mapping[str, object] | None = None,
        services: HostServices | None = None,
    ) -> ActionOutcome:
        """Run an action: the one way every action runs, the built-in restore action included.

        With a selection and an action that declares ``selection_context``, the action gets the
        selected region with that much around it; the result is checked, enlarged alongside when
        the action enlarged the image, and limited to the selection. Raises PluginError (with the
        plugin named) for anything the plugin did wrong, NothingToDo when it had nothing to do, and
        lets ActionCancelled through. ``given`` is never modified.
        """
        action = self.action(action_id)
        values = action.resolve_params(params or {})
        started = time.perf_counter()
        image = frozen_array(given.image)  # a plugin writing into its input fails loudly, not silently
        height, width = image.shape[:2]
        whole = Bounds.of_image(height, width)
        selected = None if given.mask is None else Bounds.from_mask(given.mask, threshold=1e-3)
        if given.mask is not None and selected is None:
            raise PluginError("the selection is empty")
        region = whole
        if selected is not None and action.selection_context is not None:
            region = selected.expanded(action.selection_context, whole)
        source = image[region.slices]
        mask = None if given.mask is None else frozen_array(given.mask[region.slices])
        context = HostContext(services or NullServices(), region, given.preview_bounds)
        output = self._call(action, source, mask, values, context)
        result = _checked_output(action_id, output, source.shape)
        scale = result.pixels.shape[0] // source.shape[0]
        if scale != 1 and given.mask is not None:
            raise PluginError(
                f"{action_id} changes the photo's size, so it applies to the whole photo, not a selection"
            )
        original = source if scale == 1 else _enlarged(source, scale)
        alpha = None if given.alpha is None or scale == 1 else _enlarged(given.alpha, scale)
        # Outside the selection nothing changes: only the selected rectangle is kept.
        changed = region if selected is None else selected.intersect(region)
        inner = changed.relative_to(region).scaled(scale).slices
        return ActionOutcome(
            action_id=action_id,
            bounds=changed,
            original=original[inner],
            result=result.pixels[inner],
            mask=None if mask is None else mask[changed.relative_to(region).slices],
            strength=result.strength,
            scale=scale,
            alpha=alpha,
            seconds=result.seconds if result.seconds is not None else time.perf_counter() - started,
            tasks=result.tasks or (action_id,),
            plan=result.plan,
            model_id=result.model_id or action_id,
            device=result.device,
            notices=result.notices,
        )

    def run(
        self,
        action_id: str,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        params: Mapping[str, object] | None = None,
        context: HostServices | None = None,
    ) -> np.ndarray:
        """``execute`` for scripts and plugin tests: the whole output image, composited through
        ``mask`` at the strength the action chose. ``image`` is never modified."""
        outcome = self.execute(action_id, ActionInput(image, mask), params, context)
        return outcome.applied_to(np.asarray(image, dtype=np.float32))


def _checked_output(action_id: str, output: ActionOutput, shape: tuple[int, ...]) -> ActionResult:
    """The action's output, or PluginError saying what is wrong with it (the same checks for an
    action run here and one run in the worker)."""
    result = output if isinstance(output, ActionResult) else ActionResult(output)
    pixels = result.pixels
    if not isinstance(pixels, np.ndarray):
        raise PluginError(f"{action_id} returned {type(pixels).__name__}, not an image array")
    if pixels.dtype.kind not in "biuf":
        raise PluginError(f"{action_id} returned an array of {pixels.dtype}, not image pixels")
    height, width = shape[:2]
    scale = pixels.shape[0] // height if pixels.ndim == 3 and height else 0
    if pixels.ndim != 3 or not 1 <= scale <= MAX_SCALE or pixels.shape != (height * scale, width * scale, 3):
        raise PluginError(f"{action_id} returned an image of shape {pixels.shape}; expected {tuple(shape)}")
    with np.errstate(all="ignore"):
        checked = pixels.astype(np.float32, copy=False)
    if not np.isfinite(checked).all():
        raise PluginError(f"{action_id} returned NaN or infinite pixels")
    strength = result.strength
    if not isinstance(strength, (int, float, np.floating)) or isinstance(strength, bool) or not 0.0 <= strength <= 1.0:
        raise PluginError(f"{action_id} returned strength {strength!r}; it must be between 0 and 1")
    return replace(result, pixels=np.clip(checked, 0.0, 1.0), strength=float(strength))


def _enlarged(plane: np.ndarray, scale: int) -> np.ndarray:
    """An image or plane enlarged as the restoration network's upscale step enlarges (bicubic)."""
    from instructir_desktop.model.resampling import resize_image, resize_plane  # torch: only when enlarging

    height, width = plane.shape[0] * scale, plane.shape[1] * scale
    values = np.asarray(plane, dtype=np.float32)
    return resize_plane(values, height, width) if values.ndim == 2 else resize_image(values, height, width)


def _entry_points() -> list[metadata.EntryPoint]:
    try:
        return list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # a broken distribution's metadata must not stop the application
        return []


def _package_folder(package: str) -> Path | None:
    """Where a package lives, found without running its code (find_spec imports only parents)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
