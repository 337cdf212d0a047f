"""Exported ONNX files, cached per model in the user's cache folder and never trusted blindly.

Each file ``<model hash>-<name>.onnx`` has a sidecar ``.json`` recording the format version of our
export and the SHA-256 of the ONNX file. A file is used only when its sidecar parses, names the
current format version and the same model hash, and its digest matches; anything else (an export
from an older version, a truncated or edited file, a missing sidecar) is exported again. A file
ONNX Runtime still refuses to load is thrown away and exported again once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

# Bump when the exported graphs change (inputs, outputs, folding), so old files count as stale.
EXPORT_FORMAT_VERSION = 3
CACHE_FOLDER_ENV = "INSTRUCTIR_DESKTOP_CACHE_DIR"
APP_NAME = "instructir-desktop"


def default_cache_folder() -> Path:
    """``$INSTRUCTIR_DESKTOP_CACHE_DIR`` or the platform's user cache folder, then ``onnx/``."""
    override = os.environ.get(CACHE_FOLDER_ENV)
    if override:
        return Path(override) / "onnx"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "onnx"


def module_hash(module: nn.Module, extra: str = "") -> str:
    """A digest of the module's class, parameters and buffers (names, types, shapes and values)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{type(module).__module__}.{type(module).__qualname__}|{extra}".encode())
    for name, tensor in module.state_dict().items():
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """The file's SHA-256, read in chunks by the standard library."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class OnnxCache:
    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_cache_folder()

    def path(self, model_hash: str, name: str) -> Path:
        return self.folder / f"{model_hash}-{name}.onnx"

    def _sidecar(self, path: Path) -> Path:
        return path.with_suffix(".json")

    def valid(self, model_hash: str, name: str) -> Path | None:
        """The cached file when it is complete and current, else None."""
        path = self.path(model_hash, name)
        try:
            record = json.loads(self._sidecar(path).read_text())
            if (
                isinstance(record, dict)
                and record.get("format") == EXPORT_FORMAT_VERSION
                and record.get("model") == model_hash
                and record.get("sha256") == file_digest(path)
            ):
                return path
        except (OSError, ValueError):
            pass
        return None

    def export(self, model_hash: str, name: str, write: Callable[[Path], None]) -> Path:
        """Run ``write(temporary path)`` and move the result into place with its sidecar.

        The file appears under its final name only when complete, so a crash or a full disk
        mid-export leaves no file that looks valid.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(model_hash, name)
        self.discard(model_hash, name)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{name}-", suffix=".onnx")
        os.close(handle)
        try:
            write(Path(temporary))
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        record = {"format": EXPORT_FORMAT_VERSION, "model": model_hash, "sha256": file_digest(path)}
        sidecar = self._sidecar(path)
        sidecar.with_suffix(".tmp").write_text(json.dumps(record))
        os.replace(sidecar.with_suffix(".tmp"), sidecar)
        return path

    def discard(self, model_hash: str, name: str) -> None:
        path = self.path(model_hash, name)
        for stale in (self._sidecar(path), path):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
