"""Before the window opens: are the system libraries Qt's X11 platform plugin needs installed?

Without them Qt prints "could not load the Qt platform plugin 'xcb'" and aborts the process,
which tells a person nothing they can act on. The wheel carries Qt itself but not these X11
libraries, which come from the system. So before the application object is made, the plugin is
asked (``ldd``) which of its libraries cannot be found, and a missing one is named in one sentence
with the package that provides it. Nothing here imports Qt's widgets or starts Qt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# The libraries Qt 6's xcb platform plugin loads, and the Debian/Ubuntu package of each
# (packaging/README.md lists them too).
DEBIAN_PACKAGES: dict[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
}


def _uses_xcb(environment: dict[str, str]) -> bool:
    """Qt will try its X11 plugin: asked for by name, or chosen by default on an X11 display."""
    if not sys.platform.startswith("linux"):
        return False
    platform = environment.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(":")[0].split(";")[0] == "xcb"
    return bool(environment.get("DISPLAY")) and not environment.get("WAYLAND_DISPLAY")


def xcb_plugin() -> Path | None:
    try:
        import PySide6  # the package only: Qt's libraries load with its modules, not here
    except ImportError:
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(plugin: Path) -> list[str]:
    """The libraries ``plugin`` needs that the dynamic linker cannot find (empty: none, or no ``ldd``)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        listing = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    missing = []
    for line in listing.stdout.splitlines():
        name, _, where = line.strip().partition("=>")
        if where.strip() == "not found" and name.strip() not in missing:
            missing.append(name.strip())
    return missing


def describe_missing(missing: list[str]) -> str:
    """One sentence naming what is missing and the command that installs it."""
    packages = [DEBIAN_PACKAGES.get(name, "") for name in missing]
    named = " ".join(package for package in packages if package)
    libraries = ", ".join(missing)
    install = f" Install it with: sudo apt install {named} (Debian and Ubuntu package names)." if named else ""
    if not named:
        install = " Install the package that provides it with your system's package manager."
    return (
        f"InstructIR Desktop cannot open its window: Qt's X11 support needs {libraries}, "
        f"which {'is' if len(missing) == 1 else 'are'} not installed.{install}"
    )


def platform_problem(environment: dict[str, str] | None = None) -> str:
    """Why the window cannot open on this system, in one sentence ("" : nothing found wrong)."""
    environment = dict(os.environ) if environment is None else environment
    if not _uses_xcb(environment):
        return ""
    plugin = xcb_plugin()
    if plugin is None:
        return ""
    missing = missing_libraries(plugin)
    return describe_missing(missing) if missing else ""
