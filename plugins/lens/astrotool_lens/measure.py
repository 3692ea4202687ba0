r"""Classical shear estimators: GalSim HSM REGAUSS, KSB, BJ and LINEAR, metacalibration (METACAL) and
AnaCal's FPFS (ANACAL).

``galsim.hsm.EstimateShear(gal, psf, shear_est=...)`` is run on every stamp
with its PSF stamp. KSB returns a shear estimate g directly. REGAUSS, BJ and
LINEAR return a PSF-corrected *distortion* $e = (a^2 - b^2)/(a^2 + b^2)$; it is
converted to a shear estimate

* ``conversion = "exact"`` (default): per object, $g = e / \left(1 + \sqrt{1 - |e|^2}\right)$
  (:func:`astrotool_lens.shear.e_to_g`), the reduced-shear ellipticity of the same ellipse. Its mean over an
  isotropic population is the shear itself (Seitz & Schneider 1997), so no
  responsivity factor is needed.
* ``conversion = "responsivity"``: $g = e / R$ with the shear responsivity
  $R = 2 (1 - e_\mathrm{rms}^2)$, $e_\mathrm{rms}^2 = \langle e_1^2 + e_2^2 \rangle / 2$ over the successfully measured
  objects of the dataset (Bernstein & Jarvis 2002), the classical choice.

METACAL (:mod:`astrotool_lens.metacal`) measures each object's ellipticity e and
its shear response R on sheared copies of the deconvolved stamp; its shear is
$\langle R \rangle^{-1} \langle e \rangle$ over an ensemble, so the table holds e and R per object
and ``metacal_g1, metacal_g2`` use the response averaged over the whole table. ANACAL
(:mod:`astrotool_lens.fpfs`) gives e and an analytic R per object, used the same way
(``anacal_g1, anacal_g2``).

Failures (HSM errors, non-converged moments, |e| >= 1) are counted per method
and stored as NaN with ``<method>_flag = 1`` and the message in
``<method>_error``; they never stop the run.

A table records what made it (``settings``: conversion and starting guesses)
and what it was measured on (``identity``: the dataset's name, ``n`` and the
SHA-256 of its manifest, :func:`astrotool.ml.commands.dataset_identity`);
:func:`table_problem` tells whether it still serves a dataset and settings,
for ``lens measure`` (skip or measure again) and ``lens evaluate`` (reuse or
measure again).

Each executor item keeps its columns in a part file beside the table until every item is measured
(:func:`_part_file`), so ``--shard`` tasks each measure their share and the last one (or a re-run)
writes the table.

A method the table lacks is measured alone and joined into it (``add``) when the table was measured on
these stamps with the same settings (:func:`methods_to_add`); otherwise the stamps are measured again with
the methods the table held as well (:func:`methods_to_measure`).

Besides datasets (:func:`measure_dataset`, parallel over shards), stamps read by
:func:`astrotool_lens.predict.read_inputs` -- FITS files, folders of them, LensNet
``data.json`` -- are measured by :func:`measure_inputs` into the same table, whose
identity is then the SHA-256 of the pixels (:func:`stamps_identity`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from astrotool_lens.config import MeasureConfig
from astrotool_lens.shear import e_to_g, g_to_e

__docformat__ = "numpy"

E_TYPE = {"REGAUSS": True, "BJ": True, "LINEAR": True, "KSB": False}
"""Whether each HSM method gives a distortion e (True) rather than a shear g."""

MEASURE_VERSION = 1
"""Version of the measuring code (this module, :mod:`~astrotool_lens.metacal`, :mod:`~astrotool_lens.fpfs`):
bump it whenever a change makes the same stamps and settings give other numbers, so that part files measured
by the older code (:func:`_part_file`, whose digest holds it) are never taken."""


def measure_arrays(gal: np.ndarray, psf: np.ndarray, methods: Sequence[str], pixel_scale: float = 1.0,
                   guess_sig_gal: float = 5.0, guess_sig_psf: float = 3.0, *, metacal_delta: float = 0.01,
                   metacal_fixnoise: bool = True, metacal_seed: int = 0, anacal_sigma: float = 2.0,
                   anacal_c0: float = 4.0, anacal_seed: int = 0, start: int = 0) -> dict[str, np.ndarray]:
    """Run HSM shear estimators (and metacalibration, FPFS) on stamps.

    Parameters
    ----------
    gal, psf : numpy.ndarray
        (n, ny, nx) galaxy and PSF stamps (a single 2-D PSF is used for all).
    methods : sequence of str
        Subset of REGAUSS, KSB, BJ, LINEAR, METACAL, ANACAL.
    pixel_scale : float
        [arcsec / pixel]; HSM works in pixels, so this only labels the images.
    guess_sig_gal, guess_sig_psf : float
        Initial Gaussian sigma guesses [pixels].
    metacal_delta, metacal_fixnoise, metacal_seed, start
        METACAL's applied shear, noise correction and noise seed; ``start`` is the index of the
        first stamp (:func:`astrotool_lens.metacal.metacal_arrays`).
    anacal_sigma, anacal_c0, anacal_seed
        ANACAL's kernel (in PSF sigmas), weight and noise seed (:func:`astrotool_lens.fpfs.fpfs_arrays`).

    Returns
    -------
    dict of numpy.ndarray
        For each method ``m`` (lower case): ``m_g1, m_g2`` (shear estimate,
        exact conversion), ``m_e1, m_e2`` (distortion as returned, or 2g/(1+|g|^2)
        for KSB), ``m_resolution``, ``m_flag`` (0 ok, 1 failed), ``m_error``. METACAL:
        the columns of :func:`astrotool_lens.metacal.metacal_arrays`; ANACAL: those of
        :func:`astrotool_lens.fpfs.fpfs_arrays`.
    """
    import galsim

    from astrotool_lens.metacal import failure_reason

    out: dict[str, np.ndarray] = {}
    if "METACAL" in methods:
        from astrotool_lens.metacal import metacal_arrays

        out.update(metacal_arrays(gal, psf, pixel_scale, metacal_delta, metacal_fixnoise, metacal_seed, start,
                                  guess_sig_gal))
        methods = [m for m in methods if m != "METACAL"]
    if "ANACAL" in methods:
        from astrotool_lens.fpfs import fpfs_arrays

        out.update(fpfs_arrays(gal, psf, anacal_sigma, anacal_c0, True, anacal_seed, start))
        methods = [m for m in methods if m != "ANACAL"]

    gal = np.asarray(gal, dtype=np.float32)
    n = gal.shape[0]
    psf = np.asarray(psf, dtype=np.float32)
    if psf.ndim == 2:
        psf = np.broadcast_to(psf, gal.shape[:1] + psf.shape)
    for m in methods:
        k = m.lower()
        out[f"{k}_g1"] = np.full(n, np.nan)
        out[f"{k}_g2"] = np.full(n, np.nan)
        out[f"{k}_e1"] = np.full(n, np.nan)
        out[f"{k}_e2"] = np.full(n, np.nan)
        out[f"{k}_resolution"] = np.full(n, np.nan)
        out[f"{k}_flag"] = np.ones(n, dtype=np.int8)
        out[f"{k}_error"] = np.array([""] * n, dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            gim = galsim.Image(np.ascontiguousarray(gal[i]), scale=pixel_scale)
            pim = galsim.Image(np.ascontiguousarray(psf[i]), scale=pixel_scale)
            for m in methods:
                k = m.lower()
                try:
                    if not np.isfinite(gal[i]).all():
                        raise ValueError("non-finite pixels")
                    if not gal[i].any():   # METACAL's and ANACAL's words (GalSim: "Masked image is all 0's.")
                        raise ValueError("blank stamp")
                    res = galsim.hsm.EstimateShear(gim, pim, shear_est=m, strict=False,
                                                   guess_sig_gal=guess_sig_gal, guess_sig_PSF=guess_sig_psf)
                    if res.error_message or res.correction_status != 0:
                        raise ValueError(res.error_message.strip() or f"correction status {res.correction_status}")
                    if E_TYPE[m]:
                        e1, e2 = float(res.corrected_e1), float(res.corrected_e2)
                        if not (np.isfinite(e1) and np.isfinite(e2)) or e1 * e1 + e2 * e2 >= 1:
                            raise ValueError(f"unphysical distortion ({e1:.3g}, {e2:.3g})")
                        g1, g2 = (float(x) for x in e_to_g(e1, e2))
                    else:
                        g1, g2 = float(res.corrected_g1), float(res.corrected_g2)
                        if not (np.isfinite(g1) and np.isfinite(g2)) or g1 * g1 + g2 * g2 >= 1:
                            raise ValueError(f"unphysical shear ({g1:.3g}, {g2:.3g})")
                        e1, e2 = (float(x) for x in g_to_e(g1, g2))
                except (galsim.GalSimError, ValueError, RuntimeError) as exc:
                    out[f"{k}_error"][i] = failure_reason(exc)
                    continue
                out[f"{k}_g1"][i], out[f"{k}_g2"][i] = g1, g2
                out[f"{k}_e1"][i], out[f"{k}_e2"][i] = e1, e2
                out[f"{k}_resolution"][i] = float(res.resolution_factor)
                out[f"{k}_flag"][i] = 0
    for m in methods:
        out[f"{m.lower()}_error"] = out[f"{m.lower()}_error"].astype(str)
    return out


def hsm_descriptions(methods: Sequence[str]) -> dict[str, str]:
    """One-line description of each column :func:`measure_arrays` writes for the HSM ``methods`` (all
    dimensionless: shears, distortions and resolution factors)."""
    out = {}
    for m in methods:
        if m not in E_TYPE:
            continue
        k, how = m.lower(), ("distortion e = (a^2-b^2)/(a^2+b^2), PSF-corrected" if E_TYPE[m]
                             else "2g/(1+|g|^2) of KSB's shear estimate")
        for i in (1, 2):
            out[f"{k}_g{i}"] = f"{m} reduced-shear estimate g{i} (shear, not distortion; see the table's conversion)"
            out[f"{k}_e{i}"] = f"{m} {how}, component {i}"
        out.update({f"{k}_resolution": f"{m} resolution factor R2 (0 unresolved, 1 far larger than the PSF)",
                    f"{k}_flag": "0 measured, 1 failed", f"{k}_error": "why it failed"})
    return out


def apply_responsivity(table: dict, methods: Sequence[str]) -> dict[str, float]:
    """Replace ``m_g1, m_g2`` of e-type methods by e / R, R = 2 (1 - e_rms^2), in place.

    Returns
    -------
    dict
        ``{method: R}`` for the e-type methods.
    """
    out = {}
    for m in methods:
        if not E_TYPE.get(m, False):
            continue
        k = m.lower()
        ok = table[f"{k}_flag"] == 0
        e1, e2 = table[f"{k}_e1"], table[f"{k}_e2"]
        erms2 = float(np.mean(e1[ok] ** 2 + e2[ok] ** 2) / 2) if ok.any() else 0.0
        r = 2.0 * (1.0 - erms2)
        table[f"{k}_g1"] = np.where(ok, e1 / r, np.nan)
        table[f"{k}_g2"] = np.where(ok, e2 / r, np.nan)
        out[m] = r
    return out


@dataclass(frozen=True)
class MeasureTask:
    """One shard file to measure (executor item): stamps ``[start, stop)``."""

    path: str
    start: int
    stop: int
    methods: tuple
    pixel_scale: float
    guess_sig_gal: float
    guess_sig_psf: float
    options: dict = field(default_factory=dict)   # METACAL's and ANACAL's settings (estimator_options)
    part: str = ""   # the file keeping this item's columns until the table is written (:func:`_part_file`)


def _parts_dir(out_path: str | Path) -> Path:
    """``.<table>.parts/`` beside the table: each measured item's columns, kept until the table is written."""
    out_path = Path(out_path)
    return out_path.with_name(f".{out_path.name}.parts")


