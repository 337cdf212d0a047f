"""Third-party actions run in a worker process behind ``PluginHost.execute``: the pixels go through
shared memory, the context's services come back to the host (progress, notices, previews, the
model), and cancel and the time limit stop the worker, which the next action replaces."""

from __future__ import annotations

import os
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from test_plugins import GOOD_MANIFEST, write_folder_plugin

from instructir_desktop.core.geometry import Bounds
from instructir_desktop.inference.requests import RestoreRequest
from instructir_desktop.plugins.api import ActionCancelled, NullServices, PluginError
from instructir_desktop.plugins.host import PluginHost
from instructir_desktop.plugins.jobs import RuntimeServices
from instructir_desktop.plugins.outcome import ActionInput
from instructir_desktop.plugins.testing import sample_image

V2_MANIFEST = GOOD_MANIFEST.replace("api_version = 1", "api_version = 2")


def folder_host(root: Path, name: str, code: str) -> PluginHost:
    write_folder_plugin(root, name, V2_MANIFEST, textwrap.dedent(code))
    return PluginHost(user_folders=[root], use_entry_points=False, builtin_packages=())


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class Recording(NullServices):
    """Records what the worker forwarded; ``started`` is set by the plugin's first progress report;
    cancel is requested by setting ``cancel``."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.cancel = threading.Event()
        self.previews: list[tuple[np.ndarray, Bounds, float]] = []
        self.checks = 0

    def progress(self, fraction, message="", *, tiles_done=0, tiles_total=0, eta_seconds=None):
        super().progress(fraction, message)
        self.messages.append(f"progress {fraction} {message} {tiles_done}/{tiles_total}")
        self.started.set()

    def show_preview(self, pixels, bounds, scale):
        self.previews.append((pixels, bounds, scale))

    def check_cancel(self):
        self.checks += 1
        if self.cancel.is_set():
            raise ActionCancelled()


def test_a_third_party_action_runs_in_another_process_on_shared_memory_and_the_builtin_one_here(tmp_path):
    code = """
    import os
    import numpy as np
    from instructir_desktop.plugins.api import ActionResult, Bounds

    def brighten(image, mask, params, context):
        context.notice(f"pid {os.getpid()} memory {type(image.base).__name__} writeable {image.flags.writeable}")
        context.progress(0.5, "half", tiles_done=1, tiles_total=2)
        context.show_preview(image[:2, :2] * 0, Bounds(1, 2, 2, 2), 1.0)
        context.log("a log line")
        out = np.clip(image + params["amount"], 0, 1).astype(np.float32)
        return ActionResult(out, strength=0.3, tasks=("brightened",), notices=("said",))
    """
    host = folder_host(tmp_path, "bright", code)
    services = Recording()
    image = sample_image()
    try:
        outcome = host.execute("bright.brighten", ActionInput(image), {"amount": 0.2}, services)
        worker = host._process.pid
    finally:
        host.close()
    pid, memory, writeable = services.messages[0].split()[1::2]
    assert int(pid) != os.getpid() and int(pid) == worker
    assert memory == "mmap" and writeable == "False"
    assert "progress 0.5 half 1/2" in services.messages and "a log line" in services.messages
    (preview, bounds, scale) = services.previews[0]
    assert preview.shape == (2, 2, 3) and bounds == Bounds(1, 2, 2, 2) and scale == 1.0
    np.testing.assert_allclose(outcome.result, np.clip(image + 0.2, 0, 1), atol=1e-6)
    assert outcome.strength == 0.3 and outcome.tasks == ("brightened",) and outcome.notices == ("said",)
    np.testing.assert_allclose(outcome.applied_to(image), 0.7 * image + 0.3 * np.clip(image + 0.2, 0, 1), atol=1e-6)
    assert not alive(worker)  # closed with its host

    builtin = PluginHost(use_entry_points=False)
    assert not builtin.plugin("restore").isolated and host.records[0].isolated


def test_a_plugin_in_the_worker_uses_the_model_of_the_host(tmp_path):
    from test_cli import tiny_runtime

    code = """
    from instructir_desktop.plugins.api import ActionResult

    def brighten(image, mask, params, context):
        plan = context.interpret("remove the grain", image.shape[:2])
        result = context.restore_plan(image, plan.steps)
        return ActionResult(result.restored, plan=tuple(plan.steps), model_id=result.model_id)
    """
    host = folder_host(tmp_path, "model_user", code)
    runtime = tiny_runtime()
    image = sample_image(32, 32)
    try:
        outcome = host.execute("model_user.brighten", ActionInput(image), {}, RuntimeServices(lambda: runtime))
    finally:
        host.close()
    plan = runtime.interpret("remove the grain", (32, 32))
    expected = runtime.restore(RestoreRequest(image, plan.steps)).restored
    np.testing.assert_allclose(outcome.result, expected, atol=1e-6)
    assert [step.task for step in outcome.plan] == ["denoise"] and outcome.model_id == "tiny"


HANGS = """
import threading

