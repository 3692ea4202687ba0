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

import numpy as np

from astrotool.ml.data import ArrayDataset

__docformat__ = "numpy"

KIND = "kappa-maps"


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
