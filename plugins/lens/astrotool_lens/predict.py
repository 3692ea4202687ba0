"""Applying a trained estimator to FITS files, LensNet data.json files and datasets.

:func:`read_inputs` is the one reader of user stamps: ``lens predict``, ``lens measure``
and ``lens validate`` all load their inputs with it.

Accepted inputs
---------------
* one FITS file: a 2-D stamp or a 3-D cube of stamps (first HDU with data);
* a folder of FITS files (``*.fits``, ``*.fit``, ``*.fits.gz``); LensNet-style
  ``psf_N.fits`` files are used as the PSF of ``gal_N.fits`` and are not
  themselves treated as galaxies; a ``data.json`` beside them that lists every
  galaxy file gives their true shears;
* a LensNet ``data.json`` (entries ``{"galaxy", "psf", "g1", "g2", ...}``, paths
  relative to the JSON file; a ``.tif`` entry is read from the ``.fits`` file
  LensNet keeps beside it);
* a generated dataset (folder or name under ``lens/shear``).

For a model trained with the PSF channel, the PSF comes from ``psf_N.fits`` /
the data.json entry / the dataset, or from ``psf=`` (one PSF for every stamp).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astrotool.context import astro_command
from astrotool.errors import InputError
from astrotool.names import printable

__docformat__ = "numpy"

PREDICTION_COLUMNS = {
    "source": "input file of the stamp", "index": "stamp number in the input (0-based)",
    "g1": "estimated reduced shear g1 (after the model's calibration where it is applied)",
    "g2": "estimated reduced shear g2 (after the model's calibration where it is applied)",
    "raw_g1": "estimated reduced shear g1 before calibration", "raw_g2": "estimated reduced shear g2 before calibration",
    "true_g1": "true reduced shear g1 of the stamp", "true_g2": "true reduced shear g2 of the stamp",
    "flag": "0 predicted, 1 not (g1, g2 NaN): NaN/inf pixels or a blank stamp",
    "error": "why the stamp was not predicted (empty when it was)",
}
"""One-line descriptions of the prediction tables' columns (all dimensionless)."""

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz")
"""File names read as FITS stamps."""


@dataclass
class Inputs:
    """Stamps to predict on and what is known about them."""

    gal: np.ndarray                 # (n, S, S)
    psf: np.ndarray | None          # (n, S, S) or None
    source: list                    # file name (or dataset) per stamp
    stem: str                       # output name stem
    truth: dict = field(default_factory=dict)   # optional g1, g2 per stamp
    origin: Path | None = None      # the input path (for error messages)


def _fits_stem(name: str) -> str:
    """``name`` less its FITS suffix (:data:`FITS_SUFFIXES`, any case): ``3.fits.gz`` -> ``3``."""
    low = name.lower()
    return name[:-len(next(s for s in sorted(FITS_SUFFIXES, key=len, reverse=True) if low.endswith(s)))] \
        if is_fits(Path(name)) else name


def is_fits(path: Path) -> bool:
    """Whether the file name has a FITS suffix."""
    name = path.name.lower()
    return any(name.endswith(s) for s in FITS_SUFFIXES)


def read_fits_image(path: str | Path) -> np.ndarray:
    """The first image HDU of a FITS file as float32, 2-D or 3-D.

    Raises
    ------
    astrotool.errors.InputError
        Missing, unreadable, empty or not 2-D/3-D.
    """
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        with fits.open(path, memmap=False) as hdul:
            data = next((h.data for h in hdul if getattr(h, "data", None) is not None
                         and getattr(h, "is_image", True) and np.ndim(h.data) >= 2), None)
            data = None if data is None else np.array(data, dtype=np.float32)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(path, f"not a readable FITS file ({exc})") from None
    if data is None:
        raise InputError(path, "no image data in this FITS file")
    if data.ndim not in (2, 3):
        raise InputError(path, f"expected a 2-D stamp or a 3-D cube, got shape {data.shape}")
    return data


def _lensnet_fits(folder: Path, name: str) -> Path:
    p = folder / name
    if p.suffix.lower() in (".tif", ".tiff"):
        alt = p.with_suffix(".fits")
        if alt.is_file() or not p.is_file():
            p = alt
    return p


