"""User-given names that become file or folder names, and file names shown to people.

A name given on the command line or in a configuration file (``--name``,
``--model``, ``--output``, ``lens.generate.name`` ...) becomes one file or folder
name inside a workspace stage. :func:`check_name` is the one check of such a
name; configuration models use it through :data:`astrotool.section.FileName`.

A valid name is one path component that means the same on every file system and
in every program it is handed to (a shell, Slurm, SExtractor's comma-separated
lists): 1 to :data:`MAX_LENGTH` characters from the POSIX portable file-name set
(``A-Z a-z 0-9 _ . -``), not starting with ``.`` (hidden, ``.`` and ``..``) or
``-`` (read as an option). So no path separator, no space, comma or control
character, and no name that leaves its stage folder.

:func:`printable` turns any file name the operating system gives, including
bytes that are not valid UTF-8, into text that can be printed and stored.

This module imports only the standard library.
"""

from __future__ import annotations

import os
import re

from astrotool.errors import AstroError

__docformat__ = "numpy"

__all__ = ["ALLOWED", "MAX_LENGTH", "check_name", "name_from", "name_problem", "printable"]

MAX_LENGTH = 128
"""Longest name [characters]: what a plugin appends (``_truth.parquet``,
``000000-000063_lightcurves.parquet``) must still fit the 255-byte limit of a file name."""

ALLOWED = "letters A-Z a-z, digits, '_', '.', '-'; not starting with '.' or '-'"
"""The rule, as messages state it."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def printable(name: str | bytes | os.PathLike, ascii_only: bool = False) -> str:
    """A file name or path as printable text: bytes that are not UTF-8 become ``\\xNN``.

    Parameters
    ----------
    name : str, bytes or path-like
        As the operating system gave it (``os.listdir``, ``Path.iterdir``: bytes
        that are not UTF-8 are then lone surrogates in a ``str``).
    ascii_only : bool
        Printable ASCII only, for a FITS header: escape every non-ASCII character
        (``\\xe9``, ``\\u2013``) and every control character (``\\t``, ``\\n``, ``\\x7f``) too.

    Examples
    --------
    >>> printable(os.fsdecode(b"tile_\\xff.fits"))
    'tile_\\\\xff.fits'
    >>> printable("champ_é.fits"), printable("champ_é.fits", ascii_only=True)
    ('champ_é.fits', 'champ_\\\\xe9.fits')
    """
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate no file name can hold
        raw = os.fspath(name).encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    if not ascii_only:
        return text
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def name_problem(text: str) -> str | None:
    """Why ``text`` is not a valid name (see the module docs), else ``None``."""
    if not isinstance(text, str):
        return f"must be text, got {type(text).__name__}"
    if not text:
        return "is empty"
    for sep in ("/", "\\"):
        if sep in text:
            return f"contains the path separator {sep!r}: a name is one file name, not a path"
    if text in (".", ".."):
        return "is a reference to a folder, not a name"
    if text[0] == ".":
        return "starts with '.' (a hidden file)"
    if text[0] == "-":
        return "starts with '-' (programs would read it as an option)"
    if len(text) > MAX_LENGTH:
        return f"is {len(text)} characters long (at most {MAX_LENGTH})"
    if not _NAME.fullmatch(text):
        bad = next((c for c in text if not (c.isascii() and (c.isalnum() or c in "_.-"))), None)
        if bad is None:   # every character is allowed; the first is not a letter or digit (e.g. '_')
            return f"starts with {text[0]!r}: must start with a letter or digit; allowed: {ALLOWED}"
        return f"contains {bad!r}; allowed: {ALLOWED}"
    return None


def check_name(text: str, what: str) -> str:
    """Return ``text`` if it is a valid name (see the module docs), else raise a usage error.

    Parameters
    ----------
    text : str
        The name as given.
    what : str
        The option or key it came from, for the message (``"--name"``,
        ``"lens.generate.name"``).

    Returns
    -------
    str
        ``text``, unchanged.

    Raises
    ------
    astrotool.errors.AstroError
        Exit code 2; the message names ``what``, the name and the problem.

    Examples
    --------
    >>> check_name("cnn-small", "--model")
    'cnn-small'
    >>> check_name("../x", "--name")
    Traceback (most recent call last):
    ...
    astrotool.errors.AstroError: --name: '../x' is not a valid name: contains the path separator '/': a name is one file name, not a path
    """
    problem = name_problem(text)
    if problem:
        shown = printable(text) if isinstance(text, str) else text
        raise AstroError(f"{what}: {shown!r} is not a valid name: {problem}")
    return text


def name_from(text: str, fallback: str) -> str:
    """A valid name made from any text (an input file's stem): each run of other
    characters becomes ``_``, leading and trailing ``.``, ``_``, ``-`` go, and the
    result is cut to :data:`MAX_LENGTH`; ``fallback`` when nothing is left.

    Examples
    --------
    >>> name_from("ztf public 2024,06", "alerts"), name_from("-.é", "alerts")
    ('ztf_public_2024_06', 'alerts')
    """
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-")[:MAX_LENGTH].rstrip("._-")
    return name or check_name(fallback, "fallback name")
