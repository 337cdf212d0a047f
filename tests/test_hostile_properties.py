"""Property-based: any plugin manifest and any damaged project end in one sentence (PluginError,
ProjectError) naming the file, or in something sound; never another exception, never a picture
larger than the pixel limit, never pixels outside [0, 1]. 2,000 examples each, derandomized so a
failure is the same on every machine."""

from __future__ import annotations

import copy
import io
import json
import math
import tempfile
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_history_projects import build_project
from test_plugins import GOOD_MANIFEST

from instructir_desktop.history import HistoryError, ProjectError, read_project
from instructir_desktop.plugins.api import API_VERSION, PARAMETER_KINDS, Manifest, PluginError
from instructir_desktop.plugins.manifest import parse_manifest_bytes

EXAMPLES = settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- plugin manifests

# TOML scalars, the awkward ones included (no lone surrogates: a TOML file is UTF-8).
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6)
scalars = st.one_of(
    texts,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, API_VERSION + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the right kind, sometimes anything at all: deep paths get explored too."""
    return st.integers(0, 9).flatmap(lambda roll: values if roll == 0 else valid)


numbers = st.one_of(st.integers(-10, 10), st.floats(-10, 10), st.floats(allow_nan=True, allow_infinity=True))
parameter_tables = st.fixed_dictionaries(
    {"name": field(st.sampled_from(["amount", "radius", "x"])), "kind": field(st.sampled_from(PARAMETER_KINDS))},
    optional={
        "default": st.one_of(numbers, st.booleans(), st.sampled_from(["a", "b", "denoise", "yes", ""]), values),
        "min": field(numbers),
        "max": field(numbers),
        "choices": field(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)),
        "title": field(texts),
    },
)
action_tables = st.fixed_dictionaries(
    {"id": field(st.sampled_from(["go", "run", "demo.go"])), "function": field(st.just("go"))},
    optional={
        "title": field(texts),
        "parameters": field(st.lists(parameter_tables, max_size=3)),
        "selection_context": field(st.integers(-2, 100)),
    },
)
command_tables = st.fixed_dictionaries(
    {"name": field(st.sampled_from(["go", "/run"])), "action": field(st.sampled_from(["go", "run", "demo.go"]))},
    optional={"arguments": field(st.lists(st.sampled_from(["amount", "x"]), max_size=2)), "help": field(texts)},
)
documents = st.fixed_dictionaries(
    {
        "id": field(st.sampled_from(["demo", "tools"])),
        "actions": field(st.lists(action_tables, min_size=1, max_size=3)),
    },
    optional={
        "api_version": field(st.integers(1, API_VERSION)),
        "name": field(texts),
        "version": field(st.sampled_from(["1.0", "2"])),
        "module": field(st.just("demo.code")),
        "commands": field(st.lists(command_tables, max_size=2)),
        "chat_messages": field(st.sampled_from(["go", "run"])),
    },
)


def toml_value(value: Any) -> str:
    """A value as TOML (a tiny writer: inline tables and arrays are enough for manifests)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(toml_value(item) for item in value) + "]"


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes, which TOML shares, for the characters TOML needs escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_document(document: dict[str, Any]) -> bytes:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in document.items()).encode()


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    data = bytearray(GOOD_MANIFEST.replace("api_version = 1", f"api_version = {API_VERSION}").encode())
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "delete"]))
        if kind == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=6))
        else:
            del data[position : position + draw(st.integers(1, 12))]
    return bytes(data)


manifests = st.one_of(documents.map(toml_document), damaged_bytes())


def assert_sound(manifest: Manifest) -> None:
    """What the host and the UI rely on in a manifest that was accepted."""
    assert isinstance(manifest.id, str) and manifest.id.strip() == manifest.id and manifest.id
    assert isinstance(manifest.api_version, int) and 1 <= manifest.api_version <= API_VERSION
    assert manifest.actions and len({a.id for a in manifest.actions}) == len(manifest.actions)
    for action in manifest.actions:
        assert action.plugin_id == manifest.id and "." in action.id and isinstance(action.function, str)
        assert action.selection_context is None or action.selection_context >= 0
        for parameter in action.parameters:
            # The default is a value the parameter itself accepts, and stays the same when checked.
            assert parameter.coerce(parameter.default) == parameter.default
        assert action.resolve_params({}) == {p.name: p.default for p in action.parameters}
    for command in manifest.commands:
        action = next(a for a in manifest.actions if a.id == command.action)
        assert set(command.arguments) <= {p.name for p in action.parameters}
    if manifest.chat_messages:
        assert any(a.id == manifest.chat_messages for a in manifest.actions)
    assert all(isinstance(text, str) for text in (manifest.name, manifest.version, manifest.module))


