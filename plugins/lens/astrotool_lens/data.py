"""Reading generated shear datasets (``lens/shear/<name>/``).

A dataset folder holds ``shardNNNNN_stamps.h5`` files (datasets ``gal`` and
``psf``, float32 (n, S, S), and a ``truth`` group), ``<name>_truth.parquet``
with every drawn parameter, and ``<name>_dataset.json``, written last, which
marks the dataset as complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from astrotool.errors import InputError

__docformat__ = "numpy"

MANIFEST_SUFFIX = "_dataset.json"


class ShearDataset:
    """A complete generated dataset.

    Parameters
    ----------
    root : path-like
        The dataset folder.

    Raises
    ------
    astrotool.errors.InputError
        No manifest (generation unfinished), unreadable manifest, missing shards.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifests = sorted(self.root.glob(f"*{MANIFEST_SUFFIX}")) if self.root.is_dir() else []
        if not manifests:
            raise InputError(self.root, "not a finished lens dataset (no *_dataset.json; "
                                        "run or resume `astro lens generate`)")
        self.manifest_path = manifests[0]
        try:
            self.manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(self.manifest_path, f"unreadable dataset manifest ({exc})") from None
        if self.manifest.get("format") != "astrotool-lens-shear":
            raise InputError(self.manifest_path, "not an astrotool-lens-shear manifest")
        self.name = self.manifest["name"]
        self.n = int(self.manifest["n"])
        self.stamp_size = int(self.manifest["stamp_size"])
        self.pixel_scale = float(self.manifest["pixel_scale"])
        self.shard_paths = [self.root / s for s in self.manifest["shards"]]
        for p in self.shard_paths:
            if not p.is_file():
                raise InputError(p, "shard listed in the manifest is missing")
        self._truth: dict | None = None

    def __repr__(self) -> str:
        return f"ShearDataset({str(self.root)!r}, n={self.n}, stamp={self.stamp_size})"

    @property
    def truth(self) -> dict[str, np.ndarray]:
        """Truth columns (numpy arrays ordered by stamp index)."""
        if self._truth is None:
            from astrotool.io.tables import read_parquet

            t = read_parquet(self.root / self.manifest["truth"])
            self._truth = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
            if len(self._truth["index"]) != self.n:
                raise InputError(self.root / self.manifest["truth"], f"has {len(self._truth['index'])} rows, "
                                                                      f"manifest says {self.n}")
        return self._truth

    def load_stamps(self, indices: np.ndarray | None = None, psf: bool = True,
                    check_finite: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Galaxy (and PSF) stamps.

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
        from astrotool.io.hdf5 import open_h5

        gals, psfs, idx = [], [], []
        for p in self.shard_paths:
            with open_h5(p) as h5:
                try:
                    g = h5["gal"][()]
                    ps = h5["psf"][()] if psf else None
                    ix = h5["truth"]["index"][()]
                except KeyError as exc:
                    raise InputError(p, f"missing dataset {exc}") from None
            s = self.stamp_size
            if g.shape[1:] != (s, s):
                raise InputError(p, f"stamps are {g.shape[1:]} pixels, manifest says {s}x{s}")
            if check_finite and not np.isfinite(g).all():
                bad = int(ix[np.flatnonzero(~np.isfinite(g).all(axis=(1, 2)))[0]])
                raise InputError(p, f"NaN or infinite pixels (stamp {bad})")
            gals.append(g)
            psfs.append(ps)
            idx.append(ix)
        gal = np.concatenate(gals)
        order = np.argsort(np.concatenate(idx), kind="stable")
        gal = gal[order]
        ps = np.concatenate(psfs)[order] if psf else None
        if indices is not None:
            indices = np.asarray(indices)
            gal = gal[indices]
            ps = ps[indices] if ps is not None else None
        return gal, ps

    def split(self, fractions, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Train / validation / test stamp indices, assigned by whole shear fields.

        Fields (ring pairs when there is one shear per pair) never straddle
        two subsets, so a ring partner never leaks into validation or test.

        Parameters
        ----------
        fractions : (float, float, float)
        seed : int

        Returns
        -------
        train, val, test : numpy.ndarray
            Sorted stamp indices.
        """
        field = np.asarray(self.truth["field"])
        fields = np.unique(field)
        rng = np.random.default_rng([int(seed), 0x5B117])
        perm = rng.permutation(fields)
        n = len(fields)
        n_train = int(round(fractions[0] * n))
        n_val = int(round(fractions[1] * n))
        if n >= 3:
            n_train = min(max(n_train, 1), n - 2 if fractions[2] > 0 else n - 1)
            n_val = max(n_val, 1)
        n_val = min(n_val, n - n_train)
        parts = np.split(perm, [n_train, n_train + n_val])
        return tuple(np.flatnonzero(np.isin(field, p)) for p in parts)


def resolve_dataset(shear_stage: Path, name_or_path: str) -> ShearDataset:
    """Open a dataset by folder path or by name under the ``lens/shear`` stage."""
    p = Path(name_or_path).expanduser()
    if p.is_dir() and any(p.glob(f"*{MANIFEST_SUFFIX}")):
        return ShearDataset(p)
    candidate = Path(shear_stage) / name_or_path
    if candidate.is_dir():
        return ShearDataset(candidate)
    have = sorted(d.name for d in Path(shear_stage).iterdir() if d.is_dir()) if Path(shear_stage).is_dir() else []
    hint = f"available: {', '.join(have)}" if have else "run `astro lens generate` first"
    raise InputError(candidate, f"no dataset named {name_or_path!r} ({hint})")
