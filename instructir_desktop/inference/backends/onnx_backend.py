"""The ONNX Runtime backend: networks exported once per model, cached, and run by ONNX Runtime.

Tuning (measured on a 2-core Sapphire Rapids VM with the S16 model, shipped then; see README):
- threads: one intra-op thread per physical core, sequential execution (the graph is a chain),
  no spin-waiting; the memory arena on, shrunk after each statistics pass;
- graph optimisation: everything (``ORT_ENABLE_ALL``), which lets ONNX Runtime run the
  convolutions in its blocked NCHWc layout;
- precision: float32. See ``docs/onnx-backend.md`` for what fp16, bf16 and int8 measured.

Cancel: ONNX Runtime cannot call back into Python while a graph runs, so a small watcher thread
polls the job's cancel check and sets ``RunOptions.terminate``, which stops the run between two
operators.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from instructir_desktop.inference.backends import BackendError, PrepareProgress
from instructir_desktop.inference.backends.onnx_cache import OnnxCache, module_hash
from instructir_desktop.inference.backends.onnx_graph import (
    RECORD,
    REPLAY,
    ExportableInstructIR,
    statistics_layout,
    statistics_length,
)
from instructir_desktop.inference.executor import CancelCheck, ChannelStatistics
from instructir_desktop.model.network import InstructIRNet

OPSET = 17
CANCEL_POLL_SECONDS = 0.05
# Tile side that ran fastest per pixel on the measured CPU (with the engine's 64-pixel overlap).
CPU_TILE = 512
EXPORT_STAGES = ((RECORD, "the statistics pass"), (REPLAY, "the tile pass"))


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads share a core's vector units)."""
    import psutil

    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = physical
    return max(1, min(physical, usable))


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise BackendError("onnxruntime is not installed") from error
    return onnxruntime


def choose_providers(device: torch.device) -> list[str]:
    """Execution providers for ``device``: CUDA on a CUDA device, DirectML when it is the only
    GPU provider, the CPU otherwise (always last, for operators a GPU provider lacks)."""
    available = set(_onnxruntime().get_available_providers())
    if device.type == "cuda":
        for gpu in ("CUDAExecutionProvider", "DmlExecutionProvider"):
            if gpu in available:
                return [gpu, "CPUExecutionProvider"]
        raise BackendError("the installed onnxruntime has no CUDA or DirectML provider")
    return ["CPUExecutionProvider"]


def session_options(threads: int | None = None) -> Any:
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep instead of spinning: on a desktop shared with the GUI and other
    # programs, spinning threads steal the cores the busy ones need (measured 1.9x slower wall
    # time, twice the CPU time, on a loaded 2-core machine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The memory arena stays on: with it ONNX Runtime plans one reusable block per shape (a 1 MP
    # statistics pass peaked at 321 MB with it, 1089 MB through plain malloc). The statistics pass
    # shrinks it when done (see _run), so the big batch's memory does not outlive the pass.
    options.log_severity_level = 3  # warnings about unused initialisers etc. are not the user's business
    return options


