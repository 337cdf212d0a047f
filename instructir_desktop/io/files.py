"""File access for the image readers and writers: one-sentence errors, and writes that never leave half a file."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path


def one_line(text: object) -> str:
    return " ".join(str(text).split())


class _FileError(Exception):
    """``str()`` is one line naming the file, fit to show the user as is."""

    def __init__(self, path: str | os.PathLike[str] | None, reason: str) -> None:
        # args keeps both parts so the exception survives pickling to and from worker processes.
        super().__init__(path, reason)
        self.path = Path(path) if path is not None else None
        self.reason = one_line(reason)

    def __str__(self) -> str:
        shown = "image" if self.path is None else (self.path.name or str(self.path))
        return f"{shown}: {self.reason}"


class ImageReadError(_FileError):
    """A picture could not be read."""


class ImageWriteError(_FileError):
    """A picture could not be saved."""


class FileProblem(Exception):
    """Internal: why a file cannot be decoded or encoded, as one user-facing phrase; the file name is added later."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def corrupt(detail: str | None = None) -> FileProblem:
    return FileProblem(f"the file is truncated or corrupt ({detail})" if detail else "the file is truncated or corrupt")


def unsupported(what: str) -> FileProblem:
    return FileProblem(f"{what} is not supported")


def too_large(width: int, height: int, limit: int, whose: str = "the limit") -> FileProblem:
    return FileProblem(
        f"the image is too large to open safely ({width}×{height} = {width * height:,} pixels; {whose} is "
        f"{limit:,}; it can be raised in Settings or with --max-pixels)"
    )


def read_input(path: Path) -> bytes:
    """The file's bytes, turning every way a path can fail to be a readable file into one clear sentence."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "the file does not exist") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open the file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageReadError(path, "this is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(path, "this is not a regular file")
    if info.st_size == 0:
        raise ImageReadError(path, "the file is empty")
    try:
        return path.read_bytes()
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read the file ({exc.strerror or exc})") from None


def atomic_write(path: Path, payload: bytes) -> None:
    """Write beside the target and rename over it, so a failure never leaves half a file or loses the old one."""
    if path.is_symlink():
        # Replace what the link points to, not the link itself (which would silently turn it into a copy).
        shown = path
        try:
            path = path.resolve(strict=True)
        except OSError as exc:
            raise ImageWriteError(shown, f"the link points to a missing file ({exc.strerror or exc})") from exc
    folder = path.parent
    if path.is_dir():
        raise ImageWriteError(path, "a folder with this name already exists")
    if not folder.is_dir():
        raise ImageWriteError(path, f"the folder '{folder}' does not exist")
    existing_mode = None
    try:
        existing_mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write the file ({exc.strerror or exc})") from exc
    if existing_mode is not None and not os.access(path, os.W_OK):
        raise ImageWriteError(path, "the file is read-only")
    temp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except PermissionError as exc:
        raise ImageWriteError(path, "permission denied: cannot write in this folder") from exc
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write the file ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        if existing_mode is not None:
            os.chmod(temp, existing_mode)
        os.replace(temp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(exc, OSError):
            raise ImageWriteError(path, f"cannot write the file ({exc.strerror or exc})") from exc
        raise
