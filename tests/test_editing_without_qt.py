"""The editing core runs where Qt cannot even be imported: every module of
``instructir_desktop.editing`` imports, and a session opens a photo and answers a message, with
PySide6 and qasync blocked (and without torch, which belongs to the engine's worker)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import sys
    for blocked in ("PySide6", "qasync", "shiboken6"):
        sys.modules[blocked] = None  # any import of it raises ImportError

    import importlib, pkgutil
    import instructir_desktop.editing as editing
    names = [f"{editing.__name__}.{info.name}" for info in pkgutil.iter_modules(editing.__path__)]
    for name in names:
        importlib.import_module(name)

    import asyncio, pathlib, tempfile
    import numpy as np
    sys.path.insert(0, sys.argv[1])  # the tests folder: the harness and the fake engine
    from editing_harness import Harness
    from instructir_desktop.io import write_image

    folder = pathlib.Path(tempfile.mkdtemp())
    write_image(folder / "photo.png", np.full((8, 12, 3), 0.6, np.float32))
    harness = Harness()
    assert harness.session.files.open(folder / "photo.png", background=False)
    run = harness.send("remove the noise")
    assert abs(float(harness.pixels().mean()) - 0.3) < 0.01, harness.pixels().mean()
    harness.close()
    print(len(names), "modules;", run.state.value, ";",
          "qt" if any(m.startswith(("PySide6", "qasync")) and sys.modules[m] for m in sys.modules) else "no qt", ";",
          "torch" if "torch" in sys.modules else "no torch")
    """
)


def test_the_editing_core_imports_and_runs_with_qt_blocked():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules, state, qt, torch = (part.strip() for part in result.stdout.strip().split(";"))
    assert int(modules.split()[0]) >= 10
    assert (state, qt, torch) == ("done", "no qt", "no torch")
