"""Reader for MNIST's IDX files (no torchvision): big-endian, two zero bytes, a type byte (0x08 = uint8, the only one
used), a dim count, a uint32 per dim, the payload; as one number the first four bytes are 2051 (images), 2049 (labels).
Every fault a user can cause is one MnistliteError line naming the file; anything else escaping is a bug."""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import MnistliteError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SIDE = 28
NUM_CLASSES = 10

_UINT8 = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_KIND = {IMAGES_MAGIC: "images, idx3", LABELS_MAGIC: "labels, idx1"}
_REFETCH = "delete it and download it again (or copy a fresh one)"


def _fault(path: Path, what: str) -> MnistliteError:
    # Paths with odd characters must not break the one-line contract.
    return MnistliteError(f"{path}: {what}".replace("\n", " "))


def load_bytes(path: str | Path) -> bytes:
    """The file's decompressed bytes; gzip is recognised by name or by content."""
    path = Path(path)
    if not path.exists():
        raise _fault(path, "file not found")
    try:
        data = path.read_bytes()
    except OSError as exc:  # a directory, no permission, I/O error
        raise _fault(path, f"cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise _fault(path, "file is empty")
    # IDX starts with two zero bytes, so sniffing gzip's magic also finds a compressed file saved without ".gz".
    if path.suffix == ".gz" or data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        # Damaged gzip shows up as any of these (BadGzipFile is an OSError).
        except (OSError, zlib.error, EOFError, struct.error, ValueError) as exc:
            raise _fault(path, f"corrupt gzip file ({exc}); {_REFETCH}") from exc
        if not data:
            raise _fault(path, "file is empty after decompression")
    return data


def _parse_header(path: Path, data: bytes, expected_magic: int | None) -> tuple[tuple[int, ...], int]:
    """(dims, payload offset) after checking the header fits and makes sense."""
    if len(data) < 4:
        raise _fault(path, f"truncated header ({len(data)} bytes, need at least 4); {_REFETCH}")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        got = f"{magic} (0x{magic:08x}" + (f", {_KIND[magic]})" if magic in _KIND else ")")
        want = f"{expected_magic} ({_KIND[expected_magic]})"
        raise _fault(path, f"wrong magic number {got}: expected {want}; is this the right file?")
    if data[0] or data[1]:
        raise _fault(path, f"not an IDX file (magic 0x{magic:08x}, must start with two zero bytes)")
    if data[2] != _UINT8:
        raise _fault(path, f"unsupported IDX element type 0x{data[2]:02x} (only 0x08, unsigned byte)")
    ndim = data[3]
    end = 4 + 4 * ndim
    if len(data) < end:
        raise _fault(path, f"truncated header ({len(data)} bytes, {ndim} dims need {end}); {_REFETCH}")
    return struct.unpack(f">{ndim}I", data[4:end]), end


def _decode(path: str | Path, expected_magic: int | None, expected_sha256: str | None) -> np.ndarray:
    path = Path(path)
    data = load_bytes(path)
    dims, offset = _parse_header(path, data, expected_magic)
    need, have, shape = math.prod(dims), len(data) - offset, "x".join(map(str, dims))
    if have < need:
        raise _fault(path, f"truncated: dims {shape} need {need} data bytes, file has {have}; {_REFETCH}")
    if have > need:
        raise _fault(path, f"{have - need} bytes of trailing garbage after the {shape} data; {_REFETCH}")
    # Structure first: "truncated" or "wrong magic" tells more than a bare hash mismatch.
    if expected_sha256 and (got := hashlib.sha256(data).hexdigest()) != expected_sha256.lower():
        raise _fault(
            path,
            f"checksum mismatch: sha256 of the decompressed data is {got[:12]}..., "
            f"expected {expected_sha256[:12]}...; the file is damaged or not the official one, {_REFETCH}",
        )
    # A zero-copy, read-only view: callers that cache it cannot mutate it.
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Any uint8 IDX file (plain or .gz) as an array shaped by its header."""
    return _decode(path, None, None)


def read_images(path: str | Path, expected_sha256: str | None = None) -> np.ndarray:
    """An idx3 image file as uint8 (N, 28, 28)."""
    images = _decode(path, IMAGES_MAGIC, expected_sha256)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        h, w = images.shape[1:]
        raise _fault(Path(path), f"wrong image dimensions {h}x{w}: expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    return images


def read_labels(path: str | Path, expected_sha256: str | None = None) -> np.ndarray:
    """An idx1 label file as uint8 (N,), every label in 0-9."""
    labels = _decode(path, LABELS_MAGIC, expected_sha256)
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        what = f"label {int(labels[i])} at index {i} is outside 0-{NUM_CLASSES - 1} ({bad.size} bad labels in all)"
        raise _fault(Path(path), what)
    return labels
