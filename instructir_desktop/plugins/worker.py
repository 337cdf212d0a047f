"""The worker process that runs third-party plugin actions (see ``isolation.py`` for the host's end).

It imports plugin code, maps the pixels the host put in shared memory, calls the action with a
context whose services are forwarded to the host, and sends back the result or one line saying
what went wrong. Whatever the plugin does short of killing the process (raising anything, even
``SystemExit`` or ``KeyboardInterrupt``, returning garbage) ends in a message and the worker
waits for the next action; a plugin that kills it is reported by the host from its exit code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from multiprocessing import parent_process, shared_memory
from multiprocessing.connection import Connection, wait
from typing import Any, cast

import numpy as np

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference.requests import PreviewResult, RestoreResult
from instructir_desktop.instructions.interpret import Interpretation, PlanStep
from instructir_desktop.plugins.api import (
    ActionCancelled,
    ActionFunction,
    ActionResult,
    NothingToDo,
    PluginError,
)
from instructir_desktop.plugins.isolation import (
    PixelRef,
    ResultMeta,
    RunOrder,
    attach,
    interpretation,
    preview_result,
    restore_result,
)
from instructir_desktop.plugins.loading import PluginCode, import_module
from instructir_desktop.plugins.outcome import HostContext


def serve(connection: Connection) -> None:
    """The worker's loop: one action per "run" message until "stop" or the host goes away."""
    # Ctrl-C in a terminal reaches every process of the group; the host decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_the_host()
    functions: dict[PluginCode, ActionFunction] = {}
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if not isinstance(message, tuple) or not message or message[0] != "run":
            return
        _run(connection, message[1], functions)


def _end_with_the_host() -> None:
    """If the application dies without stopping us (killed, crashed), a plugin stuck in a loop
    must not keep running for ever."""
    parent = parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="host-watch", daemon=True).start()


def _run(connection: Connection, order: RunOrder, functions: dict[PluginCode, ActionFunction]) -> None:
    link = _HostLink(connection)
    action_id = order.action_id
    try:
        function = _function(order.code, functions)
    except _Refused as refusal:
        link.send("failed", refusal.kind, str(refusal), refusal.details)
        return
    mapped: list[shared_memory.SharedMemory] = []
    try:
        image = _read_only(order.image, mapped)
        mask = None if order.mask is None else _read_only(order.mask, mapped)
        height, width = image.shape[:2]
        context = HostContext(_ForwardedServices(link), Bounds.of_image(height, width), order.preview_bounds)
        output = function(image, mask, dict(order.params), context)
        meta = _handed_back(link, action_id, output)
    except ActionCancelled:
        link.send("failed", "cancelled", "")
    except NothingToDo as reply:
        link.send("failed", "nothing", str(reply))
    except PluginError as error:
        link.send("failed", "plugin", str(error))
    except _Refused as refusal:
        link.send("failed", refusal.kind, str(refusal))
    except SystemExit as exit_call:
        message = f"{action_id} called sys.exit({exit_call.code!r}) instead of returning an image"
        link.send("failed", "plugin", message, traceback.format_exc())
    except BaseException as error:  # KeyboardInterrupt too: the plugin's, not the person's
        message = f"{action_id} failed: {type(error).__name__}" + (f": {_text(error)}" if _text(error) else "")
        link.send("failed", "plugin", message, traceback.format_exc())
    else:
        link.send("done", meta)
    finally:
        for block in mapped:
            with contextlib.suppress(BufferError):  # the plugin kept a view: the mapping ends with the process
                block.close()