def _part_digest(cfg: MeasureConfig, identity: dict) -> str:
    """The digest in the part files' names (:func:`_part_file`) of one run: methods, settings, stamps and what
    the numbers depend on besides (:data:`MEASURE_VERSION`, astrotool_lens's version, galsim's, anacal's and
    ngmix's), so a part of other settings, stamps or code is never taken. Computed once per run."""
    import hashlib
    import json

    import astrotool_lens
    from astrotool.provenance import package_versions

    what = {"methods": list(cfg.methods), "settings": hsm_settings(cfg), "identity": _content(identity),
            "versions": {"measure": MEASURE_VERSION, "astrotool_lens": astrotool_lens.__version__,
                         **package_versions(("galsim", "anacal", "ngmix"))}}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _part_file(out_path: str | Path, key: str, digest: str) -> str:
    """The part file of item ``key`` of a run whose :func:`_part_digest` is ``digest``."""
    return str(_parts_dir(out_path) / f"{key}_{digest}.npz")


def discard_parts(out_path: str | Path, overwrite=True) -> None:
    """Remove the part files of the table at ``out_path`` that ``overwrite`` replaces (``--overwrite`` without
    ``--shard``: an earlier run's parts are not taken): every one, or with a
    :class:`astrotool.made_with.Overwrite` those written before a stopped run of this overwrite began."""
    import shutil

    from astrotool.made_with import replaces

    folder = _parts_dir(out_path)
    if getattr(overwrite, "since", None) is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for p in folder.rglob("*") if folder.is_dir() else ():
        if p.is_file() and replaces(overwrite, p):
            p.unlink(missing_ok=True)