@pytest.mark.slow
@EXAMPLES
@given(manifests)
def test_any_manifest_is_one_sentence_or_sound(data: bytes) -> None:
    where = "fuzz/plugin.toml"
    try:
        manifest = parse_manifest_bytes(data, where)
    except PluginError as error:
        message = str(error)
        assert message.startswith(f"{where}: ") and "\n" not in message and len(message) < 500
        event("refused: " + message.removeprefix(f"{where}: ").split(" (")[0].split(",")[0][:40])
        return
    event("accepted")
    assert_sound(manifest)


# ----------------------------------------------------------------------------- projects

LIMIT = 10_000  # pixels: the base project's 48 × 64 fits, anything much larger does not


@cache
def base_project() -> dict[str, bytes]:
    path, _ = build_project(Path(tempfile.mkdtemp()))
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def sites(tree: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON tree, in a stable order."""
    items = list(tree.items()) if isinstance(tree, dict) else list(enumerate(tree)) if isinstance(tree, list) else []
    for key, value in items:
        found.append((tree, key))
        sites(value, found)
    return found


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2, 3, 47, 48, 63, 64, 65, 1 << 17, (1 << 17) + 1, 2**31, 2**63, 10**30]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["u8", "u16", "f32", "pixels", "layers", "normal", "blobs/000001.bin", "../x", ""]),
    st.text(max_size=5),
)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2)
)


@st.composite
def damaged_projects(draw: st.DrawFn) -> Archive:
    entries = dict(base_project())
    if draw(st.integers(0, 9)) < 7:  # the description lies
        manifest = copy.deepcopy(json.loads(entries["manifest.json"]))
        for _ in range(draw(st.integers(1, 3))):
            places = sites(manifest, [])
            container, key = draw(st.sampled_from(places))
            if isinstance(container, dict) and draw(st.booleans()) and draw(st.booleans()):
                del container[key]
            else:
                container[key] = draw(json_values)
        entries["manifest.json"] = json.dumps(manifest).encode()
    else:  # the bytes are damaged
        name = draw(st.sampled_from(sorted(entries)))
        data = bytearray(entries[name])
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if data and draw(st.booleans()):
            data[position] ^= draw(st.integers(1, 255))
        else:
            del data[position:]
        entries[name] = bytes(data)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    whole = bytearray(buffer.getvalue())
    if draw(st.integers(0, 9)) == 0:  # and sometimes the archive itself
        position = draw(st.integers(0, len(whole) - 1))
        whole[position] ^= draw(st.integers(1, 255))
    return Archive(whole)


class Archive(bytes):
    """A project's bytes, shown by size: a failing example names its manifest change, not 200 kB."""

    def __repr__(self) -> str:
        return f"<project archive, {len(self)} bytes>"


def assert_sound_document(document: Any) -> None:
    assert document.height * document.width <= LIMIT
    for layer in document.layers:
        assert layer.pixels.shape == (document.height, document.width, 3) and layer.pixels.dtype == np.float32
        assert np.isfinite(layer.pixels).all() and layer.pixels.min() >= 0 and layer.pixels.max() <= 1
        assert 0.0 <= layer.opacity <= 1.0


@pytest.mark.slow
@EXAMPLES
@given(damaged_projects())
def test_any_damaged_project_is_one_sentence_or_sound(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.irproject"
        path.write_bytes(data)
        try:
            contents = read_project(path, max_pixels=LIMIT)
        except ProjectError as error:
            message = str(error)
            assert "fuzzed.irproject" in message and "\n" not in message
            event("refused")
            return
    event("accepted")
    history = contents.history
    assert_sound_document(history.document)
    # Every state the history holds can be reached, or says why not.
    for index in [*range(history.index, -1, -1), *range(len(history) + 1)]:
        try:
            history.set_index(index)
        except HistoryError:
            continue
        assert_sound_document(history.document)
