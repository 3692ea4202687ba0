"""``astro ztf prepare``: ingested alerts -> a training set of stamps, features, labels and splits.

The preprocessing of the ALeRCE stamp classifier (Carrasco-Davis et al. 2021),
with NaN kept visible:

* stamps: science, template and difference cropped at the centre to ``crop``
  px (21 in ALeRCE, 33 or 45 in Neira et al. 2024); each image normalised to
  [0, 1] on its own (``(x - min) / max(x - min)``, NaN ignored); NaN -> 0 with a
  fourth channel that is 1 where any of the three was NaN (edge stamps);
* features (:data:`FEATURES`, ALeRCE's 23): stored clipped (:data:`CLIP`), ZTF's
  missing-value fill (-999) or NaN replaced by the clip floor where there is
  one, else kept missing (NaN) and imputed with the training mean when
  z-scored (:func:`standardise`); ``isdiffpos`` as 1/0; galactic and ecliptic
  coordinates from ra/dec; ``non_detections = ncovhist - ndethist``. Their mean
  and standard deviation over the *training* split are stored in the manifest
  (``feature_mean``, ``feature_std``) and carried into each checkpoint, which
  z-scores with them;
* labels: the label column's classes (:data:`astrotool_ztf.simulate.CLASSES`
  for simulated alerts, ``label_map`` maps other names, e.g. SIMBAD types);
  alerts of other classes are left out;
* splits by ``objectId`` (an object's alerts never straddle splits): per class,
  ``test_per_class`` and ``val_per_class`` objects (ALeRCE: 100 each), the
  rest train, fixed by the seed; with ``holdout`` every object is a test
  object (a set drawn apart, e.g. with another seed, to score models on);
* sequences: every alert is kept, with ``alert_index`` (0 = first, by ``jd``)
  and ``n_alerts`` of its object; single-alert models use the first alerts.

The set is an :class:`astrotool.ml.data.ArrayDataset` (kind ``ztf-stamps``):
arrays ``stamps`` ``(4, crop, crop)`` and ``features`` ``(23,)``, one shard per
alert table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astrotool.errors import InputError
from astrotool.ml.data import ArrayDataset
from astrotool.workspace import atomic_dir
from astrotool_ztf.ingest import FEATURE_FIELDS, column_metadata

__docformat__ = "numpy"

CROPS = (21, 33, 45, 63)
"""The crops ``ztf.prepare.crop`` allows [px]."""

KIND = "ztf-stamps"
"""``kind`` of a prepared ZTF data set's manifest."""

FEATURES = ("sgscore1", "sgscore2", "sgscore3", "distpsnr1", "distpsnr2", "distpsnr3", "isdiffpos", "fwhm",
            "magpsf", "sigmapsf", "ra", "dec", "diffmaglim", "classtar", "ndethist", "ncovhist", "ecl_lat",
            "ecl_long", "gal_lat", "gal_long", "non_detections", "chinr", "sharpnr")
"""The 23 metadata features of the deployed ALeRCE stamp classifier, in its order."""

CLIP = {"sgscore1": (-1, None), "sgscore2": (-1, None), "sgscore3": (-1, None), "distpsnr1": (-1, None),
        "distpsnr2": (-1, None), "distpsnr3": (-1, None), "fwhm": (None, 10), "ndethist": (None, 20),
        "ncovhist": (None, 3000), "chinr": (-1, 15), "sharpnr": (-1, 1.5), "non_detections": (None, 2000)}
"""ALeRCE's clipping limits ``(low, high)`` (None: that side unclipped)."""

DERIVED = ("ecl_lat", "ecl_long", "gal_lat", "gal_long", "non_detections", "isdiffpos")
"""Features computed from other columns (``isdiffpos``: positive when missing)."""

CHANNELS = ("science", "template", "difference", "nan_mask")
"""Channels of a stamp array: science, template, difference and the NaN mask."""

