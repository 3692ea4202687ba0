"""Reading generated shear datasets (``lens/shear/<name>/``).

A shear dataset is an :mod:`astrotool.ml.data` array dataset of kind
``lens-shear``: ``shardNNNNN_stamps.h5`` files (arrays ``gal`` and ``psf``,
float32 (n, S, S)), ``<name>_truth.parquet`` with every drawn parameter
(:data:`astrotool_lens.generate.TRUTH_COLUMNS`), and ``<name>_dataset.json``,
written last, which marks the dataset as complete and records ``stamp_size``,
``pixel_scale``, ``field_size``, ``ring`` and the generation ``config``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astrotool.context import astro_command
from astrotool.errors import InputError
from astrotool.ml.data import MANIFEST_SUFFIX, ArrayDataset, group_split
from astrotool.ml.data import resolve_dataset as _resolve

__docformat__ = "numpy"

__all__ = ["MANIFEST_SUFFIX", "SHEAR_COLUMNS", "ShearDataset", "resolve_dataset"]

SHEAR_COLUMNS = ("g1", "g2")
"""Truth columns every command needs (the true shear of each stamp)."""


class ShearDataset(ArrayDataset):
    """A complete generated dataset.

    Parameters
    ----------
    root : path-like
        The dataset folder.

    Raises
    ------
    astrotool.errors.InputError
        No manifest (generation unfinished), unreadable manifest, another kind
        of dataset, missing or damaged shards.
    """

    KIND = "lens-shear"
    SAMPLE_WORD = "stamp"

    def __init__(self, root: str | Path):
        super().__init__(root)
        try:
            self.stamp_size = int(self.attrs["stamp_size"])
            self.pixel_scale = float(self.attrs["pixel_scale"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(self.manifest_path, f"no valid stamp_size / pixel_scale ({exc})") from None
        if self.arrays.get("gal", ((),))[0] != (self.stamp_size, self.stamp_size):
            raise InputError(self.manifest_path, f"gal stamps are {self.arrays.get('gal', ((),))[0]} pixels, "
                                                 f"stamp_size says {self.stamp_size}")

    @property
    def stem(self) -> str:
        """The dataset's folder name: the stem of every output made from it (``<stem>_hsm.parquet``,
        ``<stem>_<model>_metrics.json``, ``<stem>_<model>_all_metrics.json``); a copied dataset folder names
        its own outputs, although its manifest keeps the name it was generated with (:attr:`name`). The
        resolved folder's name, so that ``--dataset .`` (or ``lens/shear/g/``) is named ``g``, never ``""``."""
        return self.root.resolve().name

    def __repr__(self) -> str:
        return f"ShearDataset({str(self.root)!r}, n={self.n}, stamp={self.stamp_size})"

    @property
    def truth(self) -> dict[str, np.ndarray]:
        """Truth columns (numpy arrays ordered by stamp index).

        Raises
        ------
        astrotool.errors.InputError
            The truth table lacks :data:`SHEAR_COLUMNS` (``missing column(s) g1``).
        """
        self.truth_columns(SHEAR_COLUMNS)
        return self.metadata()

    def truth_columns(self, names) -> dict[str, np.ndarray]:
        """Some truth columns; a missing one raises InputError naming the truth table."""
        return self.metadata(list(names))

    def load_stamps(self, indices: np.ndarray | None = None, psf: bool = True,
                    check_finite: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Galaxy (and PSF) stamps, all in memory (use :meth:`iter_batches` to stream).

        Parameters
        ----------
        indices : numpy.ndarray, optional
            Stamp indices to return (default: all), in this order.
        psf : bool
            Also return the PSF stamps.
        check_finite : bool
            Raise InputError naming the shard if a stamp holds NaN or inf.

        Returns
        -------
        gal : numpy.ndarray
            float32 (k, S, S).
        psf : numpy.ndarray or None
        """
        names = ["gal", "psf"] if psf else ["gal"]
        out = self.read(indices, names, check_finite=check_finite)
        return out["gal"], out.get("psf")

    def split(self, fractions, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Train / validation / test stamp indices, assigned by whole shear fields.

        Fields (ring pairs when there is one shear per pair) never straddle
        two subsets, so a ring partner never leaks into validation or test
        (:func:`astrotool.ml.data.group_split`).

        Parameters
        ----------
        fractions : (float, float, float)
        seed : int

        Returns
        -------
        train, val, test : numpy.ndarray
            Sorted stamp indices.
        """
        from astrotool.errors import AstroError

        fields = self.metadata(["field"])["field"]
        try:
            return group_split(fields, fractions, seed)
        except AstroError as exc:   # a group is a field of one shear: say so, and how to get more of them
            raise AstroError(f"{self.root}: {exc}; a group is a field of one shear (a ring pair, or a field of "
                             "`lens generate --preset fields`): generate more stamps, or a smaller --field-size"
                             ) from None


def resolve_dataset(shear_stage: Path, name_or_path: str) -> ShearDataset:
    """Open a dataset by folder path or by name under the ``lens/shear`` stage."""
    return _resolve(shear_stage, name_or_path, ShearDataset, hint=f"run `{astro_command('lens', 'generate')}` first")
