"""Which files open and which can be written: names, extensions, what each format holds, and sniffing.

The content decides the format, not the extension (a PNG saved as .jpg is common), except for camera RAW,
whose many TIFF-based variants only the extension and LibRaw tell apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from instructir_desktop.io.files import FileProblem, ImageWriteError


@dataclass(frozen=True)
class FileFormat:
    name: str
    label: str
    extensions: tuple[str, ...]
    writable: bool
    lossy: bool
    depths: tuple[int, ...]  # bits per channel it can be written with


RAW_EXTENSIONS = [
    ".dng",
    ".cr2",
    ".cr3",
    ".crw",
    ".nef",
    ".nrw",
    ".arw",
    ".srf",
    ".sr2",
    ".raf",
    ".orf",
    ".rw2",
    ".rwl",
    ".pef",
    ".srw",
    ".x3f",
    ".3fr",
    ".fff",
    ".iiq",
    ".erf",
    ".kdc",
    ".dcr",
    ".mrw",
    ".mos",
    ".mef",
]

FORMATS: dict[str, FileFormat] = {
    f.name: f
    for f in (
        FileFormat("JPEG", "JPEG", (".jpg", ".jpeg", ".jpe", ".jfif"), True, True, (8,)),
        FileFormat("PNG", "PNG", (".png",), True, False, (8, 16)),
        FileFormat("TIFF", "TIFF", (".tif", ".tiff"), True, False, (8, 16)),
        FileFormat("WEBP", "WebP", (".webp",), True, True, (8,)),
        FileFormat("HEIC", "HEIC", (".heic", ".heif", ".hif"), True, True, (8,)),
        FileFormat("AVIF", "AVIF", (".avif",), True, True, (8,)),
        FileFormat("RAW", "Camera RAW", tuple(RAW_EXTENSIONS), False, False, (16,)),
    )
}
WRITE_FORMATS = {name: f for name, f in FORMATS.items() if f.writable}
_BY_EXTENSION = {ext: f.name for f in FORMATS.values() for ext in f.extensions}
READ_EXTENSIONS: frozenset[str] = frozenset(_BY_EXTENSION)
WRITE_EXTENSIONS: frozenset[str] = frozenset(ext for f in WRITE_FORMATS.values() for ext in f.extensions)

_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "HEIF": "HEIC"}
_HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs")
_AVIF_BRANDS = (b"avif", b"avis")
# Signatures of RAW files that are not TIFF inside (those that are, are known by their extension).
_RAW_SIGNATURES = (
    b"FUJIFILMCCD-RAW",
    b"IIRO",
    b"IIRS",
    b"MMOR",
    b"IIU\x00",
    b"FOVb",
    b"\x00MRM",
    b"II\x1a\x00\x00\x00HEAP",
)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def read_filter() -> str:
    """The open dialog's filter: every format that opens, then each family on its own line."""
    every = " ".join(f"*{ext}" for ext in sorted(READ_EXTENSIONS))
    families = [f"{f.label} ({' '.join('*' + e for e in f.extensions)})" for f in FORMATS.values()]
    return ";;".join([f"Images ({every})", *families])


def format_for_path(path: str | os.PathLike[str]) -> str:
    """Map a file name to the format to write, so that Save As follows the extension the user typed."""
    suffix = Path(path).suffix.lower()
    name = _BY_EXTENSION.get(suffix)
    if name is None or not FORMATS[name].writable:
        shown = f"'{suffix}'" if suffix else "no extension"
        if name == "RAW":
            reason = "camera RAW files are never written; export as .tif, .png, .jpg, .heic or .avif"
        else:
            reason = f"cannot save a file with {shown}; use .jpg, .png, .tif, .webp, .heic or .avif"
        raise ImageWriteError(path, reason)
    return name


def resolve_format(path: Path, requested: str | None) -> str:
    if requested is None:
        return format_for_path(path)
    name = _ALIASES.get(requested.upper(), requested.upper())
    if name not in WRITE_FORMATS:
        raise ImageWriteError(path, f"unknown image format '{requested}'; use JPEG, PNG, TIFF, WebP, HEIC or AVIF")
    return name


def sniff(head: bytes, suffix: str) -> str:
    """The format of a file from its first bytes (64 are plenty), or one sentence saying why it will not open."""
    suffix = suffix.lower()
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in _TIFF_MAGIC:
        return "RAW" if suffix in RAW_EXTENSIONS else "TIFF"
    if head[4:8] == b"ftyp":
        brands = [head[i : i + 4] for i in range(8, min(len(head), int.from_bytes(head[:4], "big")), 4)]
        if b"crx " in brands:
            return "RAW"
        if head[8:12] in _AVIF_BRANDS or (b"avif" in brands and not set(brands) & set(_HEIC_BRANDS)):
            return "AVIF"
        if set(brands) & {*_HEIC_BRANDS, b"mif1", b"msf1"}:
            return "HEIC"
    if head.startswith(_RAW_SIGNATURES) or suffix in RAW_EXTENSIONS:
        return "RAW"  # LibRaw has the last word on whether it is one
    other = _other_format(head)
    if other:
        raise FileProblem(f"{other} images are not supported (open JPEG, PNG, TIFF, WebP, HEIC, AVIF or camera RAW)")
    raise FileProblem("the file is not a JPEG, PNG, TIFF or WebP image, nor a HEIC, AVIF or camera RAW file")


def _other_format(head: bytes) -> str | None:
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    if head[:4] == b"8BPS":
        return "Photoshop (PSD)"
    if head[:4] == b"\xff\x4f\xff\x51" or head[4:8] == b"jP  ":
        return "JPEG 2000"
    if head[:2] == b"\xff\x0a" or head[4:12] == b"JXL \r\n\x87\n":
        return "JPEG XL"
    return None
