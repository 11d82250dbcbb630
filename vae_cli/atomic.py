"""Atomic file writes: a kill at any moment leaves the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by the owner only; run files should get the usual permissions.
_FILE_MODE = 0o666 & ~_umask()


def _fsync(path: Path, *, directory: bool = False) -> None:
    """Flush to disk, so a power cut after the rename cannot leave an empty file behind it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some filesystems cannot fsync a directory; the rename still holds
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffixes); rename it over `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        # Flushing before replacing an existing file keeps its old content safe even from a
        # power cut; a new file has no old content to lose, and skipping the flush keeps bulk
        # writes (100,000 sample PNGs) fast.
        replacing = path.exists()
        if replacing:
            _fsync(tmp)
        os.replace(tmp, path)
        if replacing:
            _fsync(path.parent, directory=True)
    except OSError as e:
        if e.filename in (None, str(tmp)):  # name the file the user knows (a failed write names none)
            e.filename = str(path)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `path`; on success rename it to `path`, which must
    be absent or an empty folder (a folder that gained files meanwhile raises OSError ENOTEMPTY).
    On any failure the temporary folder is removed: `path` holds all the files or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's folder is private to its owner
        os.rename(tmp, path)  # POSIX rename replaces an empty folder, never a non-empty one
    except OSError as e:
        if e.filename in (None, str(tmp)):
            e.filename = str(path)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after the rename


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
