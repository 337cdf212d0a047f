"""Third-party plugin actions run in a worker process, so a plugin cannot take the application down.

GIMP runs its plug-ins in processes of their own for the same reasons: a plugin that crashes
(a segfault in a C extension), hangs, calls ``sys.exit``, raises ``KeyboardInterrupt`` or returns
garbage is reported in one line, and the editor goes on. ``PluginHost.execute`` stays the one way
an action runs; for a third-party plugin it hands the call to a :class:`PluginProcess`.

How a call goes:

- The host copies the action's input into shared memory (``multiprocessing.shared_memory``) and
  sends the worker a :class:`RunOrder` over a pipe; the worker maps the pixels read-only and calls
  the action's function with a context whose services are forwarded to the host (progress,
  previews, notices, the model's reader and restoration: the model stays in the application).
- Every block of shared memory is created and unlinked by the host. The worker asks for one when
  it has pixels to hand over (its result, an image to restore), after the host checked the size
  asked for, so a plugin cannot make the application allocate what it likes.
- While it waits the host checks for cancel (the caller's ``check_cancel``), the time limit and the
  worker's death. Cancel and the time limit stop the worker at once; a new one starts for the next
  action. Ctrl-C in the terminal reaches only the host (the worker ignores SIGINT).

The worker (``plugins/worker.py``) is started with the "spawn" method: a fresh interpreter, never a
fork of a process holding Qt, torch or threads.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.core.logs import one_line, record_failure
from instructir_desktop.inference.requests import PreviewResult, RestoreResult
from instructir_desktop.instructions.interpret import Interpretation, PlanStep
from instructir_desktop.plugins.api import (
    ActionCancelled,
    ActionContext,
    ActionResult,
    NothingToDo,
    ParameterValue,
    PluginError,
)
from instructir_desktop.plugins.loading import PluginCode

# A plugin action that runs longer than this (its own time: not the time the model spends on the
# restorations it asks for) is stopped.
DEFAULT_TIME_LIMIT = 300.0
# How often the waiting host looks at cancel, the clock and the worker (seconds).
POLL_SECONDS = 0.05
# The largest enlargement an action may return (the model's upscale goes to 8×).
MAX_SCALE = 8
SPAWN = multiprocessing.get_context("spawn")

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PixelRef:
    """A float32 array in a block of shared memory the host created."""

    name: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * 4


def attach(ref: PixelRef) -> tuple[shared_memory.SharedMemory, np.ndarray]:
    """The block and a float32 view of it (drop the view before closing the block)."""
    block = shared_memory.SharedMemory(name=ref.name)
    return block, np.ndarray(ref.shape, dtype=np.float32, buffer=block.buf)


@dataclass(frozen=True)
class RunOrder:
    """What the worker needs to run one action."""

    code: PluginCode
    action_id: str
    image: PixelRef
    mask: PixelRef | None
    params: Mapping[str, ParameterValue]
    preview_bounds: Bounds | None


@dataclass(frozen=True)
class ResultMeta:
    """An ActionResult as the worker sends it: the pixels in shared memory, the rest plain values."""

    pixels: PixelRef
    strength: float
    tasks: tuple[str, ...]
    plan: tuple[PlanStep, ...]
    model_id: str
    device: str
    notices: tuple[str, ...]
    seconds: float | None


class WorkerFailure(PluginError):
    """The plugin's code could not be loaded (``kind`` "import", or "missing" for a function it
    does not have): the host records it as the plugin's error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# ----------------------------------------------------------------------------- the host's end


@dataclass
class _Blocks:
    """The shared memory of one action: every block is the host's, unlinked as soon as it is read."""

    limit_pixels: int
    held: list[shared_memory.SharedMemory] = field(default_factory=list)

    def put(self, array: np.ndarray) -> PixelRef:
        ref, view = self.empty(array.shape)
        np.copyto(view, array, casting="same_kind")
        del view
        return ref

    def empty(self, shape: tuple[int, ...]) -> tuple[PixelRef, np.ndarray]:
        block = shared_memory.SharedMemory(create=True, size=max(1, int(np.prod(shape, dtype=np.int64)) * 4))
        self.held.append(block)
        return PixelRef(block.name, tuple(shape)), np.ndarray(shape, dtype=np.float32, buffer=block.buf)

    def take(self, ref: object, what: str) -> np.ndarray:
        """A copy of pixels the worker wrote into one of our blocks, which is then released."""
        block = next((b for b in self.held if isinstance(ref, PixelRef) and b.name == ref.name), None)
        if block is None or not isinstance(ref, PixelRef) or ref.nbytes > block.size:
            raise PluginError(f"{what} was not handed over properly")
        view = np.ndarray(ref.shape, dtype=np.float32, buffer=block.buf)
        pixels = view.copy()
        del view
        self.release(block)
        return pixels

    def check_shape(self, shape: object, what: str) -> tuple[int, ...]:
        """A shape the worker asks a block for: an image or plane no larger than the limit."""
        if (
            not isinstance(shape, tuple)
            or len(shape) not in (2, 3)
            or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in shape)
            or (len(shape) == 3 and shape[2] != 3)
        ):
            raise PluginError(f"{what} has shape {shape!r}, not that of an image")
        if shape[0] * shape[1] > self.limit_pixels:
            raise PluginError(f"{what} has {shape[0]} × {shape[1]} pixels, far more than the photo it was given")
        return shape

    def release(self, block: shared_memory.SharedMemory) -> None:
        if block in self.held:
            self.held.remove(block)
        block.close()
        with contextlib.suppress(FileNotFoundError):
            block.unlink()

    def release_all(self) -> None:
        for block in list(self.held):
            self.release(block)


