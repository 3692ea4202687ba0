"""One way to derive random seeds, shared by the executors and the training loop.

:func:`derive_seed` turns a base seed and any number of keys (integers or
strings: an item's file stem, an epoch number, a rank) into a non-negative
63-bit seed. It hashes text with BLAKE2b, so the value is the same in every
process, on every platform and in every Python version (unlike ``hash()``, which
is salted per process), and nearby inputs give unrelated seeds.

The text hashed is ``"<base>:<key1>:<key2>..."``: an integer key is written in
decimal, so ``derive_seed(s, 3) == derive_seed(s, "3")`` (a key is its text),
and ``:`` and ``\\`` inside a string key are escaped, so ``("a:b",)`` and
``("a", "b")`` give different seeds. For a base seed and one key without those
two characters this is exactly the seed that :func:`astrotool.executors.run_items`
has always given an item, so data generated before keep their values. The text is
hashed as UTF-8, and a file name that is not valid UTF-8 (which ``os.listdir``
returns with lone surrogates) by its own bytes, as ``os.fsencode`` gives them on
POSIX: every file name has a seed.

This module imports only the standard library.
"""

from __future__ import annotations

import hashlib

__docformat__ = "numpy"

__all__ = ["derive_seed", "entropy", "MAX_SEED"]

MAX_SEED = 2**63 - 1
"""Largest value :func:`derive_seed` returns."""


def _text(part, what: str) -> str:
    if isinstance(part, bool):
        raise TypeError(f"derive_seed: {what} must be an int or a str, got a bool ({part!r})")
    if isinstance(part, int):
        return str(int(part))
    if isinstance(part, str):
        return part.replace("\\", "\\\\").replace(":", "\\:")
    # numpy integers and other int-like objects
    if hasattr(part, "__index__"):
        return str(part.__index__())
    raise TypeError(f"derive_seed: {what} must be an int or a str, got {type(part).__name__} ({part!r})")


def derive_seed(base: int, *keys: int | str) -> int:
    """A 63-bit seed from a base seed and keys; stable across processes and versions.

    Parameters
    ----------
    base : int
        The run's seed (``core.seed``). Any integer, negative ones included.
    *keys : int or str
        The stream's identity, in order: an item key, an epoch, a rank... Order
        matters; an integer key equals its decimal string. A string may hold
        any file name ``os.listdir`` returns, one that is not UTF-8 included.

    Returns
    -------
    int
        In ``[0, 2**63 - 1]``: valid for :func:`torch.manual_seed`,
        :func:`numpy.random.default_rng` and :func:`random.seed`.

    Raises
    ------
    TypeError
        ``base`` is not an integer, or a key is neither an integer nor a string.

    Examples
    --------
    >>> derive_seed(0, "tile_001") == derive_seed(0, "tile_001")
    True
    >>> derive_seed(0, 3) == derive_seed(0, "3")
    True
    >>> derive_seed(0, 1, 2) == derive_seed(0, 2, 1)
    False
    """
    if isinstance(base, str) or isinstance(base, bool):
        raise TypeError(f"derive_seed: the base seed must be an int, got {base!r}")
    text = ":".join([_text(base, "the base seed"), *(_text(k, f"key {i + 1}") for i, k in enumerate(keys))])
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def entropy(*parts: int) -> list[int]:
    """Integers as entropy words for :class:`numpy.random.SeedSequence` / ``default_rng``.

    numpy refuses negative entropy; a negative part is taken modulo 2**64, so every
    integer seed works and a non-negative one keeps its value.

    Examples
    --------
    >>> entropy(5, -1)
    [5, 18446744073709551615]
    """
    return [int(p) & (2**64 - 1) for p in parts]
