"""Finding plugins, reading their manifests without importing them, and running their actions safely.

Sources, in order: the plugins built into the application, installed packages that declare an
entry point in the ``instructir_desktop.plugins`` group (its value is the plugin's top-level
package), and the user's plugin folders (each sub-folder a package with a ``plugin.toml``).

A broken plugin (unreadable manifest, import error, exception while running, wrong output) is
recorded with its error and listed; it never stops the host or changes the image it was given.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import cast

import numpy as np

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference.requests import frozen_array
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
from instructir_desktop.plugins.manifest import parse_manifest
from instructir_desktop.plugins.outcome import ActionInput, ActionOutcome, HostContext

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
    ) -> None:
        self.records: list[PluginRecord] = []
        self._disabled = set(disabled)
        for package in builtin_packages:
            self._add_package(package, "builtin")
        if use_entry_points:
            for entry_point in _entry_points():
                self._add_package(entry_point.value.split(":")[0].strip(), f"entry point {entry_point.name}")
        for folder in user_folders:
            self._add_folder(Path(folder))

    # -------------------------------------------------------------- discovery

    def _add_package(self, package: str, source: str) -> None:
        location = _package_folder(package)
        record = PluginRecord(id=package, source=source, package=package, location=location)
        if location is None:
            record.error = f"package {package} not found"
        else:
            self._read_manifest(record, location / MANIFEST_NAME)
        self._register(record)

    def _add_folder(self, root: Path) -> None:
        if not root.is_dir():
            return
        for child in sorted(root.iterdir()):
            if (child / MANIFEST_NAME).is_file():
                record = PluginRecord(id=child.name, source=f"folder {root}", package=child.name, location=child)
                self._read_manifest(record, child / MANIFEST_NAME)
                self._register(record)

    def _read_manifest(self, record: PluginRecord, path: Path) -> None:
        try:
            record.manifest = parse_manifest(path.read_text(encoding="utf-8"), str(path))
            record.id = record.manifest.id
        except OSError as error:
            record.error = f"{path}: cannot read the manifest ({error.strerror or error})"
        except PluginError as error:
            record.error = str(error)

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
        """The action's function, importing the plugin's code on first use."""
        record = self.plugin(action.plugin_id)
        if record._module is None:
            if record.manifest is None:
                raise PluginError(f"{record.id}: {record.error}")
            module_name = record.manifest.module or record.package
            try:
                if record.source.startswith("folder") and record.location is not None:
                    record._module = _import_from_folder(record.location, module_name)
                else:
                    record._module = importlib.import_module(module_name)
            except Exception as error:  # any import-time failure is the plugin's, not ours
                record.error = f"cannot import {module_name}: {type(error).__name__}: {error}"
                raise PluginError(f"{record.id}: {record.error}") from error
        function = getattr(record._module, action.function, None)
        if not callable(function):
            record.error = (
                f"{action.id}: {record.manifest.module if record.manifest else ''} has no {action.function}()"
            )
            raise PluginError(record.error)
        return cast(ActionFunction, function)

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
        function = self.resolve(action)
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
        try:
            output = function(source, mask, values, context)
        except (ActionCancelled, PluginError):
            raise
        except Exception as error:
            raise PluginError(f"{action_id} failed: {type(error).__name__}: {error}") from error
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
    result = output if isinstance(output, ActionResult) else ActionResult(output)
    pixels = result.pixels
    if not isinstance(pixels, np.ndarray):
        raise PluginError(f"{action_id} returned {type(pixels).__name__}, not an image array")
    height, width = shape[:2]
    scale = pixels.shape[0] // height if pixels.ndim == 3 and height else 0
    if pixels.ndim != 3 or scale < 1 or pixels.shape != (height * scale, width * scale, 3):
        raise PluginError(f"{action_id} returned an image of shape {pixels.shape}; expected {tuple(shape)}")
    checked = pixels.astype(np.float32, copy=False)
    if not np.isfinite(checked).all():
        raise PluginError(f"{action_id} returned NaN or infinite pixels")
    if not 0.0 <= result.strength <= 1.0:
        raise PluginError(f"{action_id} returned strength {result.strength}; it must be between 0 and 1")
    return replace(result, pixels=np.clip(checked, 0.0, 1.0))


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


def _import_from_folder(folder: Path, module_name: str) -> ModuleType:
    """Import a user-folder plugin under a private name so two folders cannot collide."""
    # Keyed by the full path: two user folders may both hold a plugin called "tools".
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    private = f"_instructir_user_plugin_{folder.name}_{digest}"
    if private in sys.modules:
        package = sys.modules[private]
    else:
        spec = importlib.util.spec_from_file_location(
            private, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"{folder} is not a Python package (no __init__.py)")
        package = importlib.util.module_from_spec(spec)
        sys.modules[private] = package
        try:
            spec.loader.exec_module(package)
        except BaseException:
            del sys.modules[private]
            raise
    if module_name in ("", folder.name):
        return package
    relative = module_name.split(".", 1)[1] if module_name.startswith(folder.name + ".") else module_name
    return importlib.import_module(f"{private}.{relative}")