def brighten(image, mask, params, context):
    context.progress(0.1, "started")
    threading.Event().wait()
"""


def test_cancel_stops_a_hanging_plugin_and_the_next_action_gets_a_new_worker(tmp_path):
    write_folder_plugin(tmp_path, "stuck", V2_MANIFEST, HANGS)
    write_folder_plugin(tmp_path, "bright", GOOD_MANIFEST, "def brighten(i, m, p, c):\n    return i\n")
    host = PluginHost(user_folders=[tmp_path], use_entry_points=False, builtin_packages=())
    services = Recording()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            host.execute("stuck.brighten", ActionInput(sample_image()), {}, services)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert services.started.wait(30)
        worker = host._process.pid
        assert worker is not None and alive(worker)
        services.cancel.set()
        thread.join(2)  # the host checks for cancel while it waits, and stops the worker at once
        assert not thread.is_alive()
        assert [type(error) for error in errors] == [ActionCancelled]
        assert not alive(worker)
        image = sample_image()
        np.testing.assert_array_equal(host.run("bright.brighten", image), image)
        assert host._process.pid not in (None, worker)
    finally:
        services.cancel.set()
        thread.join(10)
        host.close()


def test_the_time_limit_stops_a_hanging_plugin(tmp_path):
    host = folder_host(tmp_path, "stuck", HANGS)
    host.time_limit = 0.5
    try:
        with pytest.raises(PluginError, match=r"stuck\.brighten did not finish within 0\.5 s and was stopped"):
            host.run("stuck.brighten", sample_image())
    finally:
        host.close()


DEF = "\ndef brighten(i, m, p, c):\n"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (
            "import ctypes\n\ndef brighten(i, m, p, c):\n    ctypes.string_at(0)\n",
            "crashed: its process was killed by SIGSEGV",
        ),
        (
            "import sys\n\ndef brighten(i, m, p, c):\n    sys.exit(3)\n",
            "called sys.exit(3) instead of returning an image",
        ),
        ("import os\n\ndef brighten(i, m, p, c):\n    os._exit(5)\n", "ended its process (exit code 5)"),
        ("def brighten(i, m, p, c):\n    raise KeyboardInterrupt('stop')\n", "failed: KeyboardInterrupt: stop"),
        ("import numpy as np\n\ndef brighten(i, m, p, c):\n    return np.zeros((3, 3), np.float32)\n", "shape (3, 3)"),
        (
            "import numpy as np\n\ndef brighten(i, m, p, c):\n    return i.astype(np.complex64)\n",
            "complex64, not image pixels",
        ),
    ],
)
def test_a_plugin_that_crashes_exits_or_returns_garbage_is_named_and_the_image_kept(tmp_path, code, words):
    host = folder_host(tmp_path, "bad", code)
    image = sample_image()
    before = image.copy()
    try:
        with pytest.raises(PluginError) as failure:
            host.run("bad.brighten", image)
    finally:
        host.close()
    message = str(failure.value)
    assert "bad.brighten" in message and words in message and "\n" not in message
    np.testing.assert_array_equal(image, before)


def test_the_plugins_traceback_goes_to_the_log_and_the_person_reads_one_line(tmp_path):
    from instructir_desktop.core.logs import configure_logging, log_file

    code = "def helper():\n    raise RuntimeError('deep inside')\n\ndef brighten(i, m, p, c):\n    helper()\n"
    host = folder_host(tmp_path, "deep", code)
    configure_logging()
    try:
        with pytest.raises(PluginError) as failure:
            host.run("deep.brighten", sample_image())
    finally:
        host.close()
    assert str(failure.value) == "deep.brighten failed: RuntimeError: deep inside"
    logged = log_file().read_text(encoding="utf-8")
    assert "deep.brighten failed: RuntimeError: deep inside (in the plugin's process)" in logged
    assert "Traceback" in logged and "in helper" in logged
