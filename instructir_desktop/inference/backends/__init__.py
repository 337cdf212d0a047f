"""Inference backends: the ways a loaded torch network is run, behind one interface.

Two backends exist: ``torch`` (CUDA, MPS or CPU, through the folded executor) and
``onnxruntime`` (the network exported once to ONNX and cached, run by ONNX Runtime's CPU execution
provider, or its CUDA/DirectML providers when the installed build has them). ``auto`` picks ONNX
Runtime on the CPU and torch on a GPU.

What a backend prepares is a *runner*:

- :class:`InstructIRRunner` for our instruction-conditioned network: what
  :class:`~instructir_desktop.inference.tiling.TiledRestorer` drives tile by tile, with the channel
  statistics shared across tiles;
- :class:`ImageRunner` for any other image-to-image torch module (third-party networks), run on
  whole tiles with no conditioning.

Preparing for ONNX Runtime can fail (an operation the exporter does not know, no onnxruntime
installed); :func:`prepare_instructir` and :func:`prepare_image_module` then fall back to torch
and say so in a notice, so the user's restore still runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from instructir_desktop.inference.executor import CancelCheck, ChannelStatistics
    from instructir_desktop.model.network import InstructIRNet, NetworkConfig

BACKENDS = ("auto", "torch", "onnxruntime")
TORCH = "torch"
ONNXRUNTIME = "onnxruntime"

# (fraction 0..1, message): the first export of a model reports its stages through this.
PrepareProgress = Callable[[float, str], None]


class BackendError(Exception):
    """A backend the user asked for cannot be used; one line for the user."""


class InstructIRRunner(Protocol):
    """Runs the InstructIR network on NCHW tiles whose sides are multiples of ``config.size_multiple``."""

    config: NetworkConfig
    backend: str  # "torch" | "onnxruntime"
    # Preferred tile side for this backend on this machine (0: the device's default).
    preferred_tile: int

    @property
    def description(self) -> str:
        """Where and how it runs, for the status bar: e.g. "CPU, ONNX Runtime, 2 threads (fp32)"."""
        ...

    def condition(self, embedding: Tensor) -> Any:
        """What every forward with this instruction needs, computed once per instruction."""
        ...

    def forward(
        self,
        image: Tensor,
        conditioning: Any,
        statistics: ChannelStatistics | None = None,
        *,
        record: bool = False,
        weight_mask: Tensor | None = None,
        check_cancel: CancelCheck | None = None,
    ) -> Tensor:
        """Restore ``image`` (N, 3, H, W float32). ``record=True`` measures the channel means over
        the batch (weighted by ``weight_mask``, N×H×W) into ``statistics``; otherwise the means in
        ``statistics`` are replayed; ``statistics=None`` gives each image (batch of one) its own.
        Returns float32 on the CPU. ``check_cancel`` is polled while it runs."""
        ...


class ImageRunner(Protocol):
    """Runs a plain image-to-image module (N, 3, H, W) -> (N, 3, H·scale, W·scale)."""

    backend: str

    def run(self, image: Tensor, check_cancel: CancelCheck | None = None) -> Tensor: ...


RunnerT = TypeVar("RunnerT", covariant=True)


@dataclass(frozen=True)
class Prepared(Generic[RunnerT]):
    """A runner (an :class:`InstructIRRunner` or an :class:`ImageRunner`) and what the user should
    be told about how it was prepared."""

    runner: RunnerT
    notices: tuple[str, ...] = ()


def resolve_backend(name: str, device: torch.device) -> str:
    """``auto`` → ONNX Runtime on the CPU, torch on a GPU; an explicit name is checked."""
    name = (name or "auto").lower()
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}: use {', '.join(BACKENDS)}")
    if name == "auto":
        return ONNXRUNTIME if device.type == "cpu" else TORCH
    if name == ONNXRUNTIME and device.type == "mps":
        raise BackendError("ONNX Runtime has no Apple GPU provider here: use --backend torch, or --device cpu")
    return name


def _fallback_notice(what: str, error: BaseException) -> str:
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    return f"{what} could not be prepared for ONNX Runtime ({reason}); running it with torch instead."


def prepare_instructir(
    network: InstructIRNet,
    backend: str,
    device: torch.device,
    dtype: torch.dtype,
    *,
    progress: PrepareProgress | None = None,
    cache_folder: str | None = None,
) -> Prepared[InstructIRRunner]:
    """A runner of ``network`` on ``device`` with ``backend`` (already resolved, not ``auto``)."""
    from instructir_desktop.inference.backends.torch_backend import TorchInstructIR

    if backend == ONNXRUNTIME:
        try:
            from instructir_desktop.inference.backends.onnx_backend import OnnxInstructIR

            return Prepared(OnnxInstructIR.prepare(network, device, progress=progress, cache_folder=cache_folder))
        except Exception as error:  # any failure to export or load: the user still gets a result
            return Prepared(TorchInstructIR(network, device, dtype), (_fallback_notice("The model", error),))
    return Prepared(TorchInstructIR(network, device, dtype))


def prepare_image_module(
    module: nn.Module,
    backend: str,
    device: torch.device,
    *,
    name: str = "This model",
    progress: PrepareProgress | None = None,
    cache_folder: str | None = None,
) -> Prepared[ImageRunner]:
    """A runner of any image-to-image ``module`` (e.g. a network loaded with spandrel)."""
    from instructir_desktop.inference.backends.torch_backend import TorchImageModule

    if backend == ONNXRUNTIME:
        try:
            from instructir_desktop.inference.backends.onnx_backend import OnnxImageModule

            return Prepared(OnnxImageModule.prepare(module, device, progress=progress, cache_folder=cache_folder))
        except Exception as error:
            return Prepared(TorchImageModule(module, device), (_fallback_notice(name, error),))
    return Prepared(TorchImageModule(module, device))