def read_inputs(path: str | Path, need_psf: bool, psf_file: str | Path | None = None,
                shear_stage: Path | None = None, who: str = "the model") -> Inputs:
    """Load stamps from any accepted input (see module docs).

    ``need_psf``: refuse stamps without a PSF stamp per galaxy, saying that ``who`` needs it.
    """
    path = Path(path).expanduser()
    single_psf = read_fits_image(psf_file) if psf_file else None
    if single_psf is not None and single_psf.ndim != 2:
        raise InputError(psf_file, "the PSF file must hold one 2-D stamp")

    def with_single_psf(inp: Inputs) -> Inputs:
        if single_psf is not None:
            inp.psf = np.broadcast_to(_same_shape(single_psf, inp.gal, Path(psf_file), Path(inp.origin or path)),
                                      inp.gal.shape).copy()
        if need_psf and inp.psf is None:
            raise InputError(inp.origin or path, f"{who} needs a PSF stamp per galaxy: give psf_N.fits files, "
                                                 "a data.json with psf entries, or --psf FILE")
        return inp

    if path.is_file() and path.suffix.lower() == ".json":
        return with_single_psf(_read_data_json(path, need_psf and single_psf is None, who))
    if path.is_file():
        if not is_fits(path):
            raise InputError(path, "expected a FITS file, a folder of FITS files, a data.json or a dataset")
        data = read_fits_image(path)
        gal = data[None] if data.ndim == 2 else data
        return with_single_psf(Inputs(gal, None, [path.name] * len(gal), _stem(path.name.split(".")[0]),
                                      origin=path))
    if is_dataset(path, shear_stage):
        from astrotool_lens.data import resolve_dataset

        ds = resolve_dataset(shear_stage or path.parent, str(path))
        gal, psf = ds.load_stamps(psf=need_psf, check_finite=False)   # a bad stamp is flagged by who reads it
        t = ds.truth
        return with_single_psf(Inputs(gal, psf, [f"{ds.stem}#{i}" for i in range(ds.n)], ds.stem,
                                      {"g1": np.asarray(t["g1"]), "g2": np.asarray(t["g2"])}, ds.root))
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.is_file() and is_fits(p)), key=_natural_key)
        others = sorted(p.name for p in path.iterdir() if p.is_file() and not is_fits(p) and p.name != "data.json"
                        and not p.name.startswith("."))
        if others:   # notes, logs, catalogues: not stamps, but named, so that a misnamed stamp is seen
            import logging

            logging.getLogger("astro").info("%s: %d file(s) not named as FITS left out: %s", path, len(others),
                                            ", ".join(others[:5]) + (", ..." if len(others) > 5 else ""))
        psf_files = {}   # by the name after psf_ less its FITS suffix: psf_3.fits pairs with gal_3.fits.gz
        for p in files if need_psf and single_psf is None else []:
            if p.name.lower().startswith("psf_"):
                if _fits_stem(p.name[4:]) in psf_files:
                    raise InputError(p, f"two PSF files for one stamp: {psf_files[_fits_stem(p.name[4:])].name} too")
                psf_files[_fits_stem(p.name[4:])] = p
        gal_files = [p for p in files if not p.name.lower().startswith("psf_")]
        if not gal_files:
            raise InputError(path, "no FITS files in this folder")
        gals, psfs, names = [], [], []
        for p in gal_files:
            data = read_fits_image(p)
            stamps = data[None] if data.ndim == 2 else data
            if gals and stamps.shape[1:] != gals[0].shape[1:]:
                raise InputError(p, f"stamp size {stamps.shape[1:]} differs from {gals[0].shape[1:]} of "
                                    f"{gal_files[0].name}")
            gals.append(stamps)
            names += [p.name] * len(stamps)
            if need_psf and single_psf is None:
                key = _fits_stem(p.name[4:] if p.name.lower().startswith("gal_") else p.name)
                if key not in psf_files:
                    raise InputError(p, f"no matching PSF file psf_{key}.fits (or .fits.gz, ...) in {path}")
                ps = _same_shape(read_fits_image(psf_files[key]), stamps, psf_files[key], p)
                psfs.append(np.broadcast_to(ps, stamps.shape) if ps.ndim == 2 else ps)
        gal = np.concatenate(gals)
        psf = np.concatenate(psfs) if psfs else None
        return with_single_psf(Inputs(gal, psf, names, _stem(path.name), _folder_truth(path, names), origin=path))
    raise InputError(path, "no such file, folder or dataset" + _datasets_here(shear_stage))