def _table_stamp(path: str | Path) -> tuple | None:
    """What tells one written version of the table at ``path`` from another (inode, mtime, size; None: none),
    taken before measuring, so that a table written meanwhile by another task is told from the one there
    before (which ``--overwrite`` replaces)."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


STALE_PART_S = 1.0
"""A part file of other methods, settings, stamps or code is removed when a table is written only if it
was last written more than this many seconds before the run began (:func:`_remove_parts`)."""


def _remove_parts(out_path: str | Path, parts: list[str], started: float) -> None:
    """Remove this run's ``parts`` and every other part file of the table at ``out_path`` last written before
    this run began (``started``, :func:`time.time`, less :data:`STALE_PART_S`): parts of other methods,
    settings or code versions, failed runs' and those left behind by a run that another task's table made
    needless. A part written since this run began -- a concurrent ``--shard`` task's, whatever its
    command -- is kept, as is the folder while it holds one."""
    for part in parts:
        Path(part).unlink(missing_ok=True)
    folder = _parts_dir(out_path)
    for part in folder.glob("*.npz") if folder.is_dir() else ():
        try:
            if part.stat().st_mtime < started - STALE_PART_S:
                part.unlink(missing_ok=True)
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


def _read_part(path: str, problems: list | None = None, *, names_only: bool = False) -> dict | None:
    """The columns of a finished part file (None: none, or unreadable: a broken part is taken as not measured,
    with a warning naming it, logged here or, in an executor's worker whose log is not the command's, appended to
    ``problems`` for the command to log: :func:`_log_problems`). With ``names_only`` only the file's zip
    directory is read (a part is written atomically, so a readable directory is a finished part) and the
    columns' values are None."""
    import logging
    import zipfile
    import zlib

    if not path or not Path(path).is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: None if names_only else z[k] for k in z.files}
    except (OSError, ValueError, EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:
        problem = f"{path}: unreadable part file ({type(exc).__name__}: {exc}); taken as not measured"
        if problems is None:
            logging.getLogger("astro").warning("%s", problem)
        else:
            problems.append(problem)
        return None


def _log_problems(done) -> int:
    """Log the warnings of the items' results ``done`` (``(key, result)`` pairs); return the stamps they
    measured."""
    import logging

    for _, result in done:
        for problem in result.get("warnings", ()):
            logging.getLogger("astro").warning("%s", problem)
    return sum(result["n"] for _, result in done)


def _write_part(path: str, cols: dict) -> None:
    """Write an item's columns atomically (:func:`astrotool.workspace.atomic_path`)."""
    from astrotool.workspace import atomic_path

    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: (v.astype(str) if v.dtype == object else v) for k, v in cols.items()})


