"""Errors that reach the user as one line on stderr instead of a traceback."""


class UsageError(Exception):
    """Bad user input (flag, preset, dataset, run directory): exit code 2.

    The message is one line that names the problem and, where there is one, the fix.
    """

    exit_code = 2


class TrainingFailed(Exception):
    """A runtime failure during work that was correctly asked for (NaN loss, disk full): exit 1."""

    exit_code = 1
