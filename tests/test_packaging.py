"""The built package: what a person gets from ``pip install`` of the wheel, not from this checkout.

The wheel is built offline from a copy of the sources, installed into a fresh environment, and the
installed editor is asked for its icons and its bundled model. The desktop entry is checked
against what the package really declares (its launcher, its icon, the formats it opens).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

from instructir_desktop.io import READ_EXTENSIONS
from instructir_desktop.ui import icons

ROOT = Path(__file__).resolve().parents[1]
DESKTOP_ENTRY = ROOT / "packaging" / "linux" / "instructir-desktop.desktop"
MIME_TYPES_BY_EXTENSION = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".jfif": "image/jpeg",
    ".png": "image/png",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".hif": "image/heif",
    ".avif": "image/avif",
    ".dng": "image/x-adobe-dng",
    ".cr2": "image/x-canon-cr2",
    ".cr3": "image/x-canon-cr3",
    ".crw": "image/x-canon-crw",
    ".nef": "image/x-nikon-nef",
    ".nrw": "image/x-nikon-nrw",
    ".arw": "image/x-sony-arw",
    ".srf": "image/x-sony-srf",
    ".sr2": "image/x-sony-sr2",
    ".raf": "image/x-fuji-raf",
    ".orf": "image/x-olympus-orf",
    ".rw2": "image/x-panasonic-rw2",
    ".rwl": "image/x-panasonic-rwl",
    ".pef": "image/x-pentax-pef",
    ".srw": "image/x-samsung-srw",
    ".x3f": "image/x-sigma-x3f",
    ".3fr": "image/x-hasselblad-3fr",
    ".fff": "image/x-hasselblad-fff",
    ".iiq": "image/x-phaseone-iiq",
    ".erf": "image/x-epson-erf",
    ".kdc": "image/x-kodak-kdc",
    ".dcr": "image/x-kodak-dcr",
    ".mrw": "image/x-minolta-mrw",
    ".mos": "image/x-leaf-mos",
    ".mef": "image/x-mamiya-mef",
}


def read_desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(DESKTOP_ENTRY.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


def test_desktop_entry_launches_a_declared_gui_script_and_names_the_app_icon() -> None:
    entry = read_desktop_entry()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    launcher = entry["Exec"].split()[0]
    assert launcher in project["gui-scripts"]
    assert entry["TryExec"] == launcher
    assert entry["Icon"] == icons.APP_ICON_NAME
    assert icons.icon_path(icons.APP_ICON_NAME) is not None
    assert entry["Type"] == "Application" and entry["Terminal"] == "false"
    from instructir_desktop.ui.app import DESKTOP_FILE_NAME

    assert DESKTOP_ENTRY.stem == DESKTOP_FILE_NAME  # Wayland matches the window to its entry by this


def validate_desktop_file(path: Path) -> None:
    """freedesktop's own validator, where it is installed (desktop-file-utils)."""
    validator = shutil.which("desktop-file-validate")
    if validator:
        result = subprocess.run([validator, str(path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_packaged_desktop_entry_is_valid() -> None:
    validate_desktop_file(DESKTOP_ENTRY)


def test_desktop_entry_offers_every_format_the_editor_opens() -> None:
    offered = set(filter(None, read_desktop_entry()["MimeType"].split(";")))
    assert set(MIME_TYPES_BY_EXTENSION) == set(READ_EXTENSIONS), "a new format needs its MIME type here"
    assert {MIME_TYPES_BY_EXTENSION[ext] for ext in READ_EXTENSIONS} <= offered
    mime_xml = (ROOT / "packaging" / "linux" / "instructir-desktop-mime.xml").read_text(encoding="utf-8")
    from instructir_desktop.editing.projects import PROJECT_SUFFIX

    assert "application/x-instructir-project" in offered
    assert f'pattern="*{PROJECT_SUFFIX}"' in mime_xml


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of what git would ship (no caches, no runs, no venv)."""
    pytest.importorskip("setuptools", minversion="68")
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "resources", "packaging"):
        path = ROOT / name
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, source / name)
    shutil.copytree(
        ROOT / "instructir_desktop", source / "instructir_desktop", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist), "."],
        cwd=source,
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_carries_the_model_icons_and_desktop_files(built_wheel: Path) -> None:
    names = set(zipfile.ZipFile(built_wheel).namelist())
    for part in (
        "image.safetensors",
        "text_head.safetensors",
        "intent_lexical.safetensors",
        "model.json",
        "MODEL_CARD.md",
    ):
        assert f"instructir_desktop/model/bundled/{part}" in names
    data = next(n.split("/data/")[0] for n in names if ".data/data/" in n) + "/data/"
    shipped_icons = {Path(n).name for n in names if n.startswith(data + "share/instructir-desktop/icons/")}
    assert shipped_icons == {p.name for p in (ROOT / "resources" / "icons").glob("*.svg")}
    assert data + "share/applications/instructir-desktop.desktop" in names
    assert data + f"share/icons/hicolor/scalable/apps/{icons.APP_ICON_NAME}.svg" in names
    assert data + "share/mime/packages/instructir-desktop-mime.xml" in names
    assert not any("/runs/" in n or n.endswith(".pt") for n in names)


@pytest.mark.slow
def test_installed_wheel_finds_its_icons_and_bundled_model(built_wheel: Path, tmp_path: Path) -> None:
    """Installed into a fresh environment, away from this checkout, the editor still has its icons."""
    environment = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True, timeout=120)
    python = environment / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies (Qt, torch, numpy) come from the test environment, after the fresh one's own
    # packages; a path line in a .pth is not scanned for .pth files, so this checkout's editable
    # install stays invisible there.
    (site_packages / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # pip --python, not --prefix: pip's --prefix first uninstalls the package from the running
    # environment (this checkout's editable install), which must stay as it is.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps"]
    subprocess.run([*pip, str(built_wheel)], check=True, timeout=300)
    still_installed = "import importlib.metadata as m; print(m.distribution('instructir-desktop').locate_file(''))"
    outer = subprocess.run([sys.executable, "-c", still_installed], check=True, capture_output=True, text=True)
    assert not Path(outer.stdout.strip()).is_relative_to(environment)
    probe = textwrap.dedent(
        """
        import os
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        import instructir_desktop
        from instructir_desktop.model.registry import default_model_spec
        from instructir_desktop.ui import icons
        print(instructir_desktop.__file__)
        print(icons.icon_path("undo"))
        print(not icons.icon("undo").isNull(), not icons.app_icon().isNull())
        print(default_model_spec().image_weights)
        """
    )
    result = subprocess.run(
        [str(python), "-c", probe], check=True, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    package_file, undo_icon, icons_render, weights = result.stdout.strip().splitlines()[-4:]
    assert Path(package_file).is_relative_to(environment)
    assert Path(undo_icon).is_relative_to(environment / "share" / "instructir-desktop" / "icons")
    assert icons_render == "True True"
    assert Path(weights).is_relative_to(environment) and Path(weights).is_file()


def unescape_exec_program(value: str) -> str:
    """The program an Exec= value runs, read the way the desktop entry spec says a shell does."""
    text = value.replace("\\\\", "\\")  # the string-level escape comes off first
    if not text.startswith('"'):
        return text.split(" ")[0]
    program, index = [], 1
    while text[index] != '"':
        if text[index] == "\\":
            index += 1
        program.append(text[index])
        index += 1
    return "".join(program)


@pytest.mark.parametrize(
    "launcher_name", ["instructir-desktop-gui", 'odd "dir" $HOME `x` \\ end/instructir-desktop-gui']
)
def test_desktop_entry_install_points_the_menu_at_this_launcher_and_remove_undoes_it(
    tmp_path: Path, launcher_name: str
) -> None:
    from instructir_desktop.cli import desktop_entry

    launcher = tmp_path / "env bin" / launcher_name
    data_home = tmp_path / "share"
    report = desktop_entry.install(data_home, launcher)
    files = desktop_entry.DesktopFiles(data_home)
    assert all(f"wrote {path}" in report for path in files.all())
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read_string(files.entry.read_text(encoding="utf-8"))
    section = entry["Desktop Entry"]
    validate_desktop_file(files.entry)
    assert unescape_exec_program(section["Exec"]) == str(launcher)
    assert section["Exec"].endswith(" %f")
    assert section["TryExec"].replace("\\\\", "\\") == str(launcher)
    assert section["Icon"] == files.icon.stem and files.icon.read_bytes().startswith(b"<svg")
    assert "*.irproject" in files.mime.read_text(encoding="utf-8")
    # The rest of the packaged entry is kept as it is.
    assert section["MimeType"] == read_desktop_entry()["MimeType"]

    assert all(
        f"removed {path}" in line for path, line in zip(files.all(), desktop_entry.remove(data_home), strict=False)
    )
    assert not any(path.exists() for path in files.all())
    assert desktop_entry.remove(data_home) == [f"nothing to remove under {data_home}"]


def test_desktop_entry_command_uses_this_environments_launcher(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from instructir_desktop.cli.main import main

    launcher = Path(sys.executable).parent / "instructir-desktop-gui"
    if not launcher.is_file():
        pytest.skip("the package's launchers are not installed in this environment")
    assert main(["desktop-entry", "install", "--data-home", str(tmp_path)]) == 0
    entry = (tmp_path / "applications" / "instructir-desktop.desktop").read_text(encoding="utf-8")
    assert f"Exec={launcher} %f" in entry
    assert "wrote" in capsys.readouterr().err
    assert main(["desktop-entry", "remove", "--data-home", str(tmp_path)]) == 0
    assert not (tmp_path / "applications" / "instructir-desktop.desktop").exists()