def measure_shard(task: MeasureTask, seed: int | None = None) -> dict:
    """Measure every stamp of one shard file into its part file (executor item; ``seed`` unused); a finished,
    readable part is kept. Returns ``{"part": path, "n": stamps measured}`` (0: kept), with ``"warnings"`` where
    a part was unreadable (:func:`_read_part`): the columns stay on disk."""
    from astrotool.errors import InputError
    from astrotool.ml.data import read_shard_arrays

    problems: list = []
    if _read_part(task.part, problems, names_only=True) is not None:
        return {"part": task.part, "n": 0}
    stamps = read_shard_arrays(task.path, ("gal", "psf"))
    if len(stamps["gal"]) != task.stop - task.start:
        raise InputError(task.path, f"holds {len(stamps['gal'])} stamps, the manifest says {task.stop - task.start}")
    out = measure_arrays(stamps["gal"], stamps["psf"], task.methods, task.pixel_scale, task.guess_sig_gal,
                         task.guess_sig_psf, start=task.start, **task.options)
    out["index"] = np.arange(task.start, task.stop)
    _write_part(task.part, out)
    return {"part": task.part, "n": task.stop - task.start, **({"warnings": problems} if problems else {})}


def estimator_options(cfg: MeasureConfig) -> dict:
    """The settings of the methods asked for that :func:`measure_arrays` takes as keywords:
    ``metacal_*`` with METACAL, ``anacal_*`` with ANACAL."""
    out = {}
    if "METACAL" in cfg.methods:
        out.update(metacal_delta=float(cfg.metacal_delta), metacal_fixnoise=bool(cfg.metacal_fixnoise),
                   metacal_seed=int(cfg.metacal_seed))
    if "ANACAL" in cfg.methods:
        out.update(anacal_sigma=float(cfg.anacal_sigma), anacal_c0=float(cfg.anacal_c0),
                   anacal_seed=int(cfg.anacal_seed))
    return out


def require_packages(cfg: MeasureConfig) -> None:
    """Refuse before any stamp is measured when a method's package is missing (ANACAL: anacal).

    Raises
    ------
    astrotool.errors.AstroError
        Exit code 2, saying what to install.
    """
    if "ANACAL" in cfg.methods:
        from astrotool_lens.fpfs import require_anacal

        require_anacal()


def hsm_settings(cfg: MeasureConfig) -> dict:
    """The settings a table's numbers depend on, besides its methods: conversion and guesses [pixels],
    :func:`estimator_options` and, with METACAL, what its estimator is (``metacal_estimator``)."""
    out = {"conversion": cfg.conversion, "guess_sig_gal": float(cfg.guess_sig_gal),
           "guess_sig_psf": float(cfg.guess_sig_psf), **estimator_options(cfg)}
    if "METACAL" in cfg.methods:      # tables of an older METACAL (fewer D, shears about the stamp centre) are measured again
        out["metacal_estimator"] = "e, R, D11 D12 D21 D22; shears about the galaxy centroid"
    return out