DESCRIPTIONS = {
    "index": "alert number in the set (row of its stamps and features arrays)",
    "label": "class number: its place in the set's classes (manifest 'classes')",
    "class_name": "class of the alert (its ztf.prepare.label_column value, through label_map)",
    "split": "train, val or test (an object's alerts share theirs)",
    "alert_index": "place of the alert among its object's alerts in the set, by jd (0: the first)",
    "n_alerts": "alerts of its object in the set (over every input)",
    "source": "alert table the alert was read from",
}
"""Descriptions of the set's table's own columns; ``objectId``, ``candid`` and ``jd`` keep the alert table's
(:func:`astrotool_ztf.ingest.column_metadata`)."""


class StampDataset(ArrayDataset):
    """A prepared ZTF set (see the module docstring)."""

    KIND = KIND
    SAMPLE_WORD = "alert"

    @property
    def classes(self) -> list[str]:
        return list(self.attrs["classes"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.attrs["features"])


def normalise_stamps(science, template, difference) -> np.ndarray:
    """``(N, 4, s, s)`` float32: each image scaled to [0, 1] on its own, NaN -> 0, and the NaN mask channel."""
    import warnings

    x = np.stack([science, template, difference], axis=1).astype(np.float64)
    nan = ~np.isfinite(x)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN image
        lo = np.nanmin(x, axis=(2, 3), keepdims=True)
        span = np.nanmax(x - lo, axis=(2, 3), keepdims=True)
        y = (x - lo) / np.where(span > 0, span, 1.0)
    y = np.where(nan | ~np.isfinite(y), 0.0, y)
    mask = nan.any(axis=1, keepdims=True).astype(np.float64)
    return np.concatenate([y, mask], axis=1).astype(np.float32)


def crop_centre(stamps: np.ndarray, size: int) -> np.ndarray:
    """The centred ``size`` x ``size`` crop of ``(..., s, s)`` stamps (ALeRCE: ``[21:42, 21:42]`` of 63 for 21)."""
    s = stamps.shape[-1]
    if size > s:
        raise ValueError(f"crop of {size} px from {s} px stamps")
    lo = s // 2 - size // 2
    return stamps[..., lo:lo + size, lo:lo + size]


def features(table) -> np.ndarray:
    """``(N, 23)`` float32 features of :data:`FEATURES` from an alert table (pandas), clipped, fills replaced."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    n = len(table)

    def col(name):
        if name not in table:
            return np.full(n, np.nan)
        return np.asarray(table[name].to_numpy(dtype=float, na_value=np.nan), float)

    ra, dec = col("ra"), col("dec")
    ok = np.isfinite(ra) & np.isfinite(dec)
    gal = np.full((n, 2), np.nan)
    ecl = np.full((n, 2), np.nan)
    if ok.any():
        c = SkyCoord(ra[ok] * u.deg, dec[ok] * u.deg)
        g, e = c.galactic, c.barycentrictrueecliptic
        gal[ok] = np.column_stack([g.b.deg, g.l.deg])
        ecl[ok] = np.column_stack([e.lat.deg, e.lon.deg])
    derived = {"ecl_lat": ecl[:, 0], "ecl_long": ecl[:, 1], "gal_lat": gal[:, 0], "gal_long": gal[:, 1],
               "non_detections": col("ncovhist") - col("ndethist"),
               "isdiffpos": np.where(table["isdiffpos"].astype("boolean").fillna(True).to_numpy(bool), 1.0, 0.0)
               if "isdiffpos" in table else np.ones(n)}
    out = np.empty((n, len(FEATURES)))
    for j, name in enumerate(FEATURES):
        v = derived[name] if name in derived else col(name)
        lo, hi = CLIP.get(name, (None, None))
        v = np.where(np.isfinite(v) & (v > -998), v, np.nan if lo is None else lo)
        out[:, j] = np.clip(v, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)
    return out.astype(np.float32)


def assign_splits(objects, labels, n_val: int, n_test: int, seed: int, holdout: bool = False) -> dict[str, str]:
    """``objectId -> "train" | "val" | "test"``: per class, ``n_test`` then ``n_val`` objects drawn by seed.

    A class with too few objects gives each of test and val at most a third of them (at least one when it
    has three or more). ``holdout``: every object is a test object (a set drawn apart from the training set).
    """
    from astrotool.seeding import derive_seed

    objects, labels = np.asarray(objects), np.asarray(labels)
    if holdout:
        return {str(o): "test" for o in np.unique(objects)}
    out = {}
    for cls in sorted(set(labels.tolist())):
        members = np.unique(objects[labels == cls])
        rng = np.random.default_rng(derive_seed(seed, "ztf-split", str(cls)))
        members = members[rng.permutation(len(members))]
        third = len(members) // 3
        t, v = min(n_test, third), min(n_val, third)
        for i, o in enumerate(members):
            out[str(o)] = "test" if i < t else "val" if i < t + v else "train"
    return out


REQUIRED = ("objectId", "candid", "jd", *(f for f in FEATURE_FIELDS if f != "isdiffpos"))
"""Columns an alert table must hold (those :data:`FEATURES` are computed from; ``isdiffpos`` is positive
when missing)."""


def read_alert_table(alerts_path):
    """An ingested alert table (pandas), refused with the file named when it cannot be read, lacks
    :data:`REQUIRED` columns or holds a feature column that is not numeric."""
    import pandas as pd
    import pyarrow as pa

    try:
        table = pd.read_parquet(alerts_path)
    except (OSError, pa.ArrowException) as e:
        raise InputError(alerts_path, f"not a readable alert table ({e}); ingest it again") from None
    missing = [c for c in REQUIRED if c not in table]
    if missing:
        raise InputError(alerts_path, f"no column {', '.join(missing)} (an alert table of `astro ztf ingest` "
                                      "holds them)")
    for c in FEATURES:
        if c in table and c != "isdiffpos" and not pd.api.types.is_numeric_dtype(table[c]):
            try:
                table[c].to_numpy(dtype=float, na_value=np.nan)
            except (TypeError, ValueError) as e:
                raise InputError(alerts_path, f"column {c!r} is not numeric ({e})") from None
    return table


def check_crop(pairs, crop: int) -> None:
    """Refuse, before any work, stamp files whose stamps are smaller than ``crop`` (``ztf.prepare.crop``)."""
    from astrotool.io.hdf5 import open_h5

    for _, stamps_path in pairs:
        if not Path(stamps_path).is_file():
            continue  # read_labelled names it
        with open_h5(stamps_path) as h5:
            if "science" not in h5:
                raise InputError(stamps_path, "not a stamps file of ztf ingest: no 'science' stamps (ingest again)")
            side = int(h5["science"].shape[-1])
        if crop > side:
            fits = [c for c in CROPS if c <= side]
            instead = f"set ztf.prepare.crop to {fits[-1]}, or " if fits else ""
            raise InputError(stamps_path, f"stamps of {side} px cannot be cropped to {crop} px "
                                          f"(ztf.prepare.crop = {crop}); {instead}ingest again with a "
                                          f"--stamp-size of at least {crop}")


def read_labelled(alerts_path, stamps_path, label_column: str, label_map: dict, classes) -> tuple:
    """An alert table and its stamps, restricted to alerts with a known class.

    A table whose alerts lacked a feature field when ingested (:func:`astrotool_ztf.ingest.missing_fields`:
    the column is there, but null) is refused as one without the column.

    Returns
    -------
    table : pandas.DataFrame
        The labelled rows, with ``label`` (class index) and ``class_name``.
    stamps : dict of numpy.ndarray
        ``science``, ``template``, ``difference`` of those rows.
    found : set of str
        Every label of the table (through ``label_map``), of a class in ``classes`` or not.
    """
    from astrotool_ztf.ingest import missing_fields, read_stamps

    table = read_alert_table(alerts_path)
    lacking = [f for f in missing_fields(stamps_path) if f in FEATURE_FIELDS]
    if lacking:
        raise InputError(alerts_path, f"its alerts have no feature field(s) {', '.join(lacking)} (the columns "
                                      "are null: the input lacked them); leave the table out of the set")
    if label_column not in table:
        raise InputError(alerts_path, f"no label column {label_column!r} (columns: {', '.join(table.columns[:15])}"
                                      f"{', ...' if len(table.columns) > 15 else ''}); set ztf.prepare.label_column")
    stamps = read_stamps(stamps_path)
    if len(stamps["candid"]) != len(table) or not np.array_equal(stamps["candid"], table["candid"].to_numpy()):
        raise InputError(stamps_path, f"does not hold the stamps of {Path(alerts_path).name} in its order "
                                      "(ingest again)")
    names = table[label_column].astype("string").fillna("").map(lambda v: label_map.get(v, v))
    found = set(names.unique()) - {""}
    index = {c: i for i, c in enumerate(classes)}
    keep = names.isin(list(classes)).to_numpy()
    table = table[keep].reset_index(drop=True)
    table["class_name"] = names[keep].to_numpy()
    table["label"] = table["class_name"].map(index).astype(int)
    return table, {k: stamps[k][keep] for k in ("science", "template", "difference")}, found


def _drop_repeated_alerts(tables, stamp_sets):
    """The tables and stamps with every ``candid`` once (its first occurrence, in input order), and the
    number of rows left out: the same alert in two inputs (a nightly archive and a broker dump) would
    otherwise be two steps of its object's sequence."""
    seen: set = set()
    out_t, out_s, n = [], [], 0
    for t, st in zip(tables, stamp_sets):
        keep = (~t["candid"].isin(seen) & ~t["candid"].duplicated()).to_numpy()
        seen.update(t["candid"].tolist())
        if not keep.all():
            n += int((~keep).sum())
            t, st = t[keep].reset_index(drop=True), {k: v[keep] for k, v in st.items()}
        out_t.append(t)
        out_s.append(st)
    return out_t, out_s, n


def absent_classes(pairs, found: set, classes: list, cfg, log=None) -> list[str]:
    """The classes of the set that no alert of the tables holds, refused or warned about.

    A class named in ``ztf.prepare.classes`` is refused (a model that never learns it), unless the set is a
    hold-out; one of the default classes (``classes`` empty) is warned about: the set keeps every default
    class, and a model trained on it one it never sees. The messages list the classes that the labels gave
    (through ``label_map``), not the raw label values left out.
    """
    from astrotool_ztf.simulate import CLASSES

    absent = [c for c in classes if c not in found]
    if not absent:
        return absent
    known = set(classes) | set(CLASSES) | set(cfg.label_map.values())
    shown, read = sorted(found & known), [Path(a).name for a, _ in pairs]
    others = len(found - known)
    what = (f"no alert of the class(es) {', '.join(absent)} "
            f"({'ztf.prepare.classes' if cfg.classes else 'the default classes: ztf.prepare.classes is empty'}) "
            f"in column {cfg.label_column!r} of {', '.join(read[:5])}{', ...' if len(read) > 5 else ''}; the "
            f"classes found: {', '.join(shown) or 'none'}"
            + (f" (and {others} other label value(s), not mapped to a class by ztf.prepare.label_map: left out)"
               if others else ""))
    if cfg.classes and not cfg.holdout:   # a training set without a class asked for: a model that never learns it
        raise InputError(Path(pairs[0][0]).parent, what)
    if log is not None and any(c in found for c in classes):   # none at all: the error that follows says it
        if cfg.holdout:   # a hold-out set keeps the model's classes; evaluate scores the ones present
            log.warning("%s (a hold-out set: kept, scored over the classes present)", what)
        else:
            log.warning("%s: the set keeps all %d classes, and a model trained on it has %d class(es) it never "
                        "sees; set ztf.prepare.classes = [%s] to leave them out", what, len(classes), len(absent),
                        ", ".join(f'"{c}"' for c in classes if c in found))
    return absent


def dataset_settings(cfg) -> dict:
    """What the prepared set depends on (compared on a rerun)."""
    return cfg.model_dump(mode="json", exclude={"name", "inputs"})


def prepare_dataset(pairs, out_dir, cfg, seed: int, overwrite: bool = False, log=None) -> dict:
    """Write the prepared set from ``(alerts_path, stamps_path)`` pairs.

    Parameters
    ----------
    pairs : list of (path, path)
        Alert tables and their stamp files (``astro ztf ingest`` outputs).
    out_dir : path-like
        ``ztf/prepared/<name>``.
    cfg : astrotool_ztf.config.PrepareConfig
    seed : int
        Fixes the splits.
    overwrite : bool
        Replace an existing set made with other settings (otherwise refused).

    Returns
    -------
    dict
        Summary: alerts and objects per split and class, the output folder, whether it was kept.

    Raises
    ------
    astrotool.errors.InputError
        No labelled alerts; an input without the label column or whose stamps do not match.
    astrotool.made_with.SettingsChanged
        The set exists, made with other settings or inputs, and ``overwrite`` is False.
    """
    import pandas as pd

    from astrotool.made_with import SettingsChanged, changes, file_checksum
    from astrotool.ml.data import MANIFEST_SUFFIX

    from astrotool_ztf.ingest import INGEST_VERSION
    from astrotool_ztf.simulate import CLASSES

    out_dir = Path(out_dir)
    classes = list(cfg.classes or CLASSES)
    # inputs: each alert table's checksum; ingest_version: how the stamps read were placed (a set of older ones)
    settings = {"ztf": {"prepare": dataset_settings(cfg)}, "seed": int(seed), "ingest_version": INGEST_VERSION,
                "inputs": {Path(a).name: file_checksum(a, Path(a).with_name(f".{Path(a).name}.checksum.json"))
                           for a, _ in sorted(pairs)}}
    if any(out_dir.glob(f"*{MANIFEST_SUFFIX}")) and not overwrite:
        old = StampDataset(out_dir)
        before = dict(old.attrs.get("settings", {}))
        if isinstance(before.get("inputs"), list) and before["inputs"] == sorted(settings["inputs"]):
            before["inputs"] = settings["inputs"]   # a set prepared before checksums were kept: by name
        changed = changes(before, settings)
        if changed:
            raise SettingsChanged(old.manifest_path, changed)
        return {"dataset": str(out_dir), "kept": True, **set_summary(old)}
    check_crop(pairs, cfg.crop)
    tables, stamp_sets, found = [], [], set()
    for alerts_path, stamps_path in pairs:  # every input read before the old set is removed
        t, s, labels = read_labelled(alerts_path, stamps_path, cfg.label_column, cfg.label_map, classes)
        tables.append(t)
        stamp_sets.append(s)
        found |= labels
    absent_classes(pairs, found, classes, cfg, log)
    tables, stamp_sets, n_repeated = _drop_repeated_alerts(tables, stamp_sets)
    if n_repeated and log is not None:
        log.warning("%d repeated alert(s) (the same candid, in one input or several) kept once", n_repeated)
    used = [i for i, t in enumerate(tables) if len(t)]  # one shard per input that keeps alerts
    tables, stamp_sets = [tables[i] for i in used], [stamp_sets[i] for i in used]
    sources = [Path(pairs[i][0]).name for i in used]
    n_total = sum(len(t) for t in tables)
    if n_total == 0:
        raise InputError(Path(pairs[0][0]).parent if pairs else out_dir,
                         f"no alert with a class in {classes} in column {cfg.label_column!r}")
    allt = pd.concat(tables, ignore_index=True)
    split_of = assign_splits(allt["objectId"], allt["label"], cfg.val_per_class, cfg.test_per_class, seed,
                             cfg.holdout)
    if log is not None and not cfg.holdout:  # a small class: test and val capped at a third of its objects each
        for c, n in allt.drop_duplicates("objectId")["class_name"].value_counts().sort_index().items():
            if n // 3 < max(cfg.test_per_class, cfg.val_per_class):
                log.info("class %s has %d object(s): test and val hold at most a third each (%d and %d, not "
                         "test_per_class %d and val_per_class %d)", c, n, min(cfg.test_per_class, n // 3),
                         min(cfg.val_per_class, n // 3), cfg.test_per_class, cfg.val_per_class)
    # order of each object's alerts in time, over every input
    order = allt.sort_values(["objectId", "jd"], kind="stable")
    alert_index = order.groupby("objectId").cumcount().reindex(allt.index).to_numpy()
    n_alerts = allt.groupby("objectId")["objectId"].transform("size").to_numpy()
    with atomic_dir(out_dir) as tmp:  # the old set stays until the new is complete
        manifest = _write_set(tmp, out_dir.name, tables, stamp_sets, sources, split_of, alert_index, n_alerts,
                              classes, cfg, settings)
    summary = set_summary(StampDataset(out_dir))
    if log is not None:
        log.info("prepared %d alerts of %d objects -> %s", manifest["n"], summary["objects"], out_dir)
    return {"dataset": str(out_dir), "kept": False, **summary}


def set_summary(ds: StampDataset) -> dict:
    """What ``prepare`` reports of a set, made now or kept: ``n`` (alerts), ``objects`` and
    ``alerts_per_split_and_class`` (``{split: {class: alerts}}``), from its metadata."""
    import pandas as pd

    meta = ds.metadata(["objectId", "split", "class_name"])
    counts = pd.crosstab(pd.Series(meta["split"], name="split"), pd.Series(meta["class_name"], name="class"))
    return {"n": ds.n, "objects": int(len(set(meta["objectId"].tolist()))),
            "alerts_per_split_and_class": {s: {c: int(v) for c, v in row.items()} for s, row in counts.iterrows()}}


def _write_set(folder, name, tables, stamp_sets, sources, split_of, alert_index, n_alerts, classes, cfg,
               settings) -> dict:
    """Write the shards, table and manifest of a prepared set into ``folder``; its manifest."""
    import warnings

    from astrotool.ml.data import DatasetWriter

    out_dir = Path(folder).parent / name  # for messages
    writer = DatasetWriter(str(folder), name, shard_product="stamps", table_product="alerts", kind=KIND,
                           compression=cfg.compression, command="ztf prepare")
    start = 0
    feats_train = []
    for shard, (t, s) in enumerate(zip(tables, stamp_sets)):
        rows = slice(start, start + len(t))
        x = normalise_stamps(*(crop_centre(s[k], cfg.crop) for k in ("science", "template", "difference")))
        f = features(t)
        split = np.array([split_of[str(o)] for o in t["objectId"]])
        feats_train.append(f[split == "train"])
        meta = {"objectId": t["objectId"].astype(str).to_numpy(), "candid": t["candid"].to_numpy(np.int64),
                "jd": t["jd"].to_numpy(float), "label": t["label"].to_numpy(np.int64),
                "class_name": t["class_name"].astype(str).to_numpy(), "split": split,
                "alert_index": alert_index[rows].astype(np.int64), "n_alerts": n_alerts[rows].astype(np.int64),
                "source": np.full(len(t), sources[shard])}
        writer.write_shard(shard, start, {"stamps": x, "features": f}, meta)
        start += len(t)
    train = np.concatenate(feats_train) if feats_train else np.zeros((0, len(FEATURES)), np.float32)
    if len(train) == 0 and not cfg.holdout:
        raise InputError(out_dir, "no alert in the training split (more objects are needed)")
    if len(train) == 0:  # a hold-out set: models z-score with their own training statistics
        train = np.concatenate([features(t) for t in tables])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a feature missing from every training alert
        mean, std = np.nanmean(train, axis=0), np.nanstd(train, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    manifest = writer.finalize(len(tables), attrs={
        "classes": classes, "features": list(FEATURES), "channels": list(CHANNELS), "crop": cfg.crop,
        "feature_mean": [float(v) for v in mean], "feature_std": [float(v) for v in std],
        "clip": {k: list(v) for k, v in CLIP.items()}, "settings": settings},
        **column_metadata(["objectId", "candid", "jd", *DESCRIPTIONS], DESCRIPTIONS))
    return manifest


def standardise(features_raw: np.ndarray, mean, std) -> np.ndarray:
    """Z-scored features with the training statistics (those of the manifest or the checkpoint); a missing
    value becomes 0, the training mean."""
    z = (np.asarray(features_raw, np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.where(np.isfinite(z), z, 0.0).astype(np.float32)


def first_alerts(ds: StampDataset, split: str) -> np.ndarray:
    """Indices of the first alert of each object in ``split`` (the single-alert task)."""
    meta = ds.metadata(["split", "alert_index"])
    return np.flatnonzero((meta["split"] == split) & (meta["alert_index"] == 0))
