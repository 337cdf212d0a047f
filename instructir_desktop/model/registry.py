"""Where models come from: the one bundled in the package, folders the user chose, and the
published InstructIR checkpoint pair for users who own those files.

A model folder holds ``image.safetensors`` (the image network), ``text_head.safetensors`` and
``model.json`` (id, name, network shape, class order, text encoder), and optionally
``intent_lexical.safetensors`` (a character n-gram classifier whose probabilities are averaged with
the head's for the class decision). A folder with the published
``im_instructir-7d.pt`` / ``lm_instructir-7d.pt`` pair is recognised too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from instructir_desktop.model.lexical import LexicalClassifier, load_lexical_classifier
from instructir_desktop.model.network import InstructIRNet, NetworkConfig, detect_config
from instructir_desktop.model.store import BUNDLED_MODEL_ID
from instructir_desktop.model.tasks import CLASS_NAMES, TASKS
from instructir_desktop.model.text import TextHead
from instructir_desktop.model.weights import WeightsError, load_state_dict, save_state_dict

IMAGE_FILE = "image.safetensors"
HEAD_FILE = "text_head.safetensors"
LEXICAL_FILE = "intent_lexical.safetensors"
MANIFEST_FILE = "model.json"
PUBLISHED_IMAGE_FILE = "im_instructir-7d.pt"
PUBLISHED_HEAD_FILE = "lm_instructir-7d.pt"

NO_WEIGHTS_HELP = (
    "no restoration weights are installed: pass --weights FILE (and --text-head FILE) or --model FOLDER; "
    "`instructir-desktop train --config FILE` trains a model"
)


@dataclass(frozen=True)
class ModelSpec:
    """A model that can be loaded: where its files are and what it claims to be."""

    id: str
    name: str
    image_weights: Path
    text_head: Path | None
    source: str  # "bundled" | "folder" | "published" | "files"
    encoder: str | None = None  # sentence-transformers folder; None = packaged default
    classes: tuple[str, ...] = CLASS_NAMES
    info: Mapping[str, Any] = field(default_factory=dict)
    lexical: Path | None = None  # the n-gram half of the class decision, when the folder has one


# A task whose measured gain is below this is one the model does little for: the chat says so.
WEAK_GAIN_DB = 0.5


def weak_tasks(spec: ModelSpec) -> dict[str, float]:
    """Tasks the model's own evaluation (model.json ``evaluation.gain_db``, the worst setting of
    each task) shows it barely improves, with their gains in dB. Empty when nothing was measured."""
    evaluation = spec.info.get("evaluation")
    gains = evaluation.get("gain_db") if isinstance(evaluation, Mapping) else None
    if not isinstance(gains, Mapping):
        return {}
    return {
        str(task): float(gain)
        for task, gain in gains.items()
        if isinstance(gain, int | float) and float(gain) < WEAK_GAIN_DB
    }


def record_evaluation(folder: str | os.PathLike[str], gain_db: Mapping[str, float], how: str) -> Path:
    """Store measured per-task gains in a model folder's model.json (``weak_tasks`` reads them),
    merged with those already there; ``how`` says how they were measured."""
    path = Path(folder) / MANIFEST_FILE
    manifest = read_model_description(path) if path.is_file() else {}
    evaluation = dict(manifest["evaluation"]) if isinstance(manifest.get("evaluation"), dict) else {}
    earlier = evaluation.get("gain_db")
    evaluation["gain_db"] = {**(earlier if isinstance(earlier, dict) else {}), **gain_db}
    evaluation["measured_with"] = how
    manifest["evaluation"] = evaluation
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


@dataclass
class LoadedModel:
    spec: ModelSpec
    network: InstructIRNet
    head: TextHead
    classes: tuple[str, ...]
    lexical: LexicalClassifier | None = None

    @property
    def config(self) -> NetworkConfig:
        return self.network.config


def bundled_model_folder() -> Path:
    return Path(str(resources.files("instructir_desktop.model") / "bundled"))


def spec_from_folder(folder: str | os.PathLike[str], source: str = "folder") -> ModelSpec:
    root = Path(folder)
    if not root.is_dir():
        raise WeightsError(f"{root}: model folder not found")
    if (root / PUBLISHED_IMAGE_FILE).is_file():
        head = root / PUBLISHED_HEAD_FILE
        return ModelSpec(
            id=f"published:{root}",
            name="InstructIR-7D (published)",
            image_weights=root / PUBLISHED_IMAGE_FILE,
            text_head=head if head.is_file() else None,
            source="published",
            # The published head was trained on BGE-micro-v2 vectors; the user sets that folder.
            encoder=None,
            classes=TASKS,
        )
    manifest_path = root / MANIFEST_FILE
    if not (root / IMAGE_FILE).is_file():
        raise WeightsError(f"{root}: no {IMAGE_FILE} or {PUBLISHED_IMAGE_FILE} in this folder")
    manifest = read_model_description(manifest_path) if manifest_path.is_file() else {}
    head_path = root / HEAD_FILE
    encoder = manifest.get("encoder")
    return ModelSpec(
        id=str(manifest.get("id", root.name)) if source != "bundled" else BUNDLED_MODEL_ID,
        name=str(manifest.get("name", root.name)),
        image_weights=root / IMAGE_FILE,
        text_head=head_path if head_path.is_file() else None,
        source=source,
        encoder=str(root / encoder)
        if encoder and not Path(encoder).is_absolute() and (root / encoder).exists()
        else encoder,
        classes=tuple(manifest.get("classes", CLASS_NAMES)),
        info=manifest,
        lexical=root / LEXICAL_FILE if (root / LEXICAL_FILE).is_file() else None,
    )


# What model.json may hold, and of which type; other keys are kept as they are (``ModelSpec.info``).
_DESCRIPTION_TEXT = ("id", "name")
_MAX_DESCRIPTION_BYTES = 4_000_000


def read_model_description(path: Path) -> dict[str, Any]:
    """A model folder's ``model.json``, checked for the types the loader relies on; WeightsError
    (one line naming the file and what to do) for anything else."""
    fix = "fix or remove it, or choose another model folder"
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_DESCRIPTION_BYTES + 1)
    except OSError as error:
        raise WeightsError(f"{path}: cannot be read ({error.strerror or error})") from error
    if len(data) > _MAX_DESCRIPTION_BYTES:
        raise WeightsError(f"{path}: unreadable model description: far too large; {fix}")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise WeightsError(f"{path}: unreadable model description ({_first_line(error)}); {fix}") from None
    if not isinstance(manifest, dict):
        raise WeightsError(
            f"{path}: unreadable model description: a JSON {type(manifest).__name__}, not an object; {fix}"
        )
    for key in _DESCRIPTION_TEXT:
        if key in manifest and not isinstance(manifest[key], str):
            raise WeightsError(f"{path}: unreadable model description: {key!r} must be text; {fix}")
    if manifest.get("encoder") is not None and not isinstance(manifest["encoder"], str):
        raise WeightsError(f"{path}: unreadable model description: 'encoder' must be a folder name or null; {fix}")
    classes = manifest.get("classes", CLASS_NAMES)
    if not isinstance(classes, (list, tuple)) or not all(isinstance(name, str) for name in classes) or not classes:
        raise WeightsError(f"{path}: unreadable model description: 'classes' must be a list of task names; {fix}")
    return manifest


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def spec_from_files(
    image_weights: str | os.PathLike[str], text_head: str | os.PathLike[str] | None = None
) -> ModelSpec:
    image = Path(image_weights)
    head = Path(text_head) if text_head else None
    if head is None:
        # Weights given alone: use the head beside them, or the bundled one.
        for candidate in (
            image.with_name(HEAD_FILE),
            image.with_name(PUBLISHED_HEAD_FILE),
            bundled_model_folder() / HEAD_FILE,
        ):
            if candidate.is_file():
                head = candidate
                break
    classes = TASKS if head is not None and head.name == PUBLISHED_HEAD_FILE else CLASS_NAMES
    return ModelSpec(
        id=f"file:{image}",
        name=f"{image.parent.name}/{image.name}",
        image_weights=image,
        text_head=head,
        source="files",
        classes=classes,
    )


def available_models(user_folders: Iterable[str | os.PathLike[str]] = ()) -> list[ModelSpec]:
    """The bundled model (if shipped) followed by the user's folders that hold a model."""
    specs: list[ModelSpec] = []
    bundled = bundled_model_folder()
    if (bundled / IMAGE_FILE).is_file():
        specs.append(spec_from_folder(bundled, source="bundled"))
    for folder in user_folders:
        try:
            specs.append(spec_from_folder(folder))
        except WeightsError:
            continue
    return specs


