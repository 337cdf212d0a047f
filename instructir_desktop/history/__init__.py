"""Undo history of a document (steps that store only what changed, capped by memory) and project files."""

from instructir_desktop.history.branches import Branch
from instructir_desktop.history.changes import (
    HistoryError,
    PatchChange,
    PreparedRestoration,
    Restoration,
    StackChange,
    prepare_restoration,
    reblend,
)
from instructir_desktop.history.history import DEFAULT_MEMORY_LIMIT, History, SavedState
from instructir_desktop.history.project import (
    FORMAT_VERSION,
    ProjectContents,
    ProjectError,
    UnsupportedProjectVersion,
    load_project,
    read_project,
    save_project,
)
from instructir_desktop.history.steps import PlannedTask, Recording, Step

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "FORMAT_VERSION",
    "Branch",
    "History",
    "HistoryError",
    "PatchChange",
    "PlannedTask",
    "PreparedRestoration",
    "ProjectContents",
    "ProjectError",
    "Recording",
    "Restoration",
    "SavedState",
    "StackChange",
    "Step",
    "UnsupportedProjectVersion",
    "load_project",
    "prepare_restoration",
    "read_project",
    "reblend",
    "save_project",
]