def dataset_identity(dataset) -> dict:
    """What tells one generated dataset from another drawn under the same name.

    Returns
    -------
    dict
        :func:`astrotool.ml.commands.dataset_identity` (``name``, ``n``,
        ``manifest_sha256``: the manifest without its provenance, so a dataset
        drawn with another configuration, seed or size differs) and, for the
        record, the manifest's ``created_utc``.
    """
    from astrotool.ml.commands import dataset_identity as identity

    return {**identity(dataset), "created_utc": (dataset.manifest.get("provenance") or {}).get("created_utc")}


def stamps_identity(inp) -> dict:
    """What tells loaded stamps (:class:`astrotool_lens.predict.Inputs`) apart: ``name``, ``n`` and
    ``stamps_sha256``, the SHA-256 (16 hex digits) of their galaxy and PSF pixels and shapes."""
    import hashlib

    h = hashlib.sha256()
    for a in (inp.gal, inp.psf):
        a = np.ascontiguousarray(a, dtype=np.float32)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return {"name": inp.stem, "n": int(len(inp.gal)), "stamps_sha256": h.hexdigest()[:16], "created_utc": None}


def input_identity(source) -> dict:
    """:func:`dataset_identity` of a dataset, :func:`stamps_identity` of loaded stamps."""
    return stamps_identity(source) if hasattr(source, "gal") else dataset_identity(source)


def _content(identity: dict) -> dict:
    """The part of an identity that says what was measured (not its name nor when it was made)."""
    return {k: v for k, v in identity.items() if k not in ("name", "created_utc")}


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def table_problem(path: str | Path, dataset, cfg: MeasureConfig) -> str | None:
    """Why an existing HSM table cannot serve ``dataset`` with ``cfg`` (None: it can).

    The table must exist and be readable, have been measured on this very
    dataset (:func:`dataset_identity`: same ``n`` and manifest), with the same
    :func:`hsm_settings`, and hold every method of ``cfg.methods``.

    Parameters
    ----------
    path : path-like
        The Parquet table.
    dataset : astrotool_lens.data.ShearDataset or astrotool_lens.predict.Inputs
        A dataset, or stamps loaded by :func:`astrotool_lens.predict.read_inputs` (same pixels).
    cfg : MeasureConfig
        The wanted methods and settings.

    Returns
    -------
    str or None
        The reasons, e.g. ``"measured on another dataset (n 8 -> 12, manifest_sha256 ... -> ...)"``, naming
        only what changed (``"measured on other stamps (stamps_sha256 3f0c... -> 9a1b...)"``).
    """
    from astrotool.errors import InputError
    from astrotool.io.tables import parquet_metadata

    path = Path(path)
    if not path.is_file():
        return f"no table {path}"
    try:
        meta = parquet_metadata(path)
    except InputError as exc:
        return f"unreadable table ({exc.problem})"
    old, new = meta.get("identity"), input_identity(dataset)
    problems = []
    if not isinstance(old, dict):
        problems.append("no record of the dataset it was measured on (an older table)")
    elif _content(old) != _content(new):   # what changed, and when each was made where that is known
        what = "another dataset" if "manifest_sha256" in new else "other stamps"
        changed = [k for k in (*_content(new), "created_utc") if old.get(k) != new.get(k)]
        problems.append(f"measured on {what} ("
                        + ", ".join(f"{k} {_fmt(old.get(k))} -> {_fmt(new.get(k))}" for k in changed) + ")")
    held = set(meta.get("methods") or [])   # a method it lacks is named as lacking, its settings are no change
    problems += _settings_changes(meta, cfg.model_copy(update={"methods": [m for m in cfg.methods if m in held]}))
    lacking = [m for m in cfg.methods if m not in held]
    if lacking:
        problems.append(f"lacks {', '.join(lacking)}")
    return "; ".join(problems) or None


def _settings_changes(meta: dict, cfg: MeasureConfig) -> list[str]:
    """``"key old -> new"`` for each :func:`hsm_settings` of ``cfg`` that a table's metadata records otherwise."""
    have = meta.get("settings") if isinstance(meta.get("settings"), dict) else {}
    return [f"{k} {_fmt(have.get(k))} -> {_fmt(want)}" for k, want in hsm_settings(cfg).items() if have.get(k) != want]


def replaced_settings(path: str | Path, source, cfg: MeasureConfig) -> list[str]:
    """What measuring the table at ``path`` again with ``cfg`` would replace: its settings that differ
    (``"conversion responsivity -> exact"``) for the methods of ``cfg`` it holds (and the shared ones) when it
    was measured on these very stamps; empty when there is no readable table, it is of other stamps (out of
    date) or of the same settings."""
    meta = _held(path, source)
    if meta is None:
        return []
    have = set(meta.get("methods") or [])   # a method it lacks has no settings there to replace
    return _settings_changes(meta, cfg.model_copy(update={"methods": [m for m in cfg.methods if m in have]}))


