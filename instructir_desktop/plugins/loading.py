"""Importing a plugin's code: the same steps in the application's process (built-in plugins) and in
the worker process that runs third-party actions."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType


@dataclass(frozen=True)
class PluginCode:
    """Where an action's function is: enough to import it in any process, and nothing to pickle
    that the worker could not rebuild."""

    plugin_id: str
    module: str  # the module holding the functions ("" for a folder plugin: its package)
    function: str
    folder: str | None = None  # a user-folder plugin's folder; None: an importable package

    def label(self) -> str:
        return self.module or (Path(self.folder).name if self.folder else self.plugin_id)


def import_module(code: PluginCode) -> ModuleType:
    """The module holding ``code.function``; whatever the import raises is the plugin's to report."""
    if code.folder is not None:
        return import_from_folder(Path(code.folder), code.module)
    return importlib.import_module(code.module)


def import_from_folder(folder: Path, module_name: str) -> ModuleType:
    """Import a user-folder plugin under a private name so two folders cannot collide."""
    # Keyed by the full path: two user folders may both hold a plugin called "tools".
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    private = f"_instructir_user_plugin_{folder.name}_{digest}"
    if private in sys.modules:
        package = sys.modules[private]
    else:
        spec = importlib.util.spec_from_file_location(
            private, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"{folder} is not a Python package (no __init__.py)")
        package = importlib.util.module_from_spec(spec)
        sys.modules[private] = package
        try:
            spec.loader.exec_module(package)
        except BaseException:
            del sys.modules[private]
            raise
    if module_name in ("", folder.name):
        return package
    relative = module_name.split(".", 1)[1] if module_name.startswith(folder.name + ".") else module_name
    return importlib.import_module(f"{private}.{relative}")