def _quiet_export(module: nn.Module, args: tuple[Tensor, ...], path: Path, **kwargs: Any) -> None:
    """torch.onnx.export with the TorchScript-based exporter.

    It exports our graphs about four times faster than the torch.export-based one and needs no
    onnxscript; its deprecation warnings are silenced here. If a later torch drops it, export
    fails and the backend falls back to torch with a notice.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, **kwargs)


def export_instructir(network: InstructIRNet, kind: str, path: Path) -> None:
    module = ExportableInstructIR(network, kind).cpu().float()
    size = network.config.size_multiple * 4
    image = torch.rand(2, network.config.in_channels, size, size)
    embedding = torch.rand(1, network.config.text_dim)
    spatial = {0: "batch", 2: "height", 3: "width"}
    if kind == RECORD:
        third, names, outputs = torch.rand(2, 1, size, size), ["image", "embedding", "weight"], ["restored", "means"]
        axes = {"image": spatial, "weight": spatial, "restored": spatial}
    else:
        third, names, outputs = torch.rand(statistics_length(network)), ["image", "embedding", "means"], ["restored"]
        axes = {"image": spatial, "restored": spatial}
    _quiet_export(module, (image, embedding, third), path, input_names=names, output_names=outputs, dynamic_axes=axes)


def _cached_sessions(
    cache: OnnxCache,
    model_hash: str,
    stages: tuple[tuple[str, str], ...],
    export: Any,
    device: torch.device,
    progress: PrepareProgress | None,
    what: str,
) -> dict[str, Any]:
    """One session per stage name, exporting what the cache lacks (with progress) and re-exporting
    once what ONNX Runtime refuses to load."""
    ort = _onnxruntime()
    providers = choose_providers(device)

    def export_stage(name: str) -> Path:
        return cache.export(model_hash, name, functools.partial(export, name))

    missing = [(name, label) for name, label in stages if cache.valid(model_hash, name) is None]
    for index, (name, label) in enumerate(missing):
        if progress is not None:
            progress(
                index / len(missing),
                f"Preparing {what} for ONNX Runtime, first use only ({label}, {index + 1} of {len(missing)})…",
            )
        export_stage(name)
    if missing and progress is not None:
        progress(1.0, f"{what[0].upper()}{what[1:]} is ready for ONNX Runtime")
    sessions = {}
    for name, _ in stages:
        path = cache.path(model_hash, name)
        try:
            sessions[name] = ort.InferenceSession(str(path), session_options(), providers=providers)
        except Exception:  # a file that hashes right but does not load: export it again, once
            path = export_stage(name)
            sessions[name] = ort.InferenceSession(str(path), session_options(), providers=providers)
    return sessions


def _run(
    session: Any, feeds: dict[str, np.ndarray], check_cancel: CancelCheck | None, shrink_arena: bool = False
) -> list[np.ndarray]:
    """``session.run`` that stops within a poll interval of a cancel (see the module docstring);
    ``shrink_arena`` hands the arena's free blocks back afterwards (for one-off large passes)."""
    options = _onnxruntime().RunOptions()
    if shrink_arena:
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    if check_cancel is None:
        outputs: list[np.ndarray] = session.run(None, feeds, options)
        return outputs
    check_cancel()
    finished = threading.Event()
    cancelled = threading.Event()

    def watch() -> None:
        while not finished.wait(CANCEL_POLL_SECONDS):
            try:
                check_cancel()
            except BaseException:
                cancelled.set()
                options.terminate = True
                return

    watcher = threading.Thread(target=watch, name="onnx-cancel-watch", daemon=True)
    watcher.start()
    try:
        outputs = session.run(None, feeds, options)
        return outputs
    except Exception:
        if cancelled.is_set():
            check_cancel()  # raises the job's own cancel exception
        raise
    finally:
        finished.set()
        watcher.join()


def _provider_label(session: Any) -> str:
    provider = session.get_providers()[0]
    return {"CUDAExecutionProvider": "CUDA", "DmlExecutionProvider": "DirectML"}.get(provider, "CPU")