class _Worker:
    """One live worker process and the host's end of its pipe."""

    def __init__(self) -> None:
        host_end, worker_end = SPAWN.Pipe()
        from instructir_desktop.plugins.worker import serve

        self.process: BaseProcess = SPAWN.Process(
            target=serve, args=(worker_end,), name="instructir-plugin-worker", daemon=True
        )
        self.process.start()
        worker_end.close()
        self.connection: Connection = host_end

    def stop(self, *, kill: bool) -> None:
        if not kill and self.process.is_alive():
            try:
                self.connection.send(("stop",))
                self.process.join(1.0)
            except (OSError, ValueError):
                pass
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5.0)
        self.connection.close()

    def death(self, action_id: str) -> str:
        """Why the worker is gone, in words."""
        self.process.join(1.0)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"{action_id} crashed: its process was killed by {name}"
        return f"{action_id} ended its process (exit code {code}) instead of returning an image"


def _stop_worker(holder: list[_Worker | None]) -> None:
    worker = holder[0]
    holder[0] = None
    if worker is not None:
        worker.stop(kill=False)


class PluginProcess:
    """Runs third-party actions in one worker process, started on first use and again after a
    crash, a cancel or a time-out. One action at a time; ``close`` ends the worker."""

    def __init__(self, time_limit: float = DEFAULT_TIME_LIMIT) -> None:
        self.time_limit = time_limit
        self._worker: list[_Worker | None] = [None]
        self._lock = threading.Lock()
        # The worker ends with its host, even one that is simply dropped.
        self._finalizer = weakref.finalize(self, _stop_worker, self._worker)

    @property
    def pid(self) -> int | None:
        """The worker's process id (None when none is running)."""
        worker = self._worker[0]
        return worker.process.pid if worker is not None and worker.process.is_alive() else None

    def close(self) -> None:
        self._finalizer()

    def run(
        self,
        code: PluginCode,
        action_id: str,
        image: np.ndarray,
        mask: np.ndarray | None,
        params: Mapping[str, ParameterValue],
        context: ActionContext,
    ) -> ActionResult:
        """Run ``code`` on ``image`` in the worker. Raises PluginError for anything the plugin did
        wrong (WorkerFailure when the worker says whose fault an import was), NothingToDo and
        ActionCancelled as an in-process action would."""
        with self._lock:
            worker = self._worker[0]
            if worker is None or not worker.process.is_alive():
                if worker is not None:
                    worker.stop(kill=True)
                try:
                    worker = _Worker()
                except Exception as error:  # no process to be had (limits, a broken interpreter)
                    raise PluginError(f"{action_id}: could not start a process for the plugin ({error})") from error
                self._worker[0] = worker
                if not self._finalizer.alive:  # closed before: this worker ends with the host too
                    self._finalizer = weakref.finalize(self, _stop_worker, self._worker)
            height, width = image.shape[:2]
            blocks = _Blocks(limit_pixels=max(1, height * width) * MAX_SCALE * MAX_SCALE)
            call = _Call(worker, blocks, action_id, (height, width), context, self.time_limit)
            try:
                order = RunOrder(
                    code,
                    action_id,
                    blocks.put(image),
                    None if mask is None else blocks.put(mask),
                    dict(params),
                    context.preview_bounds,
                )
                return call.run(order)
            finally:
                blocks.release_all()
                # Unless the worker ended the action itself (a result or a failure it caught), it
                # may be anywhere: hung, half-way through a reply, cancelled. It is not reused.
                if not call.ended_cleanly:
                    self._worker[0] = None
                    worker.stop(kill=True)