def default_model_spec() -> ModelSpec:
    bundled = bundled_model_folder()
    if not (bundled / IMAGE_FILE).is_file():
        raise WeightsError(NO_WEIGHTS_HELP)
    return spec_from_folder(bundled, source="bundled")


def load_model(spec: ModelSpec) -> LoadedModel:
    """Build the network described by the weights' own shapes and load them strictly."""
    image_state, _ = load_state_dict(spec.image_weights)
    network = build_network(image_state, spec.image_weights.name)
    if spec.text_head is None:
        raise WeightsError(f"{spec.name}: no text head file; pass --text-head FILE")
    head, classes = load_text_head(spec.text_head, spec.classes)
    if head.fc1.out_features != network.config.text_dim:
        raise WeightsError(
            f"text head gives {head.fc1.out_features}-d embeddings "
            f"but the image network expects {network.config.text_dim}"
        )
    return LoadedModel(spec, network, head, classes, load_lexical(spec.lexical, classes))


def load_lexical(path: Path | None, classes: Sequence[str]) -> LexicalClassifier | None:
    """The folder's n-gram decision, checked to name the head's classes in the head's order."""
    if path is None:
        return None
    lexical = load_lexical_classifier(path)
    if lexical.classes != tuple(classes):
        raise WeightsError(
            f"{path.name}: its classes ({', '.join(lexical.classes)}) are not the text head's "
            f"({', '.join(classes)}); remove it or use the one that came with the model"
        )
    # The first reading imports scikit-learn (about a second): pay it here, while the model loads
    # off the GUI thread, rather than on the user's first message.
    lexical.probabilities(["warm up"])
    return lexical


