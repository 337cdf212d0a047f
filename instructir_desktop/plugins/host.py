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
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from instructir_desktop.core.compositing import composite
from instructir_desktop.plugins.api import (
    API_VERSION,
    ENTRY_POINT_GROUP,
    MANIFEST_NAME,
    ActionCancelled,
    ActionContext,
    ActionFunction,
    ActionInfo,
    ChatCommand,
    Manifest,
    NullContext,
    Parameter,
    PluginError,
)

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

    def to_dict(self) -> dict[str, Any]:
        actions = [a.id for a in self.manifest.actions] if self.manifest else []
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "actions": actions,
            "enabled": self.enabled,
            "error": self.error,
        }


# ----------------------------------------------------------------------------- manifests


def parse_manifest(text: str, where: str) -> Manifest:
    """A manifest from TOML text; every problem is a PluginError naming ``where``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PluginError(f"{where}: not valid TOML ({error})") from error
    try:
        plugin_id = _text(raw, "id")
        api_version = int(raw.get("api_version", 1))
        if api_version > API_VERSION:
            raise PluginError(f"written for plugin API {api_version}; this application has API {API_VERSION}")
        actions = tuple(_action(item, plugin_id) for item in raw.get("actions", []))
        if not actions:
            raise PluginError("declares no actions")
        ids = [a.id for a in actions]
        if len(set(ids)) != len(ids):
            raise PluginError("two actions share an id")
        commands = tuple(
            ChatCommand(
                name=_text(item, "name").lstrip("/"),
                action=_qualify(_text(item, "action"), plugin_id),
                arguments=tuple(item.get("arguments", ())),
                help=str(item.get("help", "")),
            )
            for item in raw.get("commands", [])
        )
        for command in commands:
            action = next((a for a in actions if a.id == command.action), None)
            if action is None:
                raise PluginError(f"command /{command.name} names unknown action {command.action}")
            names = {p.name for p in action.parameters}
            if not set(command.arguments) <= names:
                raise PluginError(f"command /{command.name} binds parameters the action does not have")
        chat_messages = _qualify(str(raw["chat_messages"]), plugin_id) if raw.get("chat_messages") else ""
        if chat_messages:
            action = next((a for a in actions if a.id == chat_messages), None)
            if action is None:
                raise PluginError(f"chat_messages names unknown action {chat_messages}")
            if not any(p.kind == "text" for p in action.parameters):
                raise PluginError(f"chat_messages names {chat_messages}, which has no text parameter for the message")
        return Manifest(
            id=plugin_id,
            name=str(raw.get("name", plugin_id)),
            version=str(raw.get("version", "0")),
            api_version=api_version,
            module=str(raw.get("module", "")),
            actions=actions,
            commands=commands,
            description=str(raw.get("description", "")),
            author=str(raw.get("author", "")),
            extra={k: v for k, v in raw.items() if k not in _KNOWN_KEYS},
            chat_messages=chat_messages,
        )
    except PluginError as error:
        raise PluginError(f"{where}: {error}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise PluginError(f"{where}: malformed manifest ({error})") from None


_KNOWN_KEYS = {
    "id",
    "name",
    "version",
    "api_version",
    "module",
    "actions",
    "commands",
    "description",
    "author",
    "chat_messages",
}


def _text(table: Mapping[str, Any], key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PluginError(f"missing or empty {key!r}")
    return value.strip()


def _qualify(action_id: str, plugin_id: str) -> str:
    """Action ids are global: ``plugin.action``; a manifest may write the short form."""
    return action_id if "." in action_id else f"{plugin_id}.{action_id}"


def _action(table: Mapping[str, Any], plugin_id: str) -> ActionInfo:
    action_id = _qualify(_text(table, "id"), plugin_id)
    parameters = tuple(
        Parameter(
            name=_text(p, "name"),
            kind=str(p.get("kind", "float")),
            default=p.get("default"),
            minimum=p.get("min"),
            maximum=p.get("max"),
            choices=tuple(p.get("choices", ())),
            title=str(p.get("title", "")),
            help=str(p.get("help", "")),
        )
        for p in table.get("parameters", [])
    )
    return ActionInfo(
        id=action_id,
        title=str(table.get("title", action_id)),
        function=_text(table, "function"),
        parameters=parameters,
        description=str(table.get("description", "")),
        plugin_id=plugin_id,
    )


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

    def parse_command(self, text: str) -> tuple[ActionInfo, dict[str, Any]] | None:
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

    def list(self) -> list[dict[str, Any]]:
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
        return function

    def run(
        self,
        action_id: str,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        params: Mapping[str, Any] | None = None,
        context: ActionContext | None = None,
    ) -> np.ndarray:
        """Run an action on a copy of ``image``; the result is composited through ``mask``.

        Raises PluginError (with the plugin named) for anything the plugin did wrong, and
        lets ActionCancelled through. ``image`` is never modified.
        """
        action = self.action(action_id)
        values = action.resolve_params(params or {})
        function = self.resolve(action)
        source = np.array(image, dtype=np.float32, copy=True)
        source.setflags(write=False)  # a plugin writing into its input fails loudly, not silently
        try:
            output = function(source, mask, values, context or NullContext())
        except ActionCancelled:
            raise
        except Exception as error:
            raise PluginError(f"{action_id} failed: {type(error).__name__}: {error}") from error
        result = _checked_output(action_id, output, image.shape)
        return result if mask is None else composite(np.asarray(image, dtype=np.float32), result, mask)


def _checked_output(action_id: str, output: object, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(output, np.ndarray):
        raise PluginError(f"{action_id} returned {type(output).__name__}, not an image array")
    if output.shape != shape:
        raise PluginError(f"{action_id} returned an image of shape {output.shape}; expected {shape}")
    result = output.astype(np.float32, copy=False)
    if not np.isfinite(result).all():
        raise PluginError(f"{action_id} returned NaN or infinite pixels")
    return np.clip(result, 0.0, 1.0)


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
