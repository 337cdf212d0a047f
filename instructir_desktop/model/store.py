"""The model store: restoration networks the person added, and which one serves each task.

The store is a folder in the user's data folder (``$XDG_DATA_HOME/instructir-desktop/models`` on
Linux, the platform's equivalent elsewhere; ``INSTRUCTIR_DESKTOP_MODELS`` overrides it). Each added
file is read safely once, its tensors written as ``<content hash>.safetensors`` (so it is never
unpickled again), and described in ``manifest.json`` with its name, architecture, scale, tasks,
original file name, size and licence note. ``manifest.json`` also holds the default model per
task. The bundled all-in-one model is always listed (``source: bundled``) and serves every task
that has no other default; it cannot be removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from instructir_desktop.model.errors import WeightsError
from instructir_desktop.model.tasks import TASKS

if TYPE_CHECKING:  # torch comes with them: imported when a model is added or loaded, not by the editor's window
    from instructir_desktop.model.experts import ExpertNetwork
    from instructir_desktop.model.registry import ModelSpec

STORE_FOLDER_ENV = "INSTRUCTIR_DESKTOP_MODELS"
APP_NAME = "instructir-desktop"
MANIFEST = "manifest.json"
SOURCE_BUNDLED = "bundled"
SOURCE_USER = "user"
BUNDLED_MODEL_ID = "bundled"  # the id of the built-in model, here and in model.registry


def store_folder() -> Path:
    override = os.environ.get(STORE_FOLDER_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "models"


@dataclass(frozen=True)
class StoredModel:
    """One entry of ``models list``."""

    id: str
    name: str
    architecture: str
    tasks: tuple[str, ...]
    scale: int
    source: str  # "bundled" | "user"
    file: str = ""  # the stored safetensors, relative to the store ("" for the bundled model)
    source_file: str = ""
    size: int = 0  # bytes of the file as added
    licence: str = ""
    added: str = ""
    default_for: tuple[str, ...] = field(default=())

    @property
    def bundled(self) -> bool:
        return self.source == SOURCE_BUNDLED

    @property
    def label(self) -> str:
        """How a reply or a history line names it."""
        return self.name if self.bundled else f"{self.name} ({self.architecture}{self._scale_text})"

    @property
    def _scale_text(self) -> str:
        return f" x{self.scale}" if self.scale > 1 else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "architecture": self.architecture,
            "tasks": list(self.tasks),
            "scale": self.scale,
            "source": self.source,
            "default_for": list(self.default_for),
            "source_file": self.source_file,
            "size": self.size,
            "licence": self.licence,
        }


class ModelStore:
    """The store folder; every method reads the manifest afresh, so two processes (the editor and
    a command) see each other's changes."""

    def __init__(self, folder: str | os.PathLike[str] | None = None, bundled: ModelSpec | None = None) -> None:
        self.folder = Path(folder) if folder is not None else store_folder()
        self._bundled_spec = bundled

    # ------------------------------------------------------------------ reading

    def _manifest(self) -> dict[str, Any]:
        path = self.folder / MANIFEST
        if not path.is_file():
            return {"models": [], "defaults": {}}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise WeightsError(
                f"{path}: the model store's manifest cannot be read ({error}); fix or delete it"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise WeightsError(f"{path}: the model store's manifest is not what it should be; fix or delete it")
        data.setdefault("defaults", {})
        return data

    def _write(self, manifest: Mapping[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / MANIFEST
        temporary = path.with_name(MANIFEST + ".partial")
        temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)

    def bundled(self) -> StoredModel:
        name = self._bundled_spec.name if self._bundled_spec is not None else _bundled_name()
        return StoredModel(BUNDLED_MODEL_ID, name, "InstructIR", TASKS, 1, SOURCE_BUNDLED)

    def list(self) -> list[StoredModel]:
        """The bundled model first, then the added ones in the order they were added."""
        manifest = self._manifest()
        defaults = self._defaults(manifest)
        entries = [self.bundled(), *(_entry(record) for record in manifest["models"])]
        return [
            _with_defaults(entry, tuple(task for task in TASKS if defaults.get(task, BUNDLED_MODEL_ID) == entry.id))
            for entry in entries
        ]

    def _defaults(self, manifest: Mapping[str, Any]) -> dict[str, str]:
        known = {str(record.get("id")) for record in manifest["models"]}
        defaults = manifest.get("defaults", {})
        return {
            str(task): str(model)
            for task, model in (defaults.items() if isinstance(defaults, dict) else ())
            if str(model) in known
        }

    def find(self, reference: str) -> StoredModel:
        """A model by id, by a unique id prefix, or by name (case-insensitive)."""
        models = self.list()
        for model in models:
            if model.id == reference:
                return model
        lowered = reference.casefold()
        named = [model for model in models if model.name.casefold() == lowered]
        prefixed = [model for model in models if model.id.startswith(reference)]
        for candidates in (named, prefixed):
            if len(candidates) == 1:
                return candidates[0]
            if len(candidates) > 1:
                ids = ", ".join(model.id for model in candidates)
                raise KeyError(f"{reference!r} names several models ({ids}); use the id")
        raise KeyError(f"no model {reference!r} in the store; `instructir-desktop models list` shows them")

    def default_for(self, task: str) -> StoredModel:
        """The model that serves ``task`` (the bundled one when none was chosen)."""
        return next(model for model in self.list() if task in model.default_for)

    def path_of(self, model: StoredModel) -> Path:
        return self.folder / model.file

    def load(self, model: StoredModel) -> ExpertNetwork:
        if model.bundled:
            raise ValueError("the bundled model is loaded by the runtime, not the store")
        from instructir_desktop.model.experts import expert_from_state_dict
        from instructir_desktop.model.weights import load_state_dict

        path = self.path_of(model)
        state, _ = load_state_dict(path)
        return expert_from_state_dict(state, f"{model.name} ({path.name})")

    # ------------------------------------------------------------------ changing

    def add(
        self,
        path: str | os.PathLike[str],
        *,
        tasks: Sequence[str] = (),
        name: str | None = None,
        make_default: bool = False,
        licence: str = "",
    ) -> StoredModel:
        """Read ``path`` safely, detect its network, copy its tensors in under the file's hash.

        WeightsError for an unsafe, damaged or unknown file (nothing is added); ValueError when the
        task cannot be inferred or does not fit the network."""
        from instructir_desktop.model.experts import check_tasks, expert_from_state_dict
        from instructir_desktop.model.weights import load_state_dict, save_state_dict

        source = Path(path)
        if source.is_dir():
            raise WeightsError(f"{source}: is a folder; give the weights file in it")
        if not source.is_file():
            raise WeightsError(f"{source}: no such file")
        state, _ = load_state_dict(source)  # refuses pickles that would run code
        expert = expert_from_state_dict(state, source.name)
        chosen = check_tasks(list(tasks)) if tasks else expert.tasks
        if not chosen:
            raise ValueError(
                f"{source.name}: a {expert.architecture} network can be trained for several tasks; "
                f"say which with --task ({', '.join(task for task in TASKS if task != 'upscale')})"
            )
        if expert.scale > 1 and chosen != ("upscale",):
            raise ValueError(f"{source.name}: a x{expert.scale} network changes the size, so it can only serve upscale")
        if expert.scale == 1 and "upscale" in chosen:
            raise ValueError(f"{source.name}: a network that keeps the size cannot serve upscale")
        with source.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        manifest = self._manifest()
        for record in manifest["models"]:
            if record.get("sha256") == digest:
                existing = _entry(record)
                raise FileExistsError(f"{source.name} is already in the store as {existing.id} ({existing.name})")
        model_id = f"{expert.architecture.lower()}-{digest[:8]}"
        file_name = f"{digest}.safetensors"
        self.folder.mkdir(parents=True, exist_ok=True)
        save_state_dict(self.folder / file_name, {k: v.clone() for k, v in state.items()}, dtype=None)
        record = {
            "id": model_id,
            "name": name or source.stem,
            "architecture": expert.architecture,
            "tasks": list(chosen),
            "scale": expert.scale,
            "file": file_name,
            "sha256": digest,
            "source_file": source.name,
            "size": source.stat().st_size,
            "licence": licence,
            "added": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        manifest["models"].append(record)
        if make_default:
            for task in chosen:
                manifest["defaults"][task] = model_id
        self._write(manifest)
        return self.find(model_id)

    def remove(self, reference: str) -> StoredModel:
        model = self.find(reference)
        if model.bundled:
            raise ValueError("the bundled model cannot be removed")
        manifest = self._manifest()
        manifest["models"] = [record for record in manifest["models"] if record.get("id") != model.id]
        manifest["defaults"] = {task: ref for task, ref in manifest["defaults"].items() if ref != model.id}
        self._write(manifest)
        (self.folder / model.file).unlink(missing_ok=True)
        return model

    def set_default(self, task: str, reference: str) -> StoredModel:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
        model = self.find(reference)
        if task not in model.tasks:
            raise ValueError(f"{model.name} does not do {task} (it does {', '.join(model.tasks)})")
        manifest = self._manifest()
        if model.bundled:
            manifest["defaults"].pop(task, None)
        else:
            manifest["defaults"][task] = model.id
        self._write(manifest)
        return self.find(model.id)


def _bundled_name() -> str:
    """The bundled model's name from its model.json, read without torch (the editor's window lists
    the models before any model is loaded)."""
    from importlib import resources

    description = Path(str(resources.files("instructir_desktop.model") / "bundled" / "model.json"))
    try:
        name = json.loads(description.read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else "InstructIR (bundled)"


def _entry(record: Mapping[str, Any]) -> StoredModel:
    try:
        return StoredModel(
            id=str(record["id"]),
            name=str(record.get("name", record["id"])),
            architecture=str(record.get("architecture", "")),
            tasks=tuple(str(task) for task in record.get("tasks", ())),
            scale=int(record.get("scale", 1)),
            source=SOURCE_USER,
            file=str(record.get("file", "")),
            source_file=str(record.get("source_file", "")),
            size=int(record.get("size", 0)),
            licence=str(record.get("licence", "")),
            added=str(record.get("added", "")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise WeightsError(f"the model store's manifest has a damaged entry ({error}); fix or delete it") from None


def _with_defaults(entry: StoredModel, default_for: Iterable[str]) -> StoredModel:
    from dataclasses import replace

    return replace(entry, default_for=tuple(default_for))
