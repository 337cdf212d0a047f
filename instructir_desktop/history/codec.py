"""Compact, exact storage of float32 pixel arrays for the history and project files.

Precision: the history keeps the document on a 16-bit grid (values k / 65535). Every array the
history writes into the document is first snapped to that grid (``snap``), which moves a value by at
most 0.5 / 65535 ≈ 7.6e-6: a quarter of the step a 16-bit PNG/TIFF export can represent, far below
anything visible, and the same precision the image files we write keep. In return everything the
history stores is exact at half the size of float32: compressed 16-bit words (or 8-bit ones for
pixels still exactly as read from an 8-bit file). Photos in float32 bytes compress poorly (their low
mantissa bits are noise), so float32 + zlib would cost roughly twice the memory of this.

Nothing is ever rounded here: each chunk uses the narrowest encoding that reproduces it bit for
bit (8-bit, 16-bit, or the float32 bytes themselves, say for a photo read from a floating-point
file that no step has touched yet), so decoding always gives back exactly what was encoded.

Arrays are split into chunks of whole rows, each quantised and compressed separately: the
temporary arrays stay a few MB even for a 24 MP layer, and the chunks compress on several threads
(numpy, zlib and zstd release the GIL). 16-bit words are stored as "u16dz": each row as differences
from its left neighbour, the high bytes then the low bytes, compressed with zstd (imagecodecs):
about five times faster than zlib on the 16-bit words and a tenth smaller, which matters because
every step of a large photo is compressed before it can be undone. Chunks written as plain zlib
"u16" (older projects) still decode.

Equal arrays are held once: a history stores the same pixels again and again (a step's "before" is
the step before's result), so ``encode`` hands back the ``EncodedArray`` already alive for the same
content instead of a second copy of its bytes.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import imagecodecs
import numpy as np

GRID = 65535
ENCODINGS = ("u8", "u16", "f32", "u16dz")
ITEM_SIZE = {"u8": 1, "u16": 2, "f32": 4, "u16dz": 2}
# Level 1: on photo data, higher levels save a few percent and take two to four times as long.
_ZLIB_LEVEL = 1
_ZSTD_LEVEL = 1
_CHUNK_VALUES = 1 << 20
_GRID_F32 = np.float32(GRID)
_U8_STEP = GRID // 255  # 257: a 16-bit value k·257 is exactly the 8-bit value k

_T = TypeVar("_T")
_R = TypeVar("_R")
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
# Every live encoded array, by its content: equal content is handed out as the same object.
_alive: weakref.WeakValueDictionary[bytes, EncodedArray] = weakref.WeakValueDictionary()
_alive_lock = threading.Lock()


def _parallel_map(function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    global _pool
    if len(items) < 2:
        return [function(item) for item in items]
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="history-codec")
    return list(_pool.map(function, items))


def snap(values: np.ndarray) -> np.ndarray:
    """A new float32 array of ``values`` clipped to [0, 1] and rounded to the 16-bit grid (NaN → 0)."""
    source = np.asarray(values, dtype=np.float32)
    if source.ndim == 0:
        return _snap_block(source)
    out = np.empty(source.shape, dtype=np.float32)
    rows = _rows_per_chunk(source.shape)

    def work(start: int) -> None:
        out[start : start + rows] = _snap_block(source[start : start + rows])

    _parallel_map(work, range(0, source.shape[0], rows))
    return out


def _snap_block(block: np.ndarray) -> np.ndarray:
    return _dequantise(_quantise(block))


def _quantise(block: np.ndarray) -> np.ndarray:
    scaled = np.nan_to_num(block * _GRID_F32, nan=0.0)
    np.clip(scaled, 0.0, _GRID_F32, out=scaled)
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint16)


def _dequantise(words: np.ndarray) -> np.ndarray:
    # The same float32 division the image reader uses, so an 8-bit k decodes to exactly k / 255.
    return np.divide(words, _GRID_F32, dtype=np.float32)


def _rows_per_chunk(shape: tuple[int, ...]) -> int:
    row_values = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    return max(1, _CHUNK_VALUES // max(1, row_values))


@dataclass(frozen=True, eq=False)
class EncodedArray:
    """A float32 array stored as zlib-compressed chunks of whole rows, each in its own encoding."""

    shape: tuple[int, ...]
    rows_per_chunk: int
    chunks: tuple[tuple[str, bytes], ...]

    @property
    def nbytes(self) -> int:
        """Bytes held: the compressed data (the few bytes of bookkeeping are left out)."""
        return sum(len(data) for _, data in self.chunks)

    @property
    def decoded_nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    def chunk_shapes(self) -> list[tuple[int, ...]]:
        return list(_chunk_shapes(self.shape, self.rows_per_chunk))


def _chunk_shapes(shape: tuple[int, ...], rows: int) -> Iterable[tuple[int, ...]]:
    for start in range(0, shape[0], rows):
        yield (min(rows, shape[0] - start), *shape[1:])


def encode(values: np.ndarray) -> EncodedArray:
    """Store ``values`` (a float array of one or more dimensions, read as float32) exactly and compactly."""
    source = np.asarray(values, dtype=np.float32)
    if source.ndim == 0:
        raise ValueError("cannot store a single number as pixels")
    rows = _rows_per_chunk(source.shape)

    def work(start: int) -> tuple[str, bytes]:
        return _encode_block(source[start : start + rows])

    chunks = _parallel_map(work, range(0, source.shape[0], rows)) if source.shape[0] else []
    return shared(EncodedArray(tuple(int(side) for side in source.shape), rows, tuple(chunks)))


def content_digest(array: EncodedArray) -> bytes:
    """Identifies an array's stored form: its shape, chunking and every chunk's encoding and bytes."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(
        repr((array.shape, array.rows_per_chunk, [(name, len(data)) for name, data in array.chunks])).encode()
    )
    for _, data in array.chunks:
        digest.update(data)
    return digest.digest()


