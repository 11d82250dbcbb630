"""Fault injection shared by the reliability tests: a disk that fills up on demand, a read-only
folder, file hashing to prove that nothing existing was changed, and a command's exit code.

Root can write anywhere, so permissions cannot be tested with chmod when the tests run as root.
Where `mount` works (root in a container with CAP_SYS_ADMIN) a real tmpfs is used: filled up
for ENOSPC, mounted read-only for EROFS. Elsewhere the same errors are raised by patching the
one place every write goes through (vae_cli.atomic.atomic_path), and `real` says which ran.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root (symlinks by their target text)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path)] = "link:" + os.readlink(path)
        elif path.is_file():
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _mount(folder: Path, options: str) -> bool:
    if os.geteuid() != 0 or os.environ.get("VAE_CLI_TEST_NO_MOUNT"):  # the latter tests the fallback
        return False
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


class FullDisk:
    """A folder whose file system can be filled (`fill`) and emptied (`free`)."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch):
        self.folder = folder
        self.real = _mount(folder, "size=16m")
        self._filler = folder / "filler.bin"
        self._full = False
        if not self.real:
            import vae_cli.atomic as atomic

            original = atomic.atomic_path

            @contextlib.contextmanager
            def atomic_path_or_enospc(path):
                with original(path) as tmp:
                    yield tmp
                    if self._full:  # as if the data written to tmp did not fit
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

            for module in [m for name, m in sys.modules.items() if name.startswith("vae_cli")]:
                if getattr(module, "atomic_path", None) is original:
                    monkeypatch.setattr(module, "atomic_path", atomic_path_or_enospc)

    def fill(self) -> None:
        self._full = True
        if self.real:
            with open(self._filler, "wb") as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * (1 << 16))

    def free(self) -> None:
        self._full = False
        if self.real:
            self._filler.unlink(missing_ok=True)

    def close(self) -> None:
        if self.real:
            _umount(self.folder)


@contextlib.contextmanager
def full_disk(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
    folder.mkdir(parents=True, exist_ok=True)
    disk = FullDisk(folder, monkeypatch)
    try:
        yield disk
    finally:
        disk.close()


@contextlib.contextmanager
def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[bool]:
    """Make `folder` unwritable for everyone (root included); yields True for a real mount."""
    folder.mkdir(parents=True, exist_ok=True)
    if _mount(folder, "ro,size=1m"):
        try:
            yield True
        finally:
            _umount(folder)
        return
    real_access, real_mkstemp = os.access, __import__("tempfile").mkstemp
    inside = str(folder.resolve())

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and str(Path(path).resolve()).startswith(inside):
            return False
        return real_access(path, mode, *args, **kwargs)

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and str(Path(dir).resolve()).startswith(inside):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr("vae_cli.atomic.tempfile.mkstemp", mkstemp)
    yield False


def exit_code(main, argv) -> int:
    """A command's exit code, whether argparse exits (SystemExit) or main returns it."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code