class OnnxInstructIR:
    """An ``InstructIRRunner`` on ONNX Runtime: the record and replay graphs of one model."""

    backend = "onnxruntime"

    def __init__(self, network: InstructIRNet, sessions: dict[str, Any]) -> None:
        self.config = network.config
        self.sessions = sessions
        self.statistics_layout = statistics_layout(network)
        self.statistics_length = sum(self.statistics_layout)
        self.provider = _provider_label(sessions[REPLAY])
        self.preferred_tile = CPU_TILE if self.provider == "CPU" else 0

    @classmethod
    def prepare(
        cls,
        network: InstructIRNet,
        device: torch.device,
        *,
        progress: PrepareProgress | None = None,
        cache_folder: str | os.PathLike[str] | None = None,
    ) -> OnnxInstructIR:
        cache = OnnxCache(cache_folder)
        model_hash = module_hash(network, json.dumps(network.config.to_dict(), sort_keys=True))
        sessions = _cached_sessions(
            cache,
            model_hash,
            EXPORT_STAGES,
            lambda kind, path: export_instructir(network, kind, path),
            device,
            progress,
            "the model",
        )
        return cls(network, sessions)

    @property
    def description(self) -> str:
        import onnxruntime

        if self.provider == "CPU":
            return f"CPU, ONNX Runtime {onnxruntime.__version__}, {physical_cores()} threads (fp32)"
        return f"GPU, ONNX Runtime {onnxruntime.__version__} {self.provider} (fp32)"

    def condition(self, embedding: Tensor) -> np.ndarray:
        return np.ascontiguousarray(embedding.detach().cpu().float().numpy().reshape(1, -1))

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
        multiple = self.config.size_multiple
        if image.shape[-1] % multiple or image.shape[-2] % multiple:
            raise ValueError(f"image sides must be multiples of {multiple}")
        if statistics is None:
            if image.shape[0] != 1:
                raise ValueError("per-image statistics need a batch of one; record them for batches")
            statistics, record = ChannelStatistics(), True
        pixels = np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32)
        if record:
            if weight_mask is None:
                weight = np.ones((pixels.shape[0], 1, *pixels.shape[2:]), dtype=np.float32)
            else:
                weight = np.ascontiguousarray(weight_mask.detach().cpu().numpy()[:, None], dtype=np.float32)
            feeds = {"image": pixels, "embedding": conditioning, "weight": weight}
            restored, means = _run(self.sessions[RECORD], feeds, check_cancel, shrink_arena=True)
            # One entry per block, as the torch executor records them, so either backend replays them.
            statistics.means.extend(torch.split(torch.from_numpy(means), self.statistics_layout))
        else:
            means = torch.cat([m.reshape(-1).float().cpu() for m in statistics.means]).numpy()
            if means.shape[0] != self.statistics_length:
                raise ValueError(f"expected {self.statistics_length} channel means, got {means.shape[0]}")
            feeds = {"image": pixels, "embedding": conditioning, "means": means}
            (restored,) = _run(self.sessions[REPLAY], feeds, check_cancel)
        return torch.from_numpy(restored)


IMAGE_STAGES = (("image", "the network"),)
# Generic modules are checked after export on a size other than the traced one: a graph with a
# size baked in (a trace of shape-dependent Python) must not pass for a working one.
_CHECK_SIZE = (48, 80)
_CHECK_TOLERANCE = 1e-3


class OnnxImageModule:
    """An ``ImageRunner`` on ONNX Runtime for any exportable image-to-image module."""

    backend = "onnxruntime"

    def __init__(self, session: Any) -> None:
        self.session = session

    @classmethod
    def prepare(
        cls,
        module: nn.Module,
        device: torch.device,
        *,
        progress: PrepareProgress | None = None,
        cache_folder: str | os.PathLike[str] | None = None,
    ) -> OnnxImageModule:
        module = module.cpu().float().eval()
        cache = OnnxCache(cache_folder)
        model_hash = module_hash(module)

        def export(_: str, path: Path) -> None:
            spatial = {0: "batch", 2: "height", 3: "width"}
            _quiet_export(
                module,
                (torch.rand(1, 3, 64, 64),),
                path,
                input_names=["image"],
                output_names=["restored"],
                dynamic_axes={"image": spatial, "restored": spatial},
            )

        sessions = _cached_sessions(cache, model_hash, IMAGE_STAGES, export, device, progress, "this model")
        runner = cls(sessions["image"])
        check = torch.rand(1, 3, *_CHECK_SIZE, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = module(check).float()
        try:
            got = runner.run(check)
        except Exception as error:
            cache.discard(model_hash, "image")
            raise BackendError(f"the exported graph does not run at other sizes ({error})") from error
        if got.shape != expected.shape or float((got - expected).abs().max()) > _CHECK_TOLERANCE:
            cache.discard(model_hash, "image")
            raise BackendError("the exported graph does not reproduce the network at other sizes")
        return runner

    def run(self, image: Tensor, check_cancel: CancelCheck | None = None) -> Tensor:
        pixels = np.ascontiguousarray(image.detach().cpu().numpy(), dtype=np.float32)
        (restored,) = _run(self.session, {"image": pixels}, check_cancel)
        return torch.from_numpy(restored)
