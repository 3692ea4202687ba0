"""Exceptions that map to the command line's exit codes.

Exit codes: 0 success, 1 some items failed, 2 usage, configuration or input error (also where items failed,
each on bad input).
"""

import errno as _errno

__docformat__ = "numpy"


class AstroError(Exception):
    """Base class of errors the command line reports as one clear message.

    Parameters
    ----------
    message : str
        What went wrong, naming the file, key or option concerned.
    exit_code : int
        Process exit code, 2 by default (usage/config/input error).
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(AstroError):
    """A bad input file: corrupt, wrong shape, missing columns, all-NaN data."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ConfigError(AstroError):
    """Invalid configuration: every problem with its file and dotted key."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in self.problems))


class ItemsFailed(AstroError):
    """Some items of a batch failed; the others finished (exit code 1)."""

    exit_code = 1


class WriteError(AstroError):
    """An output could not be written: a full disk or quota (exit code 1), a read-only or
    forbidden folder (exit code 2: the place asked for cannot be written).

    Parameters
    ----------
    path : path-like
        The output asked for (never its temporary file).
    number : int
        ``errno.ENOSPC``, ``EDQUOT``, ``EROFS`` or ``EACCES``.
    """

    REASONS = {_errno.ENOSPC: "no space left on device", _errno.EDQUOT: "disk quota exceeded",
               _errno.EROFS: "read-only file system", _errno.EACCES: "permission denied"}
    """errno -> the words of the message."""

    FULL_DISK = (_errno.ENOSPC, _errno.EDQUOT)
    """The errnos of a full disk or quota: a batch starts no more items after one."""

    def __init__(self, path, number: int):
        self.path, self.errno = str(path), number
        super().__init__(f"{self.REASONS[number]} writing {path}",
                         exit_code=1 if number in self.FULL_DISK else 2)