def _held(path: str | Path, source) -> dict | None:
    """The metadata of the table at ``path`` when it was measured on these very stamps (None: no readable
    table, or one of other stamps)."""
    from astrotool.errors import InputError
    from astrotool.io.tables import parquet_metadata

    if not Path(path).is_file():
        return None
    try:
        meta = parquet_metadata(path)
    except InputError:
        return None
    old = meta.get("identity")
    return meta if isinstance(old, dict) and _content(old) == _content(input_identity(source)) else None


def methods_to_measure(path: str | Path, source, cfg: MeasureConfig) -> list[str]:
    """The methods to measure for ``cfg`` into the table at ``path``: ``cfg.methods`` and, when the table was
    measured on these very stamps, those it holds (measured again alike, with ``cfg``'s settings, so that a
    table never loses a method), in :data:`~astrotool_lens.config.METHODS` order. A table of other stamps is
    out of date: its methods are not measured again."""
    from astrotool_lens.config import METHODS

    meta = _held(path, source)
    have = list(meta.get("methods") or []) if meta else []
    return [m for m in METHODS if m in set(cfg.methods) | set(have)]


def methods_to_add(path: str | Path, source, cfg: MeasureConfig, every_method: bool = True) -> list[str] | None:
    """The methods of ``cfg`` that the table at ``path`` lacks, to measure alone and join into it (``add`` of
    :func:`measure_dataset`), when it was measured on these very stamps with ``cfg``'s settings.

    Parameters
    ----------
    every_method : bool
        Compare the settings of every method the table holds (``lens measure``: a table is of one set of
        settings), else only those of ``cfg.methods`` (``evaluate``, ``validate``: a held method not asked
        for keeps its own, e.g. ``metacal_seed``).

    Returns
    -------
    list of str or None
        None: no such table, one of other stamps, or of other settings (measure it again).
    """
    meta = _held(path, source)
    if meta is None:
        return None
    have = list(meta.get("methods") or [])
    kept = have if every_method else [m for m in cfg.methods if m in have]
    if _settings_changes(meta, cfg.model_copy(update={"methods": kept})):
        return None
    return [m for m in cfg.methods if m not in have]


def measure_plan(path: str | Path, source, cfg: MeasureConfig, overwrite: bool,
                 every_method: bool = True) -> tuple[MeasureConfig, bool]:
    """What to measure into the table at ``path``: ``(cfg with its methods, add)``. Only the methods it lacks,
    joined in (``add``), when it holds these stamps with these settings (:func:`methods_to_add`); else
    ``cfg.methods`` and the methods it held (:func:`methods_to_measure`); everything asked with ``overwrite``."""
    add = None if overwrite else methods_to_add(path, source, cfg, every_method)
    return cfg.model_copy(update={"methods": add or methods_to_measure(path, source, cfg)}), bool(add)


def measure_dataset(dataset, cfg: MeasureConfig, out_path: str | Path, *, mapper: Callable,
                    metadata: dict | None = None, add: bool = False) -> dict:
    """Measure a generated dataset and write one Parquet table.

    Parameters
    ----------
    dataset : astrotool_lens.data.ShearDataset
        The dataset (its shards are the executor items).
    cfg : MeasureConfig
        The ``[lens.measure]`` section: methods, distortion-to-shear conversion and
        the HSM starting guesses.
    out_path : path-like
        The Parquet file, e.g. ``lens/predictions/<name>_hsm.parquet``.
    mapper : callable
        ``mapper(fn, items, desc=..., keys=...) -> [(key, result)]``, such as
        :meth:`astrotool.context.Context.map` (failed items left out).
    metadata : dict, optional
        More facts for the table's metadata, beside ``methods``, ``settings``
        (:func:`hsm_settings`) and ``identity`` (:func:`dataset_identity`),
        which :func:`table_problem` checks.
    add : bool
        Join the columns of ``cfg.methods`` into the table at ``out_path`` (measured on these stamps with
        these settings, :func:`methods_to_add`), keeping its other methods.

    Returns
    -------
    dict
        Per-method counts ``{"n": ..., "failed": {method: count}, "responsivity": {...}, "path": ...,
        "measured": [method, ...]}`` (``failed`` and ``responsivity`` as in the table's metadata: with ``add``
        the held methods' too; ``measured``: the methods this run measured); while
        items are unmeasured (other ``--shard`` tasks, failures: each item's columns are kept in a part file
        until every one exists) no table is written and the dict is
        ``{"n": m, "missing_parts": k, "parts": p, "path": ..., "written": False}``, ``m`` the stamps this run
        measured (a part kept from an earlier run counts 0); when another task has meanwhile written a table
        that serves, ``{"n": m, "path": ..., "written": False, "written_by_another_task": True}``.
    """
    if not callable(mapper):
        raise TypeError("measure_dataset: mapper is required (e.g. astrotool.context.Context.map)")
    require_packages(cfg)
    started, before = time.time(), _table_stamp(out_path)
    methods, identity = list(cfg.methods), dataset_identity(dataset)
    digest = _part_digest(cfg, identity)
    tasks = [MeasureTask(str(path), start, stop, tuple(methods), dataset.pixel_scale, cfg.guess_sig_gal,
                         cfg.guess_sig_psf, estimator_options(cfg),
                         _part_file(out_path, Path(path).stem, digest))
             for path, start, stop in dataset.shards]
    done = mapper(measure_shard, tasks, desc=f"measure {dataset.stem}", keys=[Path(t.path).stem for t in tasks])
    return _write_table([t.part for t in tasks], cfg, out_path, {"dataset": dataset.stem, **(metadata or {})},
                        identity, dataset, add=add, started=started, before=before,
                        measured=_log_problems(done))


