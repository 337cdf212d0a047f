"""Put the editor in the desktop's application menu, and take it out again.

A wheel installed for the user or system-wide already puts its desktop entry, icon and project
file type under ``<prefix>/share``, where desktop shells look. A virtual environment's prefix is
not such a place, so ``instructir-desktop desktop-entry install`` writes them under the user's
``$XDG_DATA_HOME`` (``~/.local/share``), launching this environment's ``instructir-desktop-gui``
by its full path. Nothing outside that folder is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from instructir_desktop.core.install_paths import CHECKOUT_ROOT, installed_share_folders

ENTRY_NAME = "instructir-desktop"
ENTRY_FILE = f"{ENTRY_NAME}.desktop"
ICON_FILE = f"{ENTRY_NAME}.svg"
MIME_FILE = f"{ENTRY_NAME}-mime.xml"
LAUNCHER = "instructir-desktop-gui"


@dataclass(frozen=True)
class DesktopFiles:
    """Where the installed copies go under a data home (``~/.local/share``)."""

    data_home: Path

    @property
    def entry(self) -> Path:
        return self.data_home / "applications" / ENTRY_FILE

    @property
    def icon(self) -> Path:
        return self.data_home / "icons" / "hicolor" / "scalable" / "apps" / ICON_FILE

    @property
    def mime(self) -> Path:
        return self.data_home / "mime" / "packages" / MIME_FILE

    def all(self) -> tuple[Path, Path, Path]:
        return self.entry, self.icon, self.mime


def user_data_home() -> Path:
    configured = os.environ.get("XDG_DATA_HOME", "")
    # The spec says a relative value is invalid and must be ignored.
    return Path(configured) if os.path.isabs(configured) else Path.home() / ".local" / "share"


def _source(checkout_relative: str, installed_relative: str) -> Path:
    """A packaging file, from this checkout or from the installed wheel's data folder."""
    candidates = [
        CHECKOUT_ROOT / checkout_relative,
        *(share / installed_relative for share in installed_share_folders()),
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{Path(installed_relative).name} is missing from this installation")


def find_launcher() -> Path:
    """This environment's GUI launcher (the script pip made), else the one on PATH."""
    script = Path(sys.executable).parent / LAUNCHER
    if script.is_file():
        return script
    found = shutil.which(LAUNCHER)
    if found:
        return Path(found)
    raise FileNotFoundError(f"{LAUNCHER} is not installed here: install the package first (pip install .)")


def quote_exec_argument(argument: str) -> str:
    """One Exec= argument: the desktop spec reserves some characters and wants double quotes.

    Inside the quotes ``"`$\\`` take a backslash; the file then escapes every backslash again,
    since the value is read as a string before it is split into arguments.
    """
    if all(c.isalnum() or c in "/._-+" for c in argument):
        return argument
    escaped = "".join("\\\\" + ("\\\\" if c == "\\" else c) if c in '"`$\\' else c for c in argument)
    return f'"{escaped}"'


def entry_text(template: str, launcher: Path) -> str:
    """The packaged entry with Exec/TryExec naming ``launcher`` by its full path."""
    program = quote_exec_argument(str(launcher))
    lines = []
    for line in template.splitlines():
        if line.startswith("Exec="):
            line = f"Exec={program} %f"
        elif line.startswith("TryExec="):
            line = "TryExec=" + str(launcher).replace("\\", "\\\\")  # a plain string, not quoted
        lines.append(line)
    return "\n".join(lines) + "\n"


def install(data_home: Path | None = None, launcher: Path | None = None) -> list[str]:
    """Write the entry, icon and project type; returns what was done, one line each."""
    files = DesktopFiles(data_home or user_data_home())
    template = _source("packaging/linux/" + ENTRY_FILE, "applications/" + ENTRY_FILE).read_text(encoding="utf-8")
    icon = _source("resources/icons/" + ICON_FILE, "icons/hicolor/scalable/apps/" + ICON_FILE)
    mime = _source("packaging/linux/" + MIME_FILE, "mime/packages/" + MIME_FILE)
    for target in files.all():
        target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(files.entry, entry_text(template, launcher or find_launcher()))
    shutil.copyfile(icon, files.icon)
    shutil.copyfile(mime, files.mime)
    done = [f"wrote {path}" for path in files.all()]
    return done + _refresh_caches(files)


def remove(data_home: Path | None = None) -> list[str]:
    files = DesktopFiles(data_home or user_data_home())
    done = []
    for path in files.all():
        if path.is_file():
            path.unlink()
            done.append(f"removed {path}")
    if not done:
        return [f"nothing to remove under {files.data_home}"]
    return done + _refresh_caches(files)


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _refresh_caches(files: DesktopFiles) -> list[str]:
    """Ask the desktop to notice the change now; without these tools it notices at next login."""
    notes = []
    for tool, folder in (
        ("update-desktop-database", files.entry.parent),
        ("update-mime-database", files.data_home / "mime"),
    ):
        if shutil.which(tool) is None:
            continue
        try:
            subprocess.run([tool, str(folder)], check=True, capture_output=True, timeout=60)
            notes.append(f"ran {tool}")
        except (OSError, subprocess.SubprocessError) as error:
            notes.append(f"{tool} failed ({error}); the menu updates at next login")
    return notes