def shared(array: EncodedArray) -> EncodedArray:
    """The live array with ``array``'s content if there is one (its bytes are then held once), else ``array``."""
    key = content_digest(array)
    with _alive_lock:
        existing = _alive.get(key)
        if existing is not None:
            return existing
        _alive[key] = array
        return array


def _encode_block(block: np.ndarray) -> tuple[str, bytes]:
    words = _quantise(block)
    if np.array_equal(_dequantise(words), block):
        if not np.any(words % _U8_STEP):
            return "u8", zlib.compress((words // _U8_STEP).astype(np.uint8).tobytes(), _ZLIB_LEVEL)
        return "u16dz", bytes(imagecodecs.zstd_encode(_shuffled_differences(words), _ZSTD_LEVEL))
    return "f32", zlib.compress(np.ascontiguousarray(block, dtype="<f4").tobytes(), _ZLIB_LEVEL)


def _row_axis(words: np.ndarray) -> int:
    return 1 if words.ndim >= 2 else 0


def _shuffled_differences(words: np.ndarray) -> bytes:
    """Each value minus its left neighbour (mod 2^16), then all high bytes, then all low bytes:
    neighbouring pixels are alike, so the high bytes become mostly zeros zstd packs tightly."""
    differences = np.diff(
        words, axis=_row_axis(words), prepend=np.zeros_like(words[:1] if words.ndim < 2 else words[:, :1])
    )
    little = differences.astype("<u2", copy=False)
    return little.view(np.uint8).reshape(-1, 2).T.tobytes()


def _unshuffled_sums(raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(2, -1)
    differences = (planes[0].astype(np.uint16) | (planes[1].astype(np.uint16) << 8)).reshape(shape)
    return np.cumsum(differences, axis=_row_axis(differences), dtype=np.uint16)


def decode(encoded: EncodedArray) -> np.ndarray:
    """The exact float32 array that was encoded.

    Raises ValueError when the data does not match its description (a damaged project file).
    """
    if not encoded.shape or encoded.rows_per_chunk < 1 or any(side < 0 for side in encoded.shape):
        raise ValueError(f"stored pixels are damaged: impossible shape {encoded.shape}")
    shapes = encoded.chunk_shapes()
    if len(shapes) != len(encoded.chunks) or any(name not in ENCODINGS for name, _ in encoded.chunks):
        raise ValueError("stored pixels are damaged: their chunks do not match their shape")
    out = np.empty(encoded.shape, dtype=np.float32)
    starts = [index * encoded.rows_per_chunk for index in range(len(shapes))]

    def work(index: int) -> None:
        name, data = encoded.chunks[index]
        shape = shapes[index]
        out[starts[index] : starts[index] + shape[0]] = _decode_block(name, data, shape)

    _parallel_map(work, range(len(shapes)))
    return out


def _decode_block(name: str, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    expected = int(np.prod(shape, dtype=np.int64)) * ITEM_SIZE[name]
    if name == "u16dz":
        try:
            # Never more than the shape promises: a damaged or hostile file cannot balloon.
            raw = bytes(imagecodecs.zstd_decode(data, out=expected)) if expected else b""
        except imagecodecs.ZstdError as error:
            raise ValueError(f"stored pixels are damaged: {error}") from None
        if len(raw) != expected:
            raise ValueError("stored pixels are damaged: their size does not match their shape")
        return _dequantise(_unshuffled_sums(raw, shape))
    try:
        inflater = zlib.decompressobj()
        # Never inflate more than the shape promises: a damaged or hostile file cannot balloon.
        raw = inflater.decompress(data, expected)
        complete = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
    except zlib.error as error:
        raise ValueError(f"stored pixels are damaged: {error}") from None
    if len(raw) != expected or not complete:
        raise ValueError("stored pixels are damaged: their size does not match their shape")
    if name == "u8":
        words = np.frombuffer(raw, dtype=np.uint8).astype(np.uint16) * np.uint16(_U8_STEP)
        return _dequantise(words).reshape(shape)
    if name == "u16":
        return _dequantise(np.frombuffer(raw, dtype="<u2")).reshape(shape)
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