STAMPS_PER_ITEM = 500
"""Stamps per executor item when measuring loaded stamps (:func:`measure_inputs`)."""

def _input_columns() -> dict:
    from astrotool_lens.predict import PREDICTION_COLUMNS

    return {k: PREDICTION_COLUMNS[k] for k in ("source", "true_g1", "true_g2")}


@dataclass(frozen=True)
class StampsTask:
    """Loaded stamps ``[start, stop)`` to measure (executor item of :func:`measure_inputs`)."""

    gal: np.ndarray
    psf: np.ndarray
    start: int
    methods: tuple
    pixel_scale: float
    guess_sig_gal: float
    guess_sig_psf: float
    options: dict = field(default_factory=dict)   # estimator_options
    part: str = ""   # as :class:`MeasureTask`'s


def measure_stamps(task: StampsTask, seed: int | None = None) -> dict:
    """Measure one :class:`StampsTask` into its part file (executor item; ``seed`` unused), as
    :func:`measure_shard`."""
    problems: list = []
    if _read_part(task.part, problems, names_only=True) is not None:
        return {"part": task.part, "n": 0}
    out = measure_arrays(task.gal, task.psf, task.methods, task.pixel_scale, task.guess_sig_gal, task.guess_sig_psf,
                         start=task.start, **task.options)
    out["index"] = np.arange(task.start, task.start + len(task.gal))
    _write_part(task.part, out)
    return {"part": task.part, "n": len(task.gal), **({"warnings": problems} if problems else {})}


def measure_inputs(inp, cfg: MeasureConfig, out_path: str | Path, *, mapper: Callable, pixel_scale: float = 1.0,
                   metadata: dict | None = None, add: bool = False) -> dict:
    """Measure stamps loaded by :func:`astrotool_lens.predict.read_inputs` (FITS files, folders, LensNet
    ``data.json``) and write one Parquet table, as :func:`measure_dataset` does for a dataset.

    The table has the same columns (row ``index`` = position in the input) plus ``source`` (the file of
    each stamp) and, when the input gives them (``data.json``), ``true_g1, true_g2``; its ``identity`` is
    :func:`stamps_identity`. The same pixels give the same numbers as the dataset they came from.

    Parameters
    ----------
    inp : astrotool_lens.predict.Inputs
        Galaxy stamps with one PSF stamp each.
    cfg : MeasureConfig
    out_path : path-like
    mapper : callable
        As for :func:`measure_dataset`; items of :data:`STAMPS_PER_ITEM` stamps.
    pixel_scale : float
        [arcsec / pixel] (labels the images; HSM works in pixels).
    metadata : dict, optional
        More facts for the table's metadata.
    add : bool
        As for :func:`measure_dataset`.

    Returns
    -------
    dict
        As :func:`measure_dataset`.
    """
    if not callable(mapper):
        raise TypeError("measure_inputs: mapper is required (e.g. astrotool.context.Context.map)")
    require_packages(cfg)
    h, w = np.shape(inp.gal)[-2:]
    if "ANACAL" in cfg.methods and h != w:   # FPFS's shapelets are square: every stamp would fail alone
        from astrotool.errors import InputError

        raise InputError(inp.origin or inp.stem, f"ANACAL (FPFS) needs square stamps; these are {h}x{w} pixels "
                                                 "(cut square stamps, or leave ANACAL out of --methods)")
    started, before = time.time(), _table_stamp(out_path)
    methods, n = tuple(cfg.methods), len(inp.gal)
    options, identity = estimator_options(cfg), stamps_identity(inp)
    digest = _part_digest(cfg, identity)
    tasks = [StampsTask(inp.gal[a:a + STAMPS_PER_ITEM], inp.psf[a:a + STAMPS_PER_ITEM], a, methods, float(pixel_scale),
                        cfg.guess_sig_gal, cfg.guess_sig_psf, options,
                        _part_file(out_path, f"stamps{a:06d}", digest)) for a in range(0, n, STAMPS_PER_ITEM)]
    done = mapper(measure_stamps, tasks, desc=f"measure {inp.stem}", keys=[f"stamps{t.start:06d}" for t in tasks])
    extra = {"source": np.asarray(inp.source, dtype=str)}
    if inp.truth:
        extra.update(true_g1=np.asarray(inp.truth["g1"], float), true_g2=np.asarray(inp.truth["g2"], float))
    return _write_table([t.part for t in tasks], cfg, out_path,
                        {"input": str(inp.origin or inp.stem), **(metadata or {})}, identity, inp, extra, add,
                        started=started, before=before, measured=_log_problems(done))