def _datasets_here(shear_stage: Path | None) -> str:
    """``" (datasets in lens/shear: a, b)"``: the names a mistyped dataset name may have meant."""
    from astrotool_lens.data import MANIFEST_SUFFIX

    if shear_stage is None or not Path(shear_stage).is_dir():
        return ""
    have = sorted(d.name for d in Path(shear_stage).iterdir()
                  if d.is_dir() and not d.name.startswith(".") and any(d.glob(f"*{MANIFEST_SUFFIX}")))
    return f" (datasets in {shear_stage}: {', '.join(have)})" if have else \
        f" (no dataset in {shear_stage}: run `{astro_command('lens', 'generate')}` first)"


def is_dataset(path: str | Path, shear_stage: Path | None = None) -> bool:
    """Whether ``path`` names a generated dataset: a folder holding a manifest, or a name under ``shear_stage``."""
    from astrotool_lens.data import MANIFEST_SUFFIX

    path = Path(path).expanduser()
    return path.is_dir() and any(path.glob(f"*{MANIFEST_SUFFIX}")) or (
        not path.exists() and shear_stage is not None and (Path(shear_stage) / str(path)).is_dir())


def _stem(text: str) -> str:
    """A valid output name (:func:`astrotool.names.name_from`) from an input's file or folder name."""
    from astrotool.names import name_from

    return name_from(text, "stamps")


def _same_shape(psf: np.ndarray, gal: np.ndarray, psf_path: Path, gal_path: Path) -> np.ndarray:
    """``psf`` if it has the galaxy stamps' shape (or one 2-D stamp for a cube of them), else an InputError."""
    if psf.shape not in (gal.shape, gal.shape[-2:]):
        raise InputError(psf_path, f"PSF of shape {psf.shape} does not match the galaxy stamps {gal.shape} of "
                                   f"{gal_path.name}")
    return psf


def _folder_truth(folder: Path, names: list) -> dict:
    """True g1, g2 of a folder's stamps from the LensNet ``data.json`` beside them, when it lists
    every galaxy file (one stamp each); else ``{}``."""
    path = folder / "data.json"
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"unreadable JSON ({exc})") from None
    if not isinstance(entries, list):
        return {}
    shear = {_lensnet_fits(folder, str(e["galaxy"])).name: (float(e["g1"]), float(e["g2"]))
             for e in entries if isinstance(e, dict) and {"galaxy", "g1", "g2"} <= set(e)}
    if len(set(names)) != len(names) or not all(n in shear for n in names):
        missing = [n for n in names if n not in shear]
        if shear and missing:   # a list of some of them: said, not passed over in silence
            import logging

            logging.getLogger("astro").warning(
                "%s lists %d of the folder's %d galaxy file(s) (not %s%s): no true shears are taken from it; give "
                "the data.json itself as the input to read its entries", printable(path), len(names) - len(missing),
                len(names), missing[0], f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        return {}
    return {"g1": np.array([shear[n][0] for n in names]), "g2": np.array([shear[n][1] for n in names])}


def _natural_key(p: Path):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def _read_data_json(path: Path, need_psf: bool, who: str = "the model") -> Inputs:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"unreadable JSON ({exc})") from None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise InputError(path, "expected a non-empty list of {galaxy, psf, g1, g2, ...} entries (LensNet data.json)")
    folder = path.parent
    gals, psfs, names = [], [], []
    for k, e in enumerate(entries):
        if "galaxy" not in e:
            raise InputError(path, f"entry {k} has no 'galaxy'")
        gp = _lensnet_fits(folder, str(e["galaxy"]))
        if not gp.is_file():
            raise InputError(gp, f"listed in {path} (entry {k}) but missing")
        g = read_fits_image(gp)
        if g.ndim != 2:
            raise InputError(gp, "expected one 2-D stamp per data.json entry")
        if gals and g.shape != gals[0].shape:
            raise InputError(gp, f"stamp size {g.shape} differs from {gals[0].shape} of {names[0]}")
        gals.append(g)
        names.append(gp.name)
        if need_psf:
            if "psf" not in e:
                raise InputError(path, f"entry {k} has no 'psf' but {who} needs one")
            pp = _lensnet_fits(folder, str(e["psf"]))
            if not pp.is_file():
                raise InputError(pp, f"listed in {path} (entry {k}) but missing")
            psfs.append(_same_shape(read_fits_image(pp), g, pp, gp))
    truth = {}
    if all("g1" in e and "g2" in e for e in entries):
        truth = {key: np.array([_shear_value(e[key], path, k, key) for k, e in enumerate(entries)])
                 for key in ("g1", "g2")}
    return Inputs(np.stack(gals), np.stack(psfs) if psfs else None, names,
                  _stem(path.parent.name or path.stem), truth, origin=path)