class _Call:
    """The host's side of one action in the worker: the messages until the result."""

    def __init__(
        self,
        worker: _Worker,
        blocks: _Blocks,
        action_id: str,
        size: tuple[int, int],
        context: ActionContext,
        time_limit: float,
    ) -> None:
        self.worker = worker
        self.blocks = blocks
        self.action_id = action_id
        self.size = size
        self.context = context
        self.time_limit = time_limit
        self.ended_cleanly = False  # the worker ended the action itself and waits for the next
        self._handed_out: list[shared_memory.SharedMemory] = []

    def run(self, order: RunOrder) -> ActionResult:
        connection = self.worker.connection
        try:
            connection.send(("run", order))
        except (OSError, ValueError) as error:
            raise PluginError(f"{self.action_id}: the plugin's process is not answering ({error})") from error
        deadline = time.monotonic() + self.time_limit
        while True:
            remaining = deadline - time.monotonic()
            ready = wait([connection, self.worker.process.sentinel], timeout=max(0.0, min(POLL_SECONDS, remaining)))
            if connection in ready:
                message = self._receive()
                for block in self._handed_out:  # the worker has read them by now
                    self.blocks.release(block)
                self._handed_out.clear()
                started = time.monotonic()
                result = self._handle(message)
                if result is not None:
                    return result
                if message[0] == "call":  # the model's time is not the plugin's
                    deadline += time.monotonic() - started
            elif ready:
                raise PluginError(self.worker.death(self.action_id))
            self.context.check_cancel()
            if time.monotonic() >= deadline:
                raise PluginError(
                    f"{self.action_id} did not finish within {self.time_limit:g} s and was stopped; "
                    "try a smaller photo or selection, or ask the plugin's author"
                )

    def _receive(self) -> tuple[Any, ...]:
        try:
            message = self.worker.connection.recv()
        except (EOFError, OSError):
            raise PluginError(self.worker.death(self.action_id)) from None
        except Exception as error:  # something the host cannot even unpickle
            raise PluginError(
                f"{self.action_id} sent something the application cannot read ({one_line(error)})"
            ) from None
        if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
            raise PluginError(f"{self.action_id} sent something the application cannot read")
        return message

    def _reply(self, ok: bool, payload: object) -> None:
        with contextlib.suppress(OSError, ValueError):  # the worker is gone: the next wait says so
            self.worker.connection.send(("reply", ok, payload))

    def _handle(self, message: tuple[Any, ...]) -> ActionResult | None:
        tag, arguments = message[0], message[1:]
        context = self.context
        try:
            if tag == "progress":
                fraction, text, done, total, eta = arguments
                context.progress(
                    float(fraction),
                    str(text),
                    tiles_done=int(done),
                    tiles_total=int(total),
                    eta_seconds=None if eta is None else float(eta),
                )
            elif tag == "notice":
                context.notice(str(arguments[0]))
            elif tag == "log":
                context.log(str(arguments[0]))
            elif tag == "preview":
                pixels, bounds, scale = arguments
                if not isinstance(bounds, Bounds):
                    raise TypeError("bounds")
                shape = self.blocks.check_shape(getattr(pixels, "shape", None), f"{self.action_id}'s preview")
                if len(shape) != 3 or not isinstance(pixels, np.ndarray):
                    raise TypeError("pixels")
                context.show_preview(np.asarray(pixels, dtype=np.float32), bounds, float(scale))
            elif tag == "buffer":
                purpose, shape = arguments
                self._hand_out_block(str(purpose), shape)
            elif tag == "call":
                self._serve(str(arguments[0]), arguments[1])
            elif tag == "done":
                self.ended_cleanly = True
                return self._result(arguments[0])
            elif tag == "failed":
                self.ended_cleanly = True
                kind, text = str(arguments[0]), one_line(str(arguments[1]))
                if len(arguments) > 2 and arguments[2]:  # the plugin's traceback, for the log
                    _log.error("%s (in the plugin's process)\n%s", text, str(arguments[2])[-20_000:])
                if kind == "cancelled":
                    raise ActionCancelled()
                if kind == "nothing":
                    raise NothingToDo(text)
                if kind in ("import", "missing"):
                    raise WorkerFailure(kind, text)
                raise PluginError(text)
            else:
                raise TypeError(tag)
        except (PluginError, ActionCancelled):
            raise
        except (TypeError, ValueError, IndexError, OverflowError) as error:
            raise PluginError(f"{self.action_id} sent a message the application cannot use ({tag}: {error})") from None
        return None

    def _hand_out_block(self, purpose: str, shape: object) -> None:
        if purpose == "result":
            height, width = self.size
            scale = shape[0] // height if isinstance(shape, tuple) and shape and isinstance(shape[0], int) else 0
            if not (1 <= scale <= MAX_SCALE and shape == (height * scale, width * scale, 3)):
                raise PluginError(f"{self.action_id} returned an image of shape {shape}; expected {(height, width, 3)}")
        checked = self.blocks.check_shape(shape, f"{self.action_id}'s {purpose}")
        ref, view = self.blocks.empty(checked)
        del view
        self._reply(True, ref)

    def _serve(self, name: str, arguments: tuple[Any, ...]) -> None:
        """One of the context's model services, asked for by the plugin, done here."""
        context = self.context
        try:
            if name == "interpret":
                instruction, image_size = arguments
                if not isinstance(instruction, str):
                    raise TypeError("the instruction must be text")
                size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
                answer: object = context.interpret(instruction, size)
            elif name == "restore_plan":
                ref, plan = arguments
                image = self.blocks.take(ref, f"{self.action_id}'s image to restore")
                restored = context.restore_plan(image, _plan(plan))
                answer = self._restored(restored)
            elif name == "preview_plan":
                ref, plan, bounds, mask_ref = arguments
                image = self.blocks.take(ref, f"{self.action_id}'s image to preview")
                mask = None if mask_ref is None else self.blocks.take(mask_ref, f"{self.action_id}'s mask")
                if bounds is not None and not isinstance(bounds, Bounds):
                    raise TypeError("bounds must be Bounds or None")
                preview = context.preview_plan(image, _plan(plan), bounds, mask)
                answer = (preview.original, preview.restored, preview.mask, preview.bounds, preview.scale)
            else:
                raise TypeError(f"no service {name!r}")
        except ActionCancelled:
            raise
        except NothingToDo as error:
            self._reply(False, ("nothing", str(error)))
            return
        except PluginError as error:
            self._reply(False, ("plugin", str(error)))
            return
        except Exception as error:  # the model failed: the plugin sees it as a RuntimeError, as in process
            record_failure(f"{self.action_id}: {name} failed", error)
            self._reply(False, ("other", f"{type(error).__name__}: {one_line(error)}"))
            return
        self._reply(True, answer)

    def _restored(self, result: RestoreResult) -> dict[str, object]:
        ref, view = self.blocks.empty(result.restored.shape)
        np.copyto(view, result.restored, casting="same_kind")
        del view
        self._handed_out.append(self.blocks.held[-1])
        return {
            "restored": ref,
            "scale": result.scale,
            "seconds": result.seconds,
            "device": result.device,
            "model_id": result.model_id,
            "step_seconds": result.step_seconds,
            "notices": result.notices,
            "step_models": result.step_models,
        }

    def _result(self, meta: object) -> ActionResult:
        if not isinstance(meta, ResultMeta):
            raise TypeError("the result")
        pixels = self.blocks.take(meta.pixels, f"{self.action_id}'s result")
        return ActionResult(
            pixels,
            strength=float(meta.strength),
            tasks=tuple(str(task) for task in meta.tasks),
            plan=_plan(meta.plan),
            model_id=str(meta.model_id),
            device=str(meta.device),
            notices=tuple(str(notice) for notice in meta.notices),
            seconds=None if meta.seconds is None else float(meta.seconds),
        )


