"""Reading a plugin's manifest (``plugin.toml``) into typed data, without importing its code."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from instructir_desktop.plugins.api import API_VERSION, ActionInfo, ChatCommand, Manifest, Parameter, PluginError


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
        selection_context=_margin(table),
    )


def _margin(table: Mapping[str, Any]) -> int | None:
    value = table.get("selection_context")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PluginError(f"selection_context must be a whole number of pixels >= 0, got {value!r}")
    return value
