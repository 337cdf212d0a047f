"""Where an installed package's data files live, and where this checkout's live.

pyproject.toml's data-files put the icons and the desktop files under ``<data>/share``: the
environment's data folder (the venv or the system prefix) or, after ``pip install --user``, the
user's. A checkout (or an editable install) keeps them at the top of the repository instead.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

CHECKOUT_ROOT = Path(__file__).resolve().parents[2]


def installed_share_folders() -> list[Path]:
    """The ``share`` folders an installed wheel may have written to, most specific first."""
    roots = [sysconfig.get_path("data"), sysconfig.get_path("data", sysconfig.get_preferred_scheme("user"))]
    return [Path(root) / "share" for root in dict.fromkeys(roots)]