def _plan(plan: object) -> tuple[PlanStep, ...]:
    if not isinstance(plan, tuple) or not all(isinstance(step, PlanStep) for step in plan):
        raise TypeError("a plan must be a tuple of PlanStep")
    return plan


def interpretation(value: object) -> Interpretation:
    """The worker's check of what the host answered to ``interpret``."""
    if not isinstance(value, Interpretation):
        raise PluginError("the model's reader gave no interpretation")
    return value


def restore_result(value: object) -> RestoreResult:
    """The worker's rebuilding of a restoration the host handed over in shared memory."""
    if not isinstance(value, dict):
        raise PluginError("the restoration was not handed over properly")
    block, view = attach(value["restored"])
    try:
        restored = view.copy()
    finally:
        del view
        block.close()
    return RestoreResult(
        restored,
        int(value["scale"]),
        float(value["seconds"]),
        str(value["device"]),
        str(value["model_id"]),
        tuple(value["step_seconds"]),
        tuple(value["notices"]),
        tuple(value.get("step_models", ())),
    )


def preview_result(value: object) -> PreviewResult:
    if not isinstance(value, tuple) or len(value) != 5:
        raise PluginError("the preview was not handed over properly")
    original, restored, mask, bounds, scale = value
    return PreviewResult(original, restored, mask, bounds, float(scale))
