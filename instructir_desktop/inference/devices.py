"""Choosing the device, precision and tile size; recognising out-of-memory; CPU allocator tuning."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_allocator_configured = False


class DeviceError(Exception):
    """A device the user asked for cannot be used; one line for the user."""


def resolve_device(name: str = "auto") -> torch.device:
    name = (name or "auto").lower()
    mps_available = torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no CUDA GPU is available (try --device cpu)")
    if name == "mps" and not mps_available:
        raise DeviceError("MPS was requested but this machine has no Apple GPU available (try --device cpu)")
    if name not in {"cpu", "cuda", "mps"} and not name.startswith("cuda:"):
        raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


def resolve_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    precision = (precision or "auto").lower()
    if device.type == "cpu":
        # Without native bf16/fp16 arithmetic (most desktop CPUs), reduced precision is slower.
        return torch.float32
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def default_tile_size(device: torch.device) -> int:
    """A tile that keeps activations well inside the device's memory (about 1 GB per MP in fp32)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        megapixels = free / 1e9 / 1.2  # room for fp16 activations plus the allocator's slack
        side = int((megapixels * 1e6) ** 0.5) // 16 * 16
        return max(256, min(2048, side))
    if device.type == "mps":
        return 1024
    return 512


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error).lower()
    if "failed to allocate memory" in text:  # ONNX Runtime's allocator (its errors are not RuntimeErrors)
        return True
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None


def configure_cpu_allocator() -> None:
    """Let glibc keep large freed blocks for reuse instead of unmapping them.

    Each tile allocates the same large activations again; by default glibc maps and unmaps
    every block above 32 MB, and the page faults of re-mapping cost more than a third of the
    run time. Memory is handed back after each job by :func:`release_cpu_memory`.
    """
    global _allocator_configured
    if _allocator_configured:
        return
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)
    _allocator_configured = True


def release_cpu_memory() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def describe_device(device: torch.device, dtype: torch.dtype) -> str:
    precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype))
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({precision})"
    if device.type == "mps":
        return f"Apple GPU ({precision})"
    return f"CPU, {torch.get_num_threads()} threads ({precision})"