def _shear_value(value, path: Path, k: int, key: str) -> float:
    """An entry's true shear ``g1``/``g2`` in a LensNet ``data.json`` (a number; InputError naming the entry)."""
    try:
        number = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number):
        raise InputError(path, f"entry {k}: {key} is not a finite number ({json.dumps(value)})")
    return number


def flagged_message(error, counts_only: bool = False) -> str:
    """What :func:`predict_table`'s ``error`` column says of the stamps not predicted.

    ``"2 of 4 stamps not predicted (NaN, flag 1): 1 NaN or infinite pixels, 1 blank stamp (first: #1); see
    column error"``, ``"... 4 blank stamps ..."``; ``counts_only``: ``"1 NaN or infinite pixels, 1 blank stamp"``.
    """
    from collections import Counter

    error = np.asarray(error, dtype=str)
    bad = np.flatnonzero(error != "")
    counts = ", ".join(f"{k} {reason}{'s' if k != 1 and reason.endswith('stamp') else ''}"   # 4 blank stamps
                       for reason, k in sorted(Counter(error[bad].tolist()).items()))
    if counts_only:
        return counts
    first = f" (first: #{int(bad[0])})" if len(bad) else ""
    return f"{len(bad)} of {len(error)} stamps not predicted (NaN, flag 1): {counts}{first}; see column error"


def predict_table(model, meta: dict, inp: Inputs, batch_size: int = 32, symmetrize: bool = True,
                  calibrated: bool = True, device=None):
    """Predict (g1, g2) for loaded inputs.

    Parameters
    ----------
    model : ShearEstimator or path-like
        The estimator, or its ONNX export (see :func:`astrotool_lens.model.predict_stamps`).
    meta : dict
        The checkpoint's ``model.json``.
    inp : Inputs
    batch_size : int
    symmetrize, calibrated : bool
    device : str, optional

    Returns
    -------
    cols : dict
        Table columns ``source, index, g1, g2, flag, error`` (and ``true_g1, true_g2`` when known);
        a stamp with NaN/inf pixels or a blank one has NaN shear, ``flag`` 1 and the reason in ``error``
        (:func:`astrotool_lens.model.stamp_problems`).
    pred : astrotool.ml.predict.Predictions
        The run (throughput, engine, device).
    """
    from astrotool_lens.model import check_stamps, predict_stamps, stamp_problems

    x = inp.gal[:, None] if inp.psf is None or meta["architecture"]["kwargs"]["in_channels"] == 1 \
        else np.stack([inp.gal, inp.psf], axis=1)
    x = check_stamps(x, meta, inp.origin or inp.stem, per_stamp=True)
    error = stamp_problems(x)    # once: predict_stamps skips these stamps, the table names why
    run = predict_stamps(model, x, batch_size, symmetrize, calibrated, device, problems=error)
    pred = run.outputs
    cols = {"source": np.array(inp.source, dtype=str), "index": np.arange(len(pred)),
            "g1": pred[:, 0].astype(float), "g2": pred[:, 1].astype(float),
            "flag": (error != "").astype(np.int8), "error": error}
    if inp.truth:
        cols["true_g1"] = np.asarray(inp.truth["g1"], float)
        cols["true_g2"] = np.asarray(inp.truth["g2"], float)
    return cols, run
