"""Ctrl-C, and a project that used to crash the window, in real processes: the command line and the
window end with one line and the shell's exit code for an interrupt, never a traceback.

Each test starts ``python -c`` with a small change that sends SIGINT at the moment under test (the
window being built, the model loading), so the moment is exact; or, for a hanging plugin, waits
for the plugin to say it started before sending it. Waiting is on the child's output and exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from editing_harness import make_photo
from hostile_fixtures import build
from test_plugin_isolation import V2_MANIFEST, alive
from test_plugins import write_folder_plugin

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


def start(code: str, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "INSTRUCTIR_DESKTOP_RECOVERY_DIR": str(tmp_path / "recovery"),
        "INSTRUCTIR_DESKTOP_LOG_DIR": str(tmp_path / "logs"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    assert "Traceback" not in err, err
    return process.returncode, err


def test_ctrl_c_while_the_command_line_loads_the_model(tmp_path):
    make_photo(tmp_path / "in.png")
    code = """
    import os, signal, sys
    from instructir_desktop.cli import main as cli

    def loading(args, tile=0):
        os.kill(os.getpid(), signal.SIGINT)  # the person presses Ctrl-C while the model loads
        import threading
        threading.Event().wait()  # a load that would take for ever

    cli.load_runtime_for = loading
    sys.exit(cli.main(["restore", "in.png", "-i", "remove the noise", "-o", "out.png"]))
    """
    returncode, err = finish(start(code, tmp_path))
    assert returncode == 130 and err.strip().splitlines()[-1] == "interrupted"
    assert not (tmp_path / "out.png").exists()


def test_ctrl_c_stops_a_hanging_plugin_on_the_command_line_within_two_seconds(tmp_path):
    make_photo(tmp_path / "in.png")
    hang = """
    import os, sys, threading

    def brighten(image, mask, params, context):
        print(f"started {os.getpid()}", file=sys.stderr, flush=True)
        threading.Event().wait()
    """
    write_folder_plugin(tmp_path / "plugins", "stuck", V2_MANIFEST, textwrap.dedent(hang))
    code = """
    import sys
    from instructir_desktop.cli.main import main
    sys.exit(main(["apply", "stuck.brighten", "in.png", "-o", "out.png", "--folder", "plugins"]))
    """
    process = start(code, tmp_path)
    assert process.stderr is not None
    line = process.stderr.readline()  # the plugin is running in its worker
    assert line.startswith("started "), line
    worker = int(line.split()[1])
    process.send_signal(signal.SIGINT)
    process.wait(timeout=2)  # the host stops the worker at once, whatever the plugin is doing
    returncode, err = finish(process)
    assert returncode == 130 and "interrupted: 0 of 1 written" in err
    assert not alive(worker) and not (tmp_path / "out.png").exists()


def test_ctrl_c_while_the_window_starts(tmp_path):
    code = """
    import os, signal, sys
    from instructir_desktop.ui import main_window

    built = main_window.MainWindow.__init__

    def building(self, *args, **kwargs):
        built(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C before the window has shown

    main_window.MainWindow.__init__ = building
    from instructir_desktop.cli.main import main
    sys.exit(main([]))
    """
    returncode, err = finish(start(code, tmp_path))
    assert returncode == 130 and err.strip().splitlines()[-1] == "interrupted"


def test_ctrl_c_while_the_window_loads_the_model(tmp_path):
    code = """
    import os, signal, sys
    from instructir_desktop.inference import runtime
    from test_cli import tiny_runtime

    def loading(settings, encoder=None, progress=None):
        os.kill(os.getpid(), signal.SIGINT)  # on the engine's worker, while the model loads
        return tiny_runtime()

    runtime.load_runtime = loading
    from instructir_desktop.cli.main import main
    sys.exit(main([]))
    """
    returncode, err = finish(start(code, tmp_path))
    assert returncode == 130 and err.strip().splitlines()[-1] == "interrupted"


def test_a_17_gigapixel_project_named_on_the_command_line_is_refused_in_one_line(tmp_path):
    huge = next(case.path for case in build(tmp_path / "hostile") if case.path.name == "huge.irproject")
    code = f"""
    import sys
    from instructir_desktop.inference import runtime
    from test_cli import tiny_runtime

    runtime.load_runtime = lambda settings, encoder=None, progress=None: tiny_runtime()
    from instructir_desktop.cli.main import main
    sys.exit(main([{str(huge)!r}, "--quit"]))
    """
    returncode, err = finish(start(code, tmp_path))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert returncode == 1, err  # not -11: no segmentation fault
    assert len(errors) == 1 and "huge.irproject" in errors[0] and "limit" in errors[0]
