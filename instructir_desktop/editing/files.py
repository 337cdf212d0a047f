"""Opening, saving, exporting and autosaving the photo: what to read or write, on which thread,
and what counts as saved afterwards.

Large photos and projects are read and written in the background (``Background`` lanes "read" and
"write"), from snapshots that share the pixels copy-on-write, so the window stays usable. A newer
open supersedes one still being read; a failure keeps what is open and says why (``StatusMessage``);
the original photo is never written over unless asked explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from instructir_desktop.core.logs import details_hint, one_line, record_failure
from instructir_desktop.editing.background import Background, Outcome
from instructir_desktop.editing.dispatch import Dispatcher
from instructir_desktop.editing.events import (
    AssistantNote,
    FileOpened,
    FileOpeningChanged,
    Level,
    ProjectSaved,
    StatusMessage,
)
from instructir_desktop.editing.projects import (
    PROJECT_SUFFIX,
    ExportChoices,
    OpenedFile,
    PendingSave,
    autosave_attachments,
    export_job,
    load_file,
    metadata_attachments,
    project_job,
    read_recovered,
)
from instructir_desktop.editing.transcript import TRANSCRIPT_KEY, TranscriptEntry, encode_transcript
from instructir_desktop.editing.workspace import HistoryKey, Workspace
from instructir_desktop.history import History, ProjectError, SavedState
from instructir_desktop.io import READ_EXTENSIONS, ImageReadError, ImageWriteError, read_image_header

# The extensions a photo or a project can be opened from.
OPENABLE = frozenset(READ_EXTENSIONS | {PROJECT_SUFFIX})
FILE_ERRORS = (ImageReadError, ImageWriteError, ProjectError, OSError)


def about(path: Path, error: BaseException | str) -> str:
    """An error message that names the file, once."""
    return str(error) if path.name in str(error) else f"{path.name}: {error}"


def could_not_open(path: Path, error: BaseException | str) -> str:
    """What to say when opening ``path`` failed: the reason for a known failure; for anything
    unforeseen a sentence that names the file, with the traceback written to the log."""
    if isinstance(error, (str, FILE_ERRORS)):
        return about(path, error)
    if isinstance(error, MemoryError):
        return f"{path.name}: there is not enough memory to open it"
    record_failure(f"opening {path} failed", error)
    return f"{path.name} could not be opened ({type(error).__name__}: {one_line(error, 160)}); {details_hint()}"


class RecoverySlot(Protocol):
    """Where this window's autosave goes (the UI's recovery store)."""

    @property
    def path(self) -> Path | None:
        """The autosave, once written."""
        ...

    def target(self) -> Path: ...

    def discard(self) -> None: ...


@dataclass(frozen=True, eq=False)
class _PendingOpen:
    """A file being read in the background, and what was open when it was asked for."""

    path: Path
    history: History | None
    state: SavedState | None


class Files:
    # Photos larger than this are opened, saved and exported in the background, and so are
    # projects whose file is larger than ``large_project_bytes``.
    large_photo_pixels = 1_000_000
    large_project_bytes = 4_000_000

    def __init__(self, workspace: Workspace, background: Background, dispatcher: Dispatcher) -> None:
        self._workspace = workspace
        self._background = background
        self._dispatcher = dispatcher
        self._pending_open: _PendingOpen | None = None
        self._autosaved: HistoryKey | None = None  # what the autosave holds (see ``autosave``)
        # Asked when a file read in the background arrives after the person did unsaved work
        # meanwhile: True lets the new file replace it. Whoever can ask the person sets it.
        self.confirm_discard: Callable[[], bool] = lambda: True
        # The conversation about the open photo, saved with its project (the session sets it).
        self.transcript: Callable[[], tuple[TranscriptEntry, ...]] = lambda: ()

    def _say(self, text: str, level: Level = Level.INFO, seconds: float | None = 8.0) -> None:
        self._dispatcher.emit(StatusMessage(text, level, seconds))

    # ------------------------------------------------------------------ opening

    @property
    def opening(self) -> bool:
        """A file is being read in the background and has not been shown yet."""
        return self._pending_open is not None

    def is_large_file(self, path: Path) -> bool:
        try:
            if path.suffix.lower() == PROJECT_SUFFIX:
                return path.stat().st_size > self.large_project_bytes
            header = read_image_header(path)
        except (ImageReadError, OSError):
            return False  # read in the foreground, which says what is wrong with it
        return bool(header.width * header.height > self.large_photo_pixels)

    def open(self, path: Path, *, background: bool | None = None) -> bool:
        """Open a photo or a project; on failure say why and keep what is open.

        ``background`` None reads large files in the background: True then means the file is being
        opened (``opening``); a message says when it shows, or why it could not be opened.
        """
        if background is None:
            background = self.is_large_file(path)
        self.end_pending_open()
        if not background:
            try:
                opened = load_file(path)
            except Exception as error:  # the boundary: one sentence, and the photo that is open stays
                self._say(could_not_open(path, error), Level.WARNING, None)
                return False
            self._show_opened(path, opened)
            return True
        pending = _PendingOpen(path, self._workspace.history, self._workspace.saved_state())
        self._pending_open = pending
        self._dispatcher.emit(FileOpeningChanged(True))
        self._background.submit("read", lambda: load_file(path), lambda outcome: self._read(pending, outcome))
        self._say(f"Opening {path.name}…", seconds=None)
        return True

    def end_pending_open(self) -> None:
        """A file still being read is dropped when it arrives."""
        if self._pending_open is not None:
            self._pending_open = None
            self._dispatcher.emit(FileOpeningChanged(False))

    def _read(self, pending: _PendingOpen, outcome: Outcome[OpenedFile]) -> None:
        if pending is not self._pending_open:
            return  # superseded by a newer open, or the window is closing
        self.end_pending_open()
        if outcome.error is not None or outcome.value is None:
            self._say(could_not_open(pending.path, outcome.error or "could not be read"), Level.WARNING, None)
            return
        # Work done on the open photo while the file was read was not part of the "discard?"
        # answer: ask again before it goes.
        workspace = self._workspace
        changed = workspace.history is not pending.history or workspace.saved_state() != pending.state
        if changed and workspace.unsaved_work and not self.confirm_discard():
            self._say(f"Did not open {pending.path.name}")
            return
        self._show_opened(pending.path, outcome.value)

    def _show_opened(self, path: Path, opened: OpenedFile) -> None:
        self._workspace.adopt(opened)
        self._autosaved = None
        document = self._workspace.document
        assert document is not None
        self._dispatcher.emit(FileOpened(path))
        self._say(f"Opened {path.name}: {document.width} × {document.height}")
        for notice in opened.notices:  # what reading dropped or changed: said once, in the chat
            self._dispatcher.emit(AssistantNote(f"{path.name}: {notice}"))

    def recover(self, path: Path) -> bool:
        """Reopen an autosave as it was (unsaved, with its source and project paths). Raises
        ProjectError or OSError; what is open is kept then."""
        self._workspace.adopt(read_recovered(path))
        return True

    def mark_autosaved(self) -> None:
        """The autosave file holds the work as it is now (a recovered autosave, adopted)."""
        self._autosaved = self._workspace.history_key

    # ------------------------------------------------------------------ names

    def is_original(self, path: Path) -> bool:
        source = self._workspace.path
        return source is not None and source.suffix.lower() != PROJECT_SUFFIX and path.resolve() == source.resolve()

    def folder(self) -> Path:
        path = self._workspace.path
        return path.parent if path else Path.home()

    def suggested_export(self, suffix: str) -> Path:
        """``<folder>/<stem>-restored<suffix>``, beside the photo it came from."""
        source = self._workspace.path
        stem = source.stem if source is not None else "untitled"
        return self.folder() / f"{stem}-restored{suffix}"

    # ------------------------------------------------------------------ writing

    @property
    def writing(self) -> bool:
        """An autosave, save or export is being written in the background."""
        return self._background.busy("write")

    def wait_for_writes(self, timeout: float | None = 120.0) -> None:
        """Block until what is being written has been written and accounted for (before closing,
        deleting, tests)."""
        self._background.finish("write", timeout)

    def _large_document(self) -> bool:
        document = self._workspace.document
        return document is not None and document.height * document.width > self.large_photo_pixels

    def export(
        self,
        path: Path,
        choices: ExportChoices | None = None,
        *,
        replace_original: bool = False,
        background: bool | None = None,
    ) -> bool:
        """Write the current image with the source's metadata. Never the original, unless asked explicitly.

        ``choices`` None keeps the source's depth, metadata and profile. ``background`` None writes
        large photos in the background: True then means the export started.
        """
        history = self._workspace.history
        if history is None:
            return False
        if self.is_original(path) and not replace_original:
            self._say(f"{path.name} is the original photo; choose another name to export to.", Level.WARNING, None)
            return False
        job = export_job(history, self._workspace.metadata, path, choices or ExportChoices())
        pending = PendingSave(history, history.saved_state())
        return self._write(
            job,
            lambda error: self._exported(path, pending, error),
            background=self._large_document() if background is None else background,
            busy_message=f"Exporting {path.name}…",
        )

    def _exported(self, path: Path, pending: PendingSave, error: str) -> None:
        if error:
            self._say(about(path, error), Level.WARNING, None)
            return
        self._workspace.mark_exported(pending.history, pending.state, path)
        unsaved = " (the history and layers are kept only in a project: Save Project keeps them)"
        self._say(f"Exported {path.name}" + (unsaved if self._workspace.unsaved_work else ""))

    def save_project(self, path: Path) -> bool:
        """Save the project (True: saved, or for a large photo, being saved in the background).
        The work counts as saved once the file is complete, and only the state it holds."""
        history = self._workspace.history
        if history is None:
            return False
        job = project_job(history, path, self._attachments(metadata_attachments(self._workspace.metadata)))
        pending = PendingSave(history, history.saved_state())
        return self._write(
            job,
            lambda error: self._saved(path, pending, error),
            background=self._large_document(),
            busy_message=f"Saving {path.name}…",
        )

    def _saved(self, path: Path, pending: PendingSave, error: str) -> None:
        if error:
            self._say(about(path, error), Level.WARNING, None)
            return
        self._workspace.mark_saved(pending.history, pending.state, project_path=path)
        self._dispatcher.emit(ProjectSaved(path))
        self._say(f"Saved {path.name}")

    def _write(
        self, job: Callable[[], object], done: Callable[[str], None], *, background: bool, busy_message: str
    ) -> bool:
        """Run a save or export ``job``, then ``done`` with its error ("" for none). In the
        background: True means it started, and ``busy_message`` shows meanwhile."""
        if self.writing:
            self.wait_for_writes()  # one writer at a time; an autosave is short
        if background:
            self._say(busy_message, seconds=None)
            self._background.submit("write", job, lambda outcome: done(_error_text(outcome)))
            return True
        try:
            job()
        except (ImageWriteError, OSError) as error:
            done(str(error))
            return False
        done("")
        return True

    # ------------------------------------------------------------------ autosave

    def autosave(self, slot: RecoverySlot, busy: bool) -> bool:
        """Write the recovery file if there is unsaved work that changed since the last autosave.

        Skipped while a run is ``busy`` (the loop's thread stays free for it; the next tick catches
        up). A document with nothing unsaved needs no recovery file: it is deleted.
        """
        workspace = self._workspace
        if not workspace.modified or workspace.history is None:
            self.wait_for_writes()  # or a write still running would bring the file back
            if slot.path is not None:
                slot.discard()
            self._autosaved = None
            return False
        if busy or self.writing:
            return False
        key = workspace.history_key
        if key == self._autosaved and slot.path is not None:
            return False
        try:
            extra = self._attachments(autosave_attachments(workspace.metadata, workspace.path, workspace.project_path))
            job = project_job(workspace.history, slot.target(), extra)
        except (OSError, ValueError) as error:
            self._say(f"Autosave failed: {error}")
            return False
        # Compressing and writing a 24 MP project takes seconds: that happens in the background,
        # from a snapshot that shares the pixels copy-on-write, so the window never waits for it.
        self._autosaved = key
        self._background.submit("write", job, lambda outcome: self._autosave_finished(key, _error_text(outcome)))
        return True

    def _attachments(self, extra: dict[str, bytes]) -> dict[str, bytes]:
        """``extra`` and the conversation about the photo, when there is one."""
        transcript = self.transcript()
        if transcript:
            extra[TRANSCRIPT_KEY] = encode_transcript(transcript)
        return extra

    def _autosave_finished(self, key: HistoryKey | None, error: str) -> None:
        if not error:
            return
        if self._autosaved == key:
            self._autosaved = None  # try again at the next tick
        self._say(f"Autosave failed: {error}")

    def close(self) -> None:
        """Stop reading; let writes end (what they write is part of what the person expects)."""
        self.end_pending_open()
        with contextlib.suppress(RuntimeError):
            self.wait_for_writes()


def _error_text(outcome: Outcome[object]) -> str:
    error = outcome.error
    if error is None:
        return ""
    return str(error) or type(error).__name__
