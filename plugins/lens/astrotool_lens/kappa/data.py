"""Packed (epsilon, kappa) data sets: the reader every kappa command trains, reconstructs and scores on.

A packed set is an :class:`astrotool.ml.data.ArrayDataset` of kind
``"kappa-maps"`` (folder ``lens/kappa/data/<name>/``) with, per map,

* ``epsilon`` -- float16 ``(3, S, S)``: epsilon1, epsilon2 and the error map
  Delta-epsilon (the Datathon's ``EPSILON/<id>.npy``);
* ``kappa`` -- float16 ``(S, S)``: the convergence (``KAPPA/<id>.npy``); absent
  from a set packed from inputs alone (a test set);

and the metadata columns ``name`` (the file stem the pair was matched on, which
is also the name of its prediction file) and ``split`` (``train``, ``val`` or
``test``, fixed by the seed of ``astro lens kappa data``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from astrotool.context import astro_command
from astrotool.ml.data import ArrayDataset

__docformat__ = "numpy"

KIND = "kappa-maps"
"""``kind`` of a mass-map data set's manifest."""

DESCRIPTIONS = {
    "index": "map number in the set (row of its epsilon and kappa arrays)",
    "name": "file stem the epsilon and kappa maps were matched on (also the name of its prediction file)",
    "split": "train, val or test, drawn with the seed of lens kappa data (a set packed from inputs alone: test)",
}
"""Descriptions of the set's table's columns (``<name>_metadata.parquet``; none has a unit)."""


class KappaDataset(ArrayDataset):
    """A packed kappa data set (see the module docstring)."""

    KIND = KIND
    SAMPLE_WORD = "map"

    @property
    def size(self) -> int:
        """Map side [pixels]."""
        return int(self.arrays["epsilon"][0][-1])

    @property
    def has_kappa(self) -> bool:
        """Whether the set holds the true convergence."""
        return "kappa" in self.arrays

    @property
    def names(self) -> np.ndarray:
        """The map names, in sample order."""
        return np.asarray(self.metadata(["name"])["name"]).astype(str)


def unfinished_problem(folder) -> str:
    """Why a data-set folder that holds its settings but no manifest cannot be opened, and what finishes it."""
    return (f"an unfinished data set ({folder}): `astro lens kappa data` has not packed all its shards yet "
            "(no index written; under --shard, other array tasks may still be packing): wait for them "
            "or run the same `astro lens kappa data` command again to finish it")


def open_packed(ctx, spec: str, option: str = "--dataset", hint: str | None = None):
    """The packed set ``spec`` names (a name under ``lens/kappa/data/`` or a set's folder), recorded as an input.

    A folder given that is not a packed set (a Datathon root, a simulated set) is named as given and refused
    with the command that packs it, instead of the lookup's path under ``lens/kappa/data/``.

    Parameters
    ----------
    ctx : astrotool.context.Context
    spec : str
        ``--dataset`` (or ``option``) as given.
    option : str
        The option, for messages.
    hint : str, optional
        What to do when there is no set of that name (default: pack one with ``astro lens kappa data``).

    Raises
    ------
    astrotool.errors.InputError
        No such set, or a folder that is not a packed set.
    """
    from astrotool.errors import InputError
    from astrotool.ml import commands as mc
    from astrotool.ml.data import MANIFEST_SUFFIX

    from astrotool_lens.kappa.sources import SETTINGS_FILE

    text = str(spec or "")
    p = Path(text).expanduser()
    is_path = os.sep in text or "/" in text or text in (".", "..")
    named = bool(text) and not is_path and (ctx.workspace.stage("lens", "kappa/data", create=False) / text).is_dir()
    folder = ctx.workspace.stage("lens", "kappa/data", create=False) / text if named else p
    if text and folder.is_dir() and not any(folder.glob(f"*{MANIFEST_SUFFIX}")) \
            and (folder / SETTINGS_FILE).is_file():   # a pack that failed or still runs: say what finishes it
        raise InputError(text, unfinished_problem(folder))
    if text and not named and p.is_dir() and not any(p.glob(f"*{MANIFEST_SUFFIX}")):
        pack = astro_command('lens', 'kappa', 'data', text, '--name', 'NAME')
        raise InputError(text, f"a folder, not a packed data set (no *{MANIFEST_SUFFIX} manifest): pack it first "
                               f"with `{pack}`, then give {option} NAME")
    if is_path and not p.exists():
        raise InputError(text, f"no such folder ({option} takes a packed data set's name under lens/kappa/data, "
                               "or its folder)")
    hint = hint or f"pack one with `{astro_command('lens', 'kappa', 'data')}`"
    return mc.open_dataset(ctx, "lens", "kappa/data", text, KappaDataset, hint=hint)
