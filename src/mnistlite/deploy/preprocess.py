"""Any image of a digit -> a (1, 1, 28, 28) tensor prepared the way MNIST was (steps in docs/deploy.md).
Input is hostile until decoded: at most MAX_BYTES read, only FORMATS decoded, over MAX_PIXELS refused from
the header. Errors are only MnistliteError subclasses, which carry the HTTP status a server answers."""

from __future__ import annotations

import io
import math
import os
import stat
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import MnistliteError

MAX_BYTES = 20 * 1024 * 1024  # files larger than this are refused unread
MAX_PIXELS = 40_000_000  # width x height, checked from the header before decoding
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # PPM covers PBM/PGM; JPEG covers MPO
WORK_SIDE = 1024  # larger images are box-reduced to this side first: ink survives, memory stays small
MIN_CONTRAST = 0.08  # ink must differ from the background by 8% of full scale
INK_THRESHOLD = 0.25  # of the ink's peak: what counts for the bounding box
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FIT, SIDE, CENTRE = 20, 28, 14.0

Source = bytes | bytearray | memoryview | str | os.PathLike


class ImageError(MnistliteError):
    http_status = 400


class ImageTooLarge(ImageError):
    http_status = 413


class NoInk(ImageError):  # a valid image with nothing drawn on it
    http_status = 422


def read_source(src: Source) -> bytes:
    """The bytes of `src` (a path or bytes), refusing empty, huge and non-regular files."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if len(data) > MAX_BYTES:
            raise ImageTooLarge(f"image is {len(data) / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB")
    elif isinstance(src, (str, os.PathLike)):
        try:
            st = os.stat(src)
            if stat.S_ISDIR(st.st_mode):
                raise ImageError("is a directory, not an image file")
            if not stat.S_ISREG(st.st_mode):
                raise ImageError("not a regular file")
            if st.st_size > MAX_BYTES:
                raise ImageTooLarge(f"file is {st.st_size / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB")
            with open(src, "rb") as f:
                data = f.read(MAX_BYTES + 1)
        except FileNotFoundError:
            raise ImageError("no such file") from None
        except OSError as e:
            raise ImageError(f"cannot read: {e.strerror or e}") from None
        if len(data) > MAX_BYTES:  # grew while we read it
            raise ImageTooLarge(f"file is larger than the {MAX_BYTES // 2**20} MB limit")
    else:
        raise TypeError(f"preprocess_image takes bytes or a path, not {type(src).__name__}")
    if not data:
        raise ImageError("empty file: 0 bytes")
    return data


def decode_gray(data: bytes) -> np.ndarray:
    """Decode to a float32 (H, W) array in [0, 1]; light pixels high (not yet inverted)."""
    Image.init()  # registers every plugin: TIFF and WEBP are not preloaded
    try:
        with warnings.catch_warnings():
            # Odd-header warnings are ignored (the pixels decide); Pillow's pixel-limit one is an error.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise ImageTooLarge(
                        f"image is {w}x{h} = {w * h / 1e6:.0f} megapixels; the limit is {MAX_PIXELS / 1e6:.0f}"
                    )
                if w < 1 or h < 1:
                    raise ImageError(f"image has no pixels ({w}x{h})")
                img.load()
                return _gray(ImageOps.exif_transpose(img))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"image has too many pixels (limit {MAX_PIXELS / 1e6:.0f} megapixels)") from None
    except UnidentifiedImageError:
        raise ImageError(f"not an image, or not one of the supported formats ({', '.join(FORMATS)})") from None
    except MemoryError:
        raise ImageTooLarge("image too large to decode in memory") from None
    except Exception as e:  # noqa: BLE001 -- decoders of hostile bytes raise anything
        msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        if "truncated" in msg.lower():
            raise ImageError("truncated image: the file ends before its pixel data does") from None
        raise ImageError(f"corrupt image: {msg}") from None


def _reduce(img: Image.Image) -> Image.Image:
    side = max(img.size)
    return img.reduce(math.ceil(side / WORK_SIDE)) if side > WORK_SIDE else img


def _gray(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        if mode.startswith("I;16"):
            img = img.convert("I")
        arr = np.nan_to_num(np.asarray(_reduce(img), dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(arr.max(initial=0.0))
        full = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0 if top <= 65535.0 else top
        return np.clip(arr / full, 0.0, 1.0)
    if mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in img.info:
        return np.asarray(_reduce(img.convert("L")), dtype=np.float32) / 255.0
    la = np.asarray(_reduce(img.convert("RGBA").convert("LA")), dtype=np.float32) / 255.0
    gray, alpha = la[..., 0], la[..., 1]
    over_white = gray * alpha + (1.0 - alpha)
    # No contrast over white: the drawing is only in the alpha channel (e.g. white ink on a transparent canvas).
    return over_white if float(np.ptp(over_white)) >= MIN_CONTRAST else alpha


def mnist_pixels(src: Source) -> np.ndarray:
    """The 28x28 float32 image in [0, 1], white ink on black, as MNIST stores it (before normalising)."""
    v = decode_gray(read_source(src))
    border = np.concatenate([v[0], v[-1], v[:, 0], v[:, -1]])
    if float(np.median(border)) > 0.5:  # light background: dark ink on paper
        v, border = 1.0 - v, 1.0 - border
    ink = v - float(np.median(border))
    peak = float(ink.max())
    if not peak >= MIN_CONTRAST:
        raise NoInk("no digit found: the image is blank (no ink that stands out from the background)")
    ink = np.clip(ink / peak, 0.0, 1.0)
    mask = ink > INK_THRESHOLD
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = FIT / max(h, w)
    nh, nw = max(1, min(FIT, round(h * scale))), max(1, min(FIT, round(w * scale)))
    resized = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32)).resize((nw, nh), Image.Resampling.LANCZOS)
    small = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)  # LANCZOS rings slightly below 0 and above 1
    total = float(small.sum())
    if not total > 0.0:
        raise NoInk("no digit found: the ink vanished when scaled to 20x20")
    ys, xs = np.arange(nh, dtype=np.float64), np.arange(nw, dtype=np.float64)
    cy = float((small.sum(axis=1) * ys).sum() / total)
    cx = float((small.sum(axis=0) * xs).sum() / total)
    top, left = round(CENTRE - cy), round(CENTRE - cx)
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    # Paste with clipping: a lopsided digit may stick out of the 28x28 field by a pixel or two.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + nh, SIDE), min(left + nw, SIDE)
    out[y0:y1, x0:x1] = small[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def normalise(pixels: np.ndarray, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).reshape(1, 1, SIDE, SIDE)
    return (x - mean) / std


def preprocess_image(src: Source, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> torch.Tensor:
    """Image bytes or a path -> (1, 1, 28, 28) tensor; error messages leave the file name to the caller."""
    return normalise(mnist_pixels(src), mean, std)
