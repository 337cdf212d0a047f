"""Reading a plugin's manifest (``plugin.toml``) into typed data, without importing its code.

Every value is checked for its type before it is used, so any file (not TOML, not UTF-8, a number
where a list belongs, ``api_version = inf``) ends in one PluginError naming the file and what is
wrong, never in another exception: discovery lists the plugin as broken and goes on.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from instructir_desktop.core.logs import one_line
from instructir_desktop.plugins.api import API_VERSION, ActionInfo, ChatCommand, Manifest, Parameter, PluginError

# No real manifest comes near this; a larger file is not read at all.
MAX_MANIFEST_BYTES = 1_000_000


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path``; PluginError (naming ``path``) for anything unreadable, OSError aside."""
    with path.open("rb") as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    return parse_manifest_bytes(data, str(path))


def parse_manifest_bytes(data: bytes, where: str) -> Manifest:
    """A manifest from a file's bytes: UTF-8 TOML of at most ``MAX_MANIFEST_BYTES``."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise PluginError(f"{where}: the manifest is larger than {MAX_MANIFEST_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PluginError(f"{where}: the manifest is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    return parse_manifest(text, where)


def parse_manifest(text: str, where: str) -> Manifest:
    """A manifest from TOML text; every problem is a PluginError naming ``where``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PluginError(f"{where}: not valid TOML ({one_line(error)})") from None
    except (ValueError, RecursionError) as error:  # lone surrogates, absurd nesting
        raise PluginError(f"{where}: not valid TOML ({one_line(error)})") from None
    try:
        return _manifest(raw)
    except PluginError as error:
        raise PluginError(f"{where}: {one_line(error)}") from None
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError) as error:
        raise PluginError(f"{where}: malformed manifest ({one_line(error)})") from None


def _manifest(raw: Mapping[str, Any]) -> Manifest:
    plugin_id = _text(raw, "id")
    api_version = _api_version(raw.get("api_version", 1))
    actions = tuple(_action(item, plugin_id) for item in _tables(raw, "actions"))
    if not actions:
        raise PluginError("declares no actions")
    ids = [a.id for a in actions]
    if len(set(ids)) != len(ids):
        raise PluginError("two actions share an id")
    commands = tuple(_command(item, plugin_id) for item in _tables(raw, "commands"))
    for command in commands:
        action = next((a for a in actions if a.id == command.action), None)
        if action is None:
            raise PluginError(f"command /{command.name} names unknown action {command.action}")
        names = {p.name for p in action.parameters}
        if not set(command.arguments) <= names:
            raise PluginError(f"command /{command.name} binds parameters the action does not have")
    chat_messages = _qualify(_optional_text(raw, "chat_messages"), plugin_id) if raw.get("chat_messages") else ""
    if chat_messages:
        action = next((a for a in actions if a.id == chat_messages), None)
        if action is None:
            raise PluginError(f"chat_messages names unknown action {chat_messages}")
        if not any(p.kind == "text" for p in action.parameters):
            raise PluginError(f"chat_messages names {chat_messages}, which has no text parameter for the message")
    return Manifest(
        id=plugin_id,
        name=_optional_text(raw, "name") or plugin_id,
        version=_optional_text(raw, "version", number_allowed=True) or "0",
        api_version=api_version,
        module=_optional_text(raw, "module"),
        actions=actions,
        commands=commands,
        description=_optional_text(raw, "description"),
        author=_optional_text(raw, "author"),
        extra={k: v for k, v in raw.items() if k not in _KNOWN_KEYS},
        chat_messages=chat_messages,
    )


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


def _api_version(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PluginError(f"api_version must be a whole number such as {API_VERSION}, got {value!r}")
    if value > API_VERSION:
        raise PluginError(f"written for plugin API {value}; this application has API {API_VERSION}")
    return value


def _tables(table: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """``[[key]]`` tables: a list of tables, or nothing."""
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise PluginError(f"{key!r} must be a list of tables ([[{key}]])")
    return value


def _text(table: Mapping[str, Any], key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PluginError(f"missing or empty {key!r}")
    return value.strip()


def _optional_text(table: Mapping[str, Any], key: str, *, number_allowed: bool = False) -> str:
    """A text field that may be left out ("" then); a version may be written as a bare number."""
    value = table.get(key, "")
    if number_allowed and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(value)
    if not isinstance(value, str):
        raise PluginError(f"{key!r} must be text, got {type(value).__name__}")
    return value


def _texts(table: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PluginError(f"{key!r} must be a list of text")
    return tuple(value)


def _number(table: Mapping[str, Any], key: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise PluginError(f"{key!r} must be a number, got {value!r}")
    return value


def _qualify(action_id: str, plugin_id: str) -> str:
    """Action ids are global: ``plugin.action``; a manifest may write the short form."""
    return action_id if "." in action_id else f"{plugin_id}.{action_id}"


def _command(table: Mapping[str, Any], plugin_id: str) -> ChatCommand:
    return ChatCommand(
        name=_text(table, "name").lstrip("/"),
        action=_qualify(_text(table, "action"), plugin_id),
        arguments=_texts(table, "arguments"),
        help=_optional_text(table, "help"),
    )


def _parameter(table: Mapping[str, Any]) -> Parameter:
    minimum, maximum = _number(table, "min"), _number(table, "max")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise PluginError(f"parameter {table.get('name')!r}: min is above max")
    return Parameter(
        name=_text(table, "name"),
        kind=_optional_text(table, "kind") or "float",
        default=table.get("default"),
        minimum=minimum,
        maximum=maximum,
        choices=_texts(table, "choices"),
        title=_optional_text(table, "title"),
        help=_optional_text(table, "help"),
    )


def _action(table: Mapping[str, Any], plugin_id: str) -> ActionInfo:
    action_id = _qualify(_text(table, "id"), plugin_id)
    parameters = tuple(_parameter(p) for p in _tables(table, "parameters"))
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise PluginError(f"action {action_id}: two parameters share a name")
    return ActionInfo(
        id=action_id,
        title=_optional_text(table, "title") or action_id,
        function=_text(table, "function"),
        parameters=parameters,
        description=_optional_text(table, "description"),
        plugin_id=plugin_id,
        selection_context=_margin(table),
    )


def _margin(table: Mapping[str, Any]) -> int | None:
    value = table.get("selection_context")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PluginError(f"selection_context must be a whole number of pixels >= 0, got {value!r}")
    return value
