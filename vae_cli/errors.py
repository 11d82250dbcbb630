"""Errors that reach the user as one line on stderr instead of a traceback."""

import errno
import os


class UsageError(Exception):
    """Bad user input (flag, preset, dataset, run directory): exit code 2.

    The message is one line that names the problem and, where there is one, the fix.
    """

    exit_code = 2


class TrainingFailed(Exception):
    """A runtime failure during work that was correctly asked for (NaN loss, disk full): exit 1."""

    exit_code = 1


class Interrupted(Exception):
    """SIGINT/SIGTERM stopped the work at a safe point: exit code 128 + the signal number
    (130 for SIGINT, 143 for SIGTERM), the shell convention for "killed by that signal"."""

    def __init__(self, signum: int, message: str = ""):
        import signal

        super().__init__(message or f"interrupted by {signal.Signals(signum).name}; nothing was written")
        self.signum = signum
        self.exit_code = 128 + signum


_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full; free some space",
    errno.EDQUOT: "the disk quota is exhausted; free some space",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.EISDIR: "a folder is in the way where a file is expected",
    errno.ENOTDIR: "a file is in the way where a folder is expected",
}


def describe_os_error(e: OSError) -> str:
    """One line for an OSError met while working: what failed, on which file, what to do."""
    # h5py puts a multi-line report in the message and leaves strerror empty; errno is enough
    reason = e.strerror or (os.strerror(e.errno) if e.errno else " ".join(str(e).split())[:200])
    where = f" ({e.filename})" if e.filename else ""
    return f"{reason}{where}: {_OS_ERROR_HINTS.get(e.errno, 'check the file and its folder')}"


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception's first non-empty line (its type name when it has no text), at most `limit`
    characters: libraries such as h5py and PIL put multi-line reports in their messages."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]
