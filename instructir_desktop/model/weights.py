"""Reading and writing weight files: safetensors first, PyTorch pickles only through weights_only.

Nothing here downloads anything; a path is always a file the user or the package provides.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from instructir_desktop.model.errors import WeightsError as WeightsError

SAFETENSORS_SUFFIXES = frozenset({".safetensors"})
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".bin"})
# Keys under which training scripts commonly nest the real state dict.
_NESTED_KEYS = ("state_dict", "params_ema", "params-ema", "params", "model", "model_state_dict", "net", "ema")


def load_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Load tensors (as float32, on the CPU) and string metadata from a weights file."""
    file = Path(path)
    if not file.is_file():
        raise WeightsError(f"{file}: no such weights file")
    suffix = file.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        tensors, metadata = _load_safetensors(file)
    elif suffix in PICKLE_SUFFIXES:
        tensors, metadata = _load_pickle(file), {}
    else:
        raise WeightsError(
            f"{file.name}: unsupported weights format {suffix or '(no extension)'}; "
            "use .safetensors or a .pt state dict"
        )
    if not tensors:
        raise WeightsError(f"{file.name}: the file holds no tensors")
    return {name: value.float() if value.is_floating_point() else value for name, value in tensors.items()}, metadata


def _load_safetensors(file: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as error:
        raise WeightsError(
            f"{file.name}: not a valid safetensors file ({_first_line(error)}); the file is damaged or not weights"
        ) from error
    return tensors, metadata


def _load_pickle(file: Path) -> dict[str, Tensor]:
    try:
        # weights_only refuses arbitrary pickled objects, so a hostile file cannot run code.
        with warnings.catch_warnings():  # torch's notes on odd pickle protocols are not the person's concern
            warnings.simplefilter("ignore")
            loaded: Any = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message goes on to suggest weights_only=False, which would run whatever the
        # file holds: say what was refused and why instead.
        raise WeightsError(_refusal(file)) from error
    except Exception as error:  # torch raises many kinds (RuntimeError for a damaged zip, EOFError, ...)
        raise WeightsError(
            f"{file.name}: cannot be read as a PyTorch state dict; the file is damaged or not a weights file"
        ) from error
    for _ in range(3):
        if isinstance(loaded, Mapping) and not _is_tensor_mapping(loaded):
            nested = next((loaded[k] for k in _NESTED_KEYS if k in loaded and isinstance(loaded[k], Mapping)), None)
            if nested is None:
                break
            loaded = nested
    if not isinstance(loaded, Mapping) or not _is_tensor_mapping(loaded):
        raise WeightsError(f"{file.name}: does not contain a state dict of tensors")
    return {_strip_wrapper_prefix(str(k)): v for k, v in loaded.items()}


# Pickle opcodes that build arbitrary objects by calling something the file names.
_CALLING_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"})


def _refusal(file: Path) -> str:
    """Why torch's safe loader refused ``file``, found by reading its pickle's opcodes (nothing in it
    is run): it asks to build objects (which could run code), or it is damaged, or it is not a
    state dict at all."""
    try:
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name) if name is not None else b""
        else:
            data = file.read_bytes()
        opcodes = {opcode.name for opcode, _, _ in pickletools.genops(data)} if data else set()
    except Exception:  # pickletools and zipfile raise many kinds on damaged data
        opcodes = None
    if opcodes is None or not opcodes:
        return f"{file.name}: cannot be read as a PyTorch state dict; the file is damaged or not a weights file"
    if opcodes & _CALLING_OPCODES:
        return (
            f"{file.name}: cannot be read as a PyTorch state dict: besides tensors it holds Python objects, which "
            "could run code when loaded, so it was not loaded; use a .safetensors file or a plain state dict"
        )
    return (
        f"{file.name}: cannot be read as a PyTorch state dict: it holds no tensors; "
        "use a .safetensors file or a plain state dict"
    )


def _is_tensor_mapping(mapping: Mapping[Any, Any]) -> bool:
    return bool(mapping) and all(isinstance(v, Tensor) for v in mapping.values())


def _strip_wrapper_prefix(name: str) -> str:
    # DataParallel and torch.compile wrap names; the network itself does not.
    for prefix in ("module.", "_orig_mod."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def save_state_dict(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, Tensor],
    metadata: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = torch.float16,
) -> Path:
    """Write tensors as safetensors (floating point cast to ``dtype``) with JSON-able metadata."""
    from safetensors.torch import save_file

    file = Path(path)
    tensors = {
        name: (value.detach().to(dtype) if dtype is not None and value.is_floating_point() else value.detach())
        .cpu()
        .contiguous()
        for name, value in state_dict.items()
    }
    text_metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    temporary = file.with_name(file.name + ".partial")
    save_file(tensors, str(temporary), metadata=text_metadata)
    # The writer creates owner-only files; weights are meant to be shared like any document.
    os.chmod(temporary, 0o644)
    os.replace(temporary, file)
    return file