class _Refused(Exception):
    def __init__(self, kind: str, message: str, details: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details  # a traceback for the host's log


def _text(error: BaseException) -> str:
    return " ".join(str(error).split())


def _function(code: PluginCode, functions: dict[PluginCode, ActionFunction]) -> ActionFunction:
    if code in functions:
        return functions[code]
    try:
        module = import_module(code)
    except BaseException as error:  # any import-time failure is the plugin's, not ours
        message = f"cannot import {code.label()}: {type(error).__name__}: {_text(error)}"
        raise _Refused("import", message, traceback.format_exc()) from None
    function = getattr(module, code.function, None)
    if not callable(function):
        raise _Refused("missing", f"{code.label()} has no {code.function}()")
    functions[code] = cast(ActionFunction, function)
    return functions[code]


def _read_only(ref: PixelRef, mapped: list[shared_memory.SharedMemory]) -> np.ndarray:
    block, view = attach(ref)
    mapped.append(block)
    view.flags.writeable = False  # a plugin writing into its input fails loudly, as in process
    return view


def _handed_back(link: _HostLink, action_id: str, output: object) -> ResultMeta:
    """The plugin's output checked for what can be handed over, its pixels into shared memory."""
    result = output if isinstance(output, ActionResult) else ActionResult(cast(np.ndarray, output))
    pixels = result.pixels
    if not isinstance(pixels, np.ndarray):
        raise _Refused("plugin", f"{action_id} returned {type(pixels).__name__}, not an image array")
    if pixels.dtype.kind not in "biuf":
        raise _Refused("plugin", f"{action_id} returned an array of {pixels.dtype}, not image pixels")
    try:
        strength = float(result.strength)
        seconds = None if result.seconds is None else float(result.seconds)
    except (TypeError, ValueError):
        raise _Refused("plugin", f"{action_id} returned a strength or time that is not a number") from None
    for name, values in (("tasks", result.tasks), ("notices", result.notices)):
        if not isinstance(values, (tuple, list)) or not all(isinstance(value, str) for value in values):
            raise _Refused("plugin", f"{action_id} returned {name} that are not a list of text")
    plan = result.plan
    if not isinstance(plan, (tuple, list)) or not all(isinstance(step, PlanStep) for step in plan):
        raise _Refused("plugin", f"{action_id} returned a plan that is not a list of plan steps")
    return ResultMeta(
        link.pixels("result", pixels),
        strength,
        tuple(result.tasks),
        tuple(plan),
        str(result.model_id),
        str(result.device),
        tuple(result.notices),
        seconds,
    )


class _HostLink:
    """The worker's end of the pipe during one action."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def send(self, *message: object) -> None:
        self._connection.send(message)

    def ask(self, *message: object) -> Any:
        """Send a request and wait for the host's reply; the host's refusals are raised here."""
        self.send(*message)
        tag, ok, payload = self._connection.recv()
        if tag != "reply":
            raise PluginError("the application sent an unexpected message")
        if ok:
            return payload
        kind, text = payload
        if kind == "nothing":
            raise NothingToDo(text)
        if kind == "plugin":
            raise PluginError(text)
        raise RuntimeError(text)

    def pixels(self, purpose: str, array: np.ndarray) -> PixelRef:
        """``array`` copied (as float32) into a block the host makes for it."""
        ref = self.ask("buffer", purpose, tuple(int(side) for side in array.shape))
        block, view = attach(ref)
        try:
            with np.errstate(all="ignore"):  # huge integers become inf; the host refuses those
                np.copyto(view, array, casting="unsafe")
        finally:
            del view
            block.close()
        return cast(PixelRef, ref)


class _ForwardedServices:
    """``HostServices`` in the worker: each call goes to the host, which owns the model and the UI.
    Cancel is the host's to decide: it stops this process, so ``check_cancel`` has nothing to do."""

    def __init__(self, link: _HostLink) -> None:
        self._link = link
        self._last_progress = 0.0

    def progress(
        self,
        fraction: float,
        message: str = "",
        *,
        tiles_done: int = 0,
        tiles_total: int = 0,
        eta_seconds: float | None = None,
    ) -> None:
        now = time.monotonic()
        if now - self._last_progress < 0.05 and float(fraction) < 1.0:
            return  # a plugin reporting in a tight loop must not flood the pipe
        self._last_progress = now
        eta = None if eta_seconds is None else float(eta_seconds)
        self._link.send("progress", float(fraction), str(message), int(tiles_done), int(tiles_total), eta)

    def show_preview(self, pixels: np.ndarray, bounds: Bounds, scale: float) -> None:
        self._link.send("preview", np.asarray(pixels, dtype=np.float32), bounds, float(scale))

    def notice(self, message: str) -> None:
        self._link.send("notice", str(message))

    def check_cancel(self) -> None:
        return None

    def log(self, message: str) -> None:
        self._link.send("log", str(message))

    def interpret(self, instruction: str, image_size: tuple[int, int] | None = None) -> Interpretation:
        return interpretation(self._link.ask("call", "interpret", (instruction, image_size)))

    def restore_plan(self, image: np.ndarray, plan: Sequence[PlanStep]) -> RestoreResult:
        ref = self._link.pixels("image to restore", np.asarray(image))
        return restore_result(self._link.ask("call", "restore_plan", (ref, tuple(plan))))

    def preview_plan(
        self, image: np.ndarray, plan: Sequence[PlanStep], bounds: Bounds | None, mask: np.ndarray | None = None
    ) -> PreviewResult:
        ref = self._link.pixels("image to preview", np.asarray(image))
        mask_ref = None if mask is None else self._link.pixels("mask", np.asarray(mask))
        return preview_result(self._link.ask("call", "preview_plan", (ref, tuple(plan), bounds, mask_ref)))


__all__ = ["serve"]