def running_command(default: str) -> str:
    """The running command (``"lens validate"``), for the provenance of a table it writes; ``default`` outside
    the command line (a library call)."""
    from astrotool.context import current

    command = current().command
    return default if command == "astro" else command


def _write_table(parts: list[str], cfg: MeasureConfig, out_path: str | Path, facts: dict, identity: dict,
                 source, extra: dict | None = None, add: bool = False, *, started: float,
                 before: tuple | None, measured: int = 0) -> dict:
    """Join the items' columns in index order, convert, write the Parquet table (all items or nothing).

    Items this run did not measure (other ``--shard`` tasks, failures) are read from their part files
    (:func:`_part_file`); while one is missing no table is written and ``missing_parts`` says how many
    (the last task to finish, or a re-run, writes it), unless another task has written a table that serves
    ``source`` since this run began (``written_by_another_task``: the table is no longer ``before``, its
    :func:`_table_stamp` when the run began, so the table that ``--overwrite`` replaces never counts).
    Once a table is written (here or by that task) the part files are removed by :func:`_remove_parts`:
    this run's, and others' written before it began. With ``add`` the columns are joined by ``index`` into
    the table at ``out_path``, whose methods, settings and counts are kept beside the new ones. When no table
    is written, ``n`` is ``measured``: the stamps this run measured (its items' ``n``).
    """
    import pyarrow as pa

    from astrotool.io.tables import parquet_metadata, read_parquet, write_parquet

    methods, conversion = list(cfg.methods), cfg.conversion
    cols = []
    for part in parts:
        done = _read_part(part)
        if done is None:
            Path(part).unlink(missing_ok=True)   # unreadable (written atomically, so broken): measured again
            if _table_stamp(out_path) != before and table_problem(out_path, source, cfg) is None:
                _remove_parts(out_path, parts, started)   # another task read them first and wrote it
                return {"n": measured, "path": str(out_path), "written": False, "written_by_another_task": True}
            return {"n": measured, "missing_parts": sum(1 for p in parts if not Path(p).is_file()), "parts": len(parts),
                    "path": str(out_path), "written": False}
        cols.append(done)
    table = {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}
    order = np.argsort(table["index"], kind="stable")
    table = {k: v[order] for k, v in table.items()}
    resp = apply_responsivity(table, methods) if conversion == "responsivity" else {}
    from astrotool_lens.config import METHODS, RESPONSE_METHODS
    from astrotool_lens.metacal import shear_from_response

    for m in (m for m in methods if m in RESPONSE_METHODS):  # the response averaged over the whole table
        table[f"{m.lower()}_g1"], table[f"{m.lower()}_g2"] = shear_from_response(table, prefix=m.lower())
    failed = {m: int(np.sum(table[f"{m.lower()}_flag"] != 0)) for m in methods}
    meta = {**facts, "methods": list(methods), "conversion": conversion, "responsivity": resp, "failed": failed,
            "settings": hsm_settings(cfg), "identity": identity}
    ordered = {"index": table.pop("index"), **(extra or {}), **table}
    if add:   # the held table's columns first, then the new methods' (same stamps, same index order)
        old, held = read_parquet(out_path), parquet_metadata(out_path)
        if not np.array_equal(old.column("index").to_numpy(), ordered["index"]):
            from astrotool.errors import InputError

            raise InputError(out_path, "its rows are not those of the stamps measured (use --overwrite)")
        have = set(held.get("methods") or []) | set(methods)
        ordered = {**{c: old.column(c).to_numpy(zero_copy_only=False) for c in old.column_names},
                   **{k: v for k, v in ordered.items() if k not in old.column_names}}
        methods = [m for m in METHODS if m in have]
        meta = {**meta, "methods": methods, "responsivity": {**(held.get("responsivity") or {}), **resp},
                "failed": {**(held.get("failed") or {}), **failed},
                "settings": {**(held.get("settings") or {}), **meta["settings"]}}
    from astrotool_lens import fpfs, metacal

    described = {"index": "row of the stamp in the dataset or input", **hsm_descriptions(methods),
                 **metacal.DESCRIPTIONS, **fpfs.DESCRIPTIONS, **_input_columns()}
    units = {**metacal.UNITS, **fpfs.UNITS}
    write_parquet(pa.table(ordered), out_path, metadata=meta, command=running_command("lens measure"),
                  units={k: v for k, v in units.items() if k in ordered},
                  descriptions={k: v for k, v in described.items() if k in ordered})
    _remove_parts(out_path, parts, started)
    return {"n": int(len(ordered["index"])), "failed": meta["failed"], "responsivity": meta["responsivity"],
            "path": str(out_path), "measured": list(cfg.methods)}
