"""Fetching missing data files from the public mirrors, into a temporary file renamed into place
once the md5 matches: an interrupted or corrupted download never passes for a good file."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import MnistliteError
from .sources import DatasetSpec

TIMEOUT_S = 10.0  # offline machines should fail in seconds, not minutes
_CHUNK = 1 << 16


def find_file(folder: Path, name: str) -> Path | None:
    """`<folder>/<name>` or `<folder>/<name>.gz`, plain first (it reads faster)."""
    return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)


def missing_files_error(spec: DatasetSpec, root: str | Path, missing: list[str], why: str) -> MnistliteError:
    files = ", ".join(f.name for f in spec.files)
    message = (
        f"{spec.name} files missing: {', '.join(missing)} ({why}). Put the four files ({files}, plain or .gz) in "
        f"{Path(root) / spec.folder}, or point --data-dir or the MNISTLITE_DATA environment variable at a folder "
        f"that has {spec.folder}/ with them."
    )
    return MnistliteError(message.replace("\n", " "))


def _stream(url: str, out) -> str:
    """Copy the response body into `out`; return its md5."""
    md5 = hashlib.md5()
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        name = url.rsplit("/", 1)[-1]
        # disable=None: no bar when stderr is not a terminal (CI logs).
        with tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False, disable=None) as bar:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                md5.update(chunk)
                bar.update(len(chunk))
    return md5.hexdigest()


def download_file(url: str, dest: str | Path, md5: str | None) -> Path:
    """Download `url` to `dest` atomically, checking the md5 of what arrived."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise MnistliteError(f"{dest.parent}: cannot write there ({exc.strerror or exc})") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _stream(url, out)
        if md5 and got != md5.lower():
            raise MnistliteError(f"{url}: md5 mismatch (got {got}, expected {md5}); the mirror served a bad file")
        os.replace(tmp, dest)  # atomic on one file system
    # URLError/timeouts are OSErrors; a connection cut mid-body is an HTTPException.
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise MnistliteError(f"{url}: download failed ({_reason(exc)})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def ensure_files(spec: DatasetSpec, root: str | Path) -> dict[str, Path]:
    """Base name -> path for the four files in `<root>/<spec.folder>`, downloading the missing ones."""
    folder = Path(root) / spec.folder
    found: dict[str, Path] = {}
    for f in spec.files:
        path = find_file(folder, f.name)
        error = "no mirrors configured"
        for mirror in spec.mirrors if path is None else ():  # in order, until one serves the file
            try:
                path = download_file(f"{mirror}{f.name}.gz", folder / f"{f.name}.gz", f.md5_gz)
                break
            except MnistliteError as exc:
                error = str(exc)
        if path is None:
            # Stop at the first file no mirror serves: when offline, trying the rest would only multiply the timeouts.
            missing = [g.name for g in spec.files if find_file(folder, g.name) is None]
            raise missing_files_error(spec, root, missing, f"no mirror could serve {f.name}.gz; last error: {error}")
        found[f.name] = path
    return found