def load_text_head(
    path: str | os.PathLike[str], classes: Sequence[str] | None = None
) -> tuple[TextHead, tuple[str, ...]]:
    """A text head and its class order: from the file's metadata, else ``classes``, else by its size."""
    state, metadata = load_state_dict(path)
    head = TextHead.from_state_dict(state)
    named = _classes_from_metadata(path, metadata) if "classes" in metadata else tuple(classes or ())
    if len(named) != head.fc2.out_features:
        named = CLASS_NAMES if head.fc2.out_features == len(CLASS_NAMES) else TASKS
    return head, named


def _classes_from_metadata(path: str | os.PathLike[str], metadata: Mapping[str, str]) -> tuple[str, ...]:
    """The class order a text head's file names in its metadata (a JSON list of task names)."""
    try:
        names = json.loads(metadata["classes"])
    except (ValueError, TypeError, RecursionError) as error:
        raise WeightsError(
            f"{Path(path).name}: its 'classes' metadata is not JSON ({_first_line(error)}); "
            "this text head file is damaged: use the one that came with the model"
        ) from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise WeightsError(
            f"{Path(path).name}: its 'classes' metadata is not a list of task names; "
            "this text head file is damaged: use the one that came with the model"
        )
    return tuple(names)


# Far above any InstructIR network (the published one: width 32, 4 levels, at most 8 blocks), far
# below what would exhaust memory: a file naming "downs.99999999" is refused before building anything.
_MAX_LEVELS = 8
_MAX_BLOCKS = 256
_MAX_WIDTH = 2048
_MAX_TEXT_DIM = 8192


def build_network(state_dict: Mapping[str, Tensor], label: str = "weights") -> InstructIRNet:
    """The network the weights describe, checked against them before any memory is allocated."""
    # A block or level index far beyond any network (``downs.99999999``) would have the shape
    # detection count to it: refused first.
    odd = next(
        (
            n
            for n in state_dict
            for part in n.split(".")
            if part.isdigit() and (len(part) > 6 or int(part) > _MAX_BLOCKS)
        ),
        None,
    )
    if odd is not None:
        raise WeightsError(f"{label}: the weights describe an implausible network ({odd}); the file is damaged")
    try:
        config = detect_config(state_dict)
    except ValueError as error:
        raise WeightsError(f"{label}: {error}") from error
    blocks = (*config.enc_blocks, *config.dec_blocks, config.middle_blocks)
    if (
        len(config.enc_blocks) > _MAX_LEVELS
        or max(blocks) > _MAX_BLOCKS
        or config.width > _MAX_WIDTH
        or config.text_dim > _MAX_TEXT_DIM
    ):
        raise WeightsError(f"{label}: the weights describe an implausible network ({config}); the file is damaged")
    # The skeleton on the "meta" device costs no memory: its names and shapes must be the file's.
    with torch.device("meta"):
        skeleton = InstructIRNet(config)
    expected = {name: tuple(value.shape) for name, value in skeleton.state_dict().items()}
    given = {name: tuple(value.shape) for name, value in state_dict.items()}
    if expected != given:
        differences = sorted(set(expected) ^ set(given)) or [n for n in expected if expected[n] != given[n]]
        raise WeightsError(f"{label}: weights do not fit the InstructIR network (first difference: {differences[0]})")
    network = InstructIRNet(config)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise WeightsError(f"{label}: weights do not fit the InstructIR network ({first})") from error
    return network.eval()


def save_model_folder(
    folder: str | os.PathLike[str],
    *,
    image_state: Mapping[str, Tensor],
    head_state: Mapping[str, Tensor],
    network: NetworkConfig,
    model_id: str,
    name: str,
    encoder: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model folder: fp16 safetensors for both networks plus ``model.json``."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    manifest = {
        "id": model_id,
        "name": name,
        "network": network.to_dict(),
        "classes": list(CLASS_NAMES),
        "encoder": encoder,
        **(extra or {}),
    }
    save_state_dict(root / IMAGE_FILE, image_state, {"network": network.to_dict(), "id": model_id})
    save_state_dict(root / HEAD_FILE, head_state, {"classes": list(CLASS_NAMES)})
    (root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return root
