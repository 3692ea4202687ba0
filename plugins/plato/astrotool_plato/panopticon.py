"""Moving over from Panopticon: its TOML configuration translated key by key, its data layout read and written.

``astro plato config import panopticon.toml`` reads a Panopticon configuration
(``config/default.toml`` of At0micBee/Panopticon) and writes the astrotool
configuration that does the same, one line per key, each with a comment naming
the Panopticon key it came from. Keys with no counterpart are kept as comments
saying why (paths: astrotool uses its workspace; ``[dataloader]`` workers:
astrotool streams from HDF5 shards itself). An unknown optimizer or scheduler
name, a key Panopticon does not have (:data:`KNOWN`), a value of the wrong type
(a non-integer for an integer), or ``[fraction]`` not summing to 1 is refused with the key named.

=============================  ==========================================
Panopticon                     astrotool
=============================  ==========================================
``seed``                       ``[core] seed``
``training_epochs``            ``[plato.train] epochs``
``[fraction] train/valid/test``  ``[plato.prepare] split``
``[dataloader.train] batch_size``  ``[plato.train] batch_size``
``[optimizer] name, kwargs``   ``optimizer``, ``lr``, ``weight_decay``, ``optimizer_kwargs``
``[scheduler] name, use, kwargs``  ``scheduler``, ``scheduler_kwargs``
``[model] name``               ``decoder``: U3P -> ``unet3p``, U -> ``unet``, UPP -> ``unetpp``
``[model] loss``               ``loss``: BCELoss/BCEWithLogitsLoss -> ``bce``, Dice -> ``dice``
``[model.general]``            ``width`` (init_features), ``dropout`` (drop_rate), ``[plato.prepare] channels``
                               (channels_in: 1 ``coadd``, more ``groups``)
``[model.convolution]``        ``kernel_size``, ``dilation`` (padding is "same", reflect)
``[bounds] transit_depth``     ``[plato.prepare] depth_bounds`` [ppm]
=============================  ==========================================

``astro plato import-panopticon DIR`` reads Panopticon's data folder (one
Feather file per simulation and quarter, ``Complete_Parameters.ftr``) into
``plato/raw`` and ``plato/labels``; ``astro plato export-panopticon DIR`` writes
simulated curves in that layout (:func:`read_layout`, :func:`write_layout`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from astrotool.context import astro_command
from astrotool.errors import InputError
from astrotool_plato import PANOPTICON_KEYS

__docformat__ = "numpy"

DECODERS = {"Panopticon_U3P": "unet3p", "Panopticon_U": "unet", "Panopticon_UPP": "unetpp"}
"""Panopticon model name -> our decoder name."""
LOSSES = {"BCELoss": "bce", "BCEWithLogitsLoss": "bce", "DiceLoss": "dice", "Dice": "dice"}
"""Panopticon loss name -> our loss name."""


KNOWN = {
    "": PANOPTICON_KEYS,
    "fraction": ("train", "valid", "test"),
    "optimizer": ("name", "kwargs"),
    "scheduler": ("name", "use", "kwargs"),
    "model": ("name", "loss", "activation", "general", "convolution", "trans_conv"),
    "model.general": ("channels_in", "channels_out", "init_features", "drop_rate"),
    "model.convolution": ("kernel_size", "dilation", "padding", "padding_mode", "bias"),
}
"""Panopticon's keys (its ``config/default.toml``) per table; any other key is refused, naming it. ``[bounds]``
and ``[model.trans_conv]`` take any key (noted as not translated)."""
LOADER_KEYS = ("batch_size", "shuffle", "num_workers", "drop_last", "prefetch_factor", "persistent_workers",
               "pin_memory", "pin_memory_device", "timeout", "in_order", "multiprocessing_context")
"""``torch.utils.data.DataLoader`` keyword arguments a ``[dataloader.*]`` table may hold."""


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def translate(pan: dict, source: str = "panopticon.toml", warnings: list | None = None) -> tuple[dict, list[str]]:
    """Panopticon settings -> ``({section: {key: (value, comment)}}, notes)``.

    Parameters
    ----------
    pan : dict
        The parsed Panopticon TOML.
    source : str
        The file named in errors.
    warnings : list, optional
        Receives what the translation changed silently otherwise (``[scheduler]`` without ``use``: off).

    Raises
    ------
    astrotool.errors.InputError
        An unknown optimizer, scheduler, model or loss name (a torch scheduler astrotool lacks: with ``use =
        true``), an unknown key, a value of the wrong type (``[scheduler] use`` not a boolean, a non-integer for
        an integer included), a negative seed, a depth bound above 1, both ``[dataloader]`` and
        ``[dataloaders]``, or fractions not summing to 1.
    """
    import inspect

    import torch

    from astrotool_plato.config import OPTIMIZERS, SCHEDULER_HINT, SCHEDULERS

    out: dict[str, dict] = {"core": {}, "plato.prepare": {}, "plato.train": {}}
    notes: list[str] = []
    warnings = [] if warnings is None else warnings

    def bad(key, msg):
        raise InputError(source, f"{key}: {msg}")

    def num(key, v, kind=float):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            bad(key, f"expected a number, got {v!r}")
        if kind is int and isinstance(v, float) and not v.is_integer():   # not rounded silently
            bad(key, f"expected a whole number, got {v!r}")
        return kind(v)

    def table(key, v):
        if not isinstance(v, dict):
            bad(key, f"expected a table [{key}], got {v!r}")
        return v

    def known(key, tab, keys):
        unknown = sorted(set(tab) - set(keys))
        if unknown:
            where = f"[{key}] " if key else ""
            bad(key or "top level", f"unknown key(s) {where}{', '.join(unknown)} (Panopticon's keys here: "
                                    f"{', '.join(sorted(keys))})")

    known("", pan, KNOWN[""])
    for key in ("fraction", "dataloader", "dataloaders", "optimizer", "scheduler", "model", "bounds"):
        if key in pan:
            table(key, pan[key])
            if key in KNOWN:
                known(key, pan[key], KNOWN[key])
    for key in ("general", "convolution", "trans_conv"):
        if key in pan.get("model", {}):
            table(f"model.{key}", pan["model"][key])
            if f"model.{key}" in KNOWN:
                known(f"model.{key}", pan["model"][key], KNOWN[f"model.{key}"])
    for sec in ("dataloader", "dataloaders"):
        for key, v in pan.get(sec, {}).items():
            known(f"{sec}.{key}", table(f"{sec}.{key}", v), LOADER_KEYS)
    for sec in ("optimizer", "scheduler"):
        if "kwargs" in pan.get(sec, {}):
            table(f"{sec}.kwargs", pan[sec]["kwargs"])

    paths = [k for k in ("path_data", "path_prepared", "path_output") if k in pan]
    if paths:
        notes.append(f"{', '.join(paths)}: no keys here -- light curves go to plato/raw/ (or are given to "
                     "`prepare`), prepared sets to plato/prepared/, models to plato/models/, reports to plato/reports/")
    if pan.get("base_model"):
        notes.append(f"base_model = {pan['base_model']!r}: training resumes from its own checkpoints only")
    if "export_sets" in pan:
        notes.append("export_sets: the splits are in the prepared set's table (column split)")
    if "seed" in pan:
        out["core"]["seed"] = (num("seed", pan["seed"], int), "seed")
        if out["core"]["seed"][0] < 0:
            bad("seed", f"{pan['seed']!r}: astrotool takes a seed >= 0 (numpy refuses negative seeds)")
    if "training_epochs" in pan:
        out["plato.train"]["epochs"] = (num("training_epochs", pan["training_epochs"], int), "training_epochs")
    frac = pan.get("fraction", {})
    if frac:
        tr, va = num("fraction.train", frac.get("train", 0.8)), num("fraction.valid", frac.get("valid", 0.2))
        te = num("fraction.test", frac["test"]) if "test" in frac else max(0.0, round(1.0 - tr - va, 10))
        if min(tr, va, te) < 0 or abs(tr + va + te - 1.0) > 1e-6:
            bad("fraction", f"train, valid{', test' if 'test' in frac else ''} = {tr:g}, {va:g}"
                            f"{f', {te:g}' if 'test' in frac else ''}: the fractions must be non-negative and sum "
                            "to 1")
        out["plato.prepare"]["split"] = ([tr, va, te], "[fraction] train, valid, test" + (
            "" if te else " (no test curves: `evaluate --split val` scores the validation ones)"))
    if "dataloader" in pan and "dataloaders" in pan:
        bad("dataloaders", "given with [dataloader]: keep one of the two tables")
    loader = pan.get("dataloader", pan.get("dataloaders", {}))
    train_loader = loader.get("train", {}) if isinstance(loader, dict) else {}
    if "batch_size" in train_loader:
        out["plato.train"]["batch_size"] = (num("dataloader.train.batch_size", train_loader["batch_size"], int),
                                            "[dataloader.train] batch_size")
    if loader:
        notes.append("[dataloader.*] shuffle, num_workers, pin_memory, ...: not needed (batches are streamed from "
                     "HDF5 shards in a seeded order); the validation batch size follows the training one")
    opt = pan.get("optimizer", {})
    if opt:
        name = opt.get("name", "Adam")
        if name not in OPTIMIZERS:
            bad("optimizer.name", f"unknown optimizer {name!r} (expected one of {', '.join(OPTIMIZERS)})")
        kw = dict(opt.get("kwargs", {}))
        out["plato.train"]["optimizer"] = (name, "[optimizer] name")
        default = {k: p.default for k, p in inspect.signature(getattr(torch.optim, name)).parameters.items()
                   if p.default is not inspect.Parameter.empty}
        for key, own in (("lr", None), ("weight_decay", 0.0)):   # torch's default where not given, not astrotool's
            value = kw.pop(key, default.get(key, own))
            out["plato.train"][key] = (num(f"optimizer.kwargs.{key}", value), f"[optimizer.kwargs] {key}" + (
                f" (torch's default for {name})" if key not in opt.get("kwargs", {}) and key in default else ""))
        out["plato.train"]["optimizer_kwargs"] = (kw, "[optimizer.kwargs], the rest")
    sch = pan.get("scheduler", {})
    if sch:
        name = sch.get("name", "")
        if "use" in sch and not isinstance(sch["use"], bool):
            bad("scheduler.use", f"expected true or false, got {sch['use']!r}")
        used = bool(sch.get("use", False))
        if name and name not in SCHEDULERS:   # one of torch's that Panopticon builds but does not use: a note
            if used or not isinstance(getattr(torch.optim.lr_scheduler, name, None), type):
                bad("scheduler.name", f"unknown or unsupported scheduler {name!r} (expected one of "
                                      f"{', '.join(s for s in SCHEDULERS if s)}; {SCHEDULER_HINT})")
            notes.append(f"[scheduler] name = {name!r} and its kwargs: not used (use = false), and not translated "
                         f"(astrotool has no {name}; {SCHEDULER_HINT})")
            name = ""
        if used and not name:   # Panopticon would look up a scheduler named "" and stop
            bad("scheduler.name", "missing while use = true: name the scheduler (one of "
                                  f"{', '.join(s for s in SCHEDULERS if s)}) or set use = false")
        if "use" not in sch and name:
            warnings.append(f"[scheduler] use: missing, so the scheduler {name!r} is off (Panopticon reads "
                            "`use` without a default and stops at the first epoch's end; its default.toml has "
                            "use = false); add use = true to turn it on")
        out["plato.train"]["scheduler"] = (name if used else "", f"[scheduler] name, use = {str(used).lower()}"
                                           + ("" if "use" in sch else " (use missing)"))
        out["plato.train"]["scheduler_kwargs"] = (dict(sch.get("kwargs", {})) if used else {}, "[scheduler.kwargs]")
    model = pan.get("model", {})
    if "name" in model:
        if model["name"] not in DECODERS:
            bad("model.name", f"{model['name']!r} has no counterpart (expected one of {', '.join(DECODERS)})")
        out["plato.train"]["decoder"] = (DECODERS[model["name"]], "[model] name")
    if "loss" in model:
        if model["loss"] not in LOSSES:
            bad("model.loss", f"unknown loss {model['loss']!r} (expected one of {', '.join(LOSSES)})")
        out["plato.train"]["loss"] = (LOSSES[model["loss"]], "[model] loss (on logits: the sigmoid is in the loss)")
    gen = model.get("general", {})
    if "init_features" in gen:
        out["plato.train"]["width"] = (num("model.general.init_features", gen["init_features"], int),
                                       "[model.general] init_features")
    if "drop_rate" in gen:
        out["plato.train"]["dropout"] = (num("model.general.drop_rate", gen["drop_rate"]), "[model.general] drop_rate")
    if "channels_in" in gen:
        n = num("model.general.channels_in", gen["channels_in"], int)
        if n < 1:
            bad("model.general.channels_in", f"{n}: expected 1 (the co-added flux) or more (the camera groups)")
        out["plato.prepare"]["channels"] = ("coadd" if n == 1 else "groups", "[model.general] channels_in" + (
            "" if n == 1 else f" = {n}: every camera group of the files and the co-added flux (groups + 1 channels)"))
    if "channels_out" in gen:
        notes.append(f"[model.general] channels_out = {gen['channels_out']!r}: the network has one output, the "
                     "transit logit per sample")
    if "activation" in model:
        notes.append(f"[model] activation = {model['activation']!r}: the network ends in logits; the sigmoid is in "
                     "the loss, and in `detect` and `evaluate`")
    conv = model.get("convolution", {})
    if "kernel_size" in conv:
        k = num("model.convolution.kernel_size", conv["kernel_size"], int)
        if k % 2 == 0:
            notes.append(f"[model.convolution] kernel_size = {k}: even; {k + 1} (odd) is used")
            k += 1
        out["plato.train"]["kernel_size"] = (k, "[model.convolution] kernel_size")
    if "dilation" in conv:
        out["plato.train"]["dilation"] = (num("model.convolution.dilation", conv["dilation"], int),
                                          "[model.convolution] dilation")
    if conv.keys() - {"kernel_size", "dilation"} or "trans_conv" in model:
        notes.append("[model.convolution] padding, padding_mode, bias and [model.trans_conv]: fixed here ('same' "
                     "reflect padding, no bias before BatchNorm, linear upsampling)")
    out["plato.train"]["bin"] = (1, "Panopticon feeds every sample to the network (astrotool's default bins 16)")
    bounds = pan.get("bounds", {})
    if "transit_depth" in bounds:
        pair = bounds["transit_depth"]
        if not isinstance(pair, list) or len(pair) != 2:
            bad("bounds.transit_depth", f"expected [low, high], got {pair!r}")
        lo, hi = (num("bounds.transit_depth", v) for v in pair)
        if hi > 1:
            bad("bounds.transit_depth", f"upper bound {hi:g} is above 1: Panopticon's depths are fractions (ppm "
                                        "written for a fraction?)")
        out["plato.prepare"]["depth_bounds"] = ([lo * 1e6, hi * 1e6], "[bounds] transit_depth, fraction -> ppm")
    for key in set(bounds) - {"transit_depth"}:
        notes.append(f"[bounds] {key}: not a label column here; no curve is left out for it")
    return out, notes


PAN_KEYS = {("plato.prepare", "depth_bounds"): "bounds.transit_depth", ("plato.prepare", "split"): "fraction",
            ("plato.train", "scheduler_kwargs"): "scheduler.kwargs"}
"""The Panopticon key a translated setting comes from, for the messages of the ``[plato]`` sections' own checks
(which name the astrotool key)."""


def import_config(path, source_name: str | None = None) -> str:
    """The astrotool TOML text for a Panopticon configuration file (validated against ``[plato]``).

    Raises
    ------
    astrotool.errors.InputError
        Unreadable TOML, or a key :func:`translate` refuses, or a translated
        value the ``[plato]`` section (or ``train``'s optimizer and scheduler)
        does not accept. The scheduler's kwargs are checked whenever
        ``[scheduler] name`` is given, as Panopticon builds the scheduler even
        with ``use = false``; a ``[scheduler]`` without ``use`` is translated as
        off, with a warning (logged and written as a comment).
    """
    import torch

    from astrotool.errors import ConfigError

    from astrotool_plato.config import SCHEDULERS, PlatoConfig
    from astrotool_plato.train import make_optimizer

    path = Path(path)
    try:
        pan = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"unreadable ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"not valid TOML ({exc})") from None
    warnings: list[str] = []
    out, notes = translate(pan, str(path), warnings)
    plato = {sec.split(".", 1)[1]: {k: v for k, (v, _) in keys.items()} for sec, keys in out.items()
             if sec.startswith("plato.")}
    from pydantic import ValidationError

    try:
        train = PlatoConfig.model_validate(plato).train
    except ValidationError as exc:
        def problem(e):
            loc, msg = e["loc"], e["msg"].removeprefix("Value error, ")
            sec, key = f"plato.{loc[0]}" if loc else "", str(loc[1]) if len(loc) > 1 else ""
            name, sep, rest = msg.partition(": ")
            if not key and sep and (sec, name) in PAN_KEYS:   # a section's check, naming its key: the Panopticon key
                value = pan
                for part in PAN_KEYS[sec, name].split("."):
                    value = value.get(part) if isinstance(value, dict) else None
                given = f"= {_toml_value(value)}" if value is not None else "(not given)"
                return f"{PAN_KEYS[sec, name]} {given}: {rest}"
            where = out.get(sec, {}).get(key, (None, ".".join(map(str, loc))))[1]
            return f"{where}: {msg}" + (f" (got {e['input']!r})" if e["type"] != "value_error" else "")
        problems = "; ".join(problem(e) for e in exc.errors())
        raise InputError(path, f"translates to settings astrotool refuses: {problems}") from None
    sch = pan.get("scheduler", {})
    if sch.get("name") in SCHEDULERS[1:] and not train.scheduler:   # (a name astrotool lacks: noted, unused)
        # Panopticon builds its scheduler (name, kwargs) whether `use` is true or not: check the kwargs either way,
        # as `train` would read them (the [plato.train] section checks them)
        try:
            type(train).model_validate({**train.model_dump(), "scheduler": sch["name"],
                                        "scheduler_kwargs": dict(sch.get("kwargs", {}))})
        except ValidationError as exc:
            raise InputError(path, "scheduler.kwargs: " + "; ".join(
                e["msg"].removeprefix("Value error, ").removeprefix("scheduler_kwargs: ") for e in exc.errors())) from None
    try:   # what `train` refuses
        make_optimizer(train, [torch.nn.Parameter(torch.zeros(1))])
    except ConfigError as exc:
        raise InputError(path, f"optimizer.kwargs: {exc.problems[0].partition(': ')[2] or exc.problems[0]}") from None
    import logging

    for w in warnings:
        logging.getLogger("astro").warning("%s: %s", path, w)
    lines = [f"# astrotool configuration translated from Panopticon's {source_name or path.name}", ""]
    lines += [f"# WARNING: {w}" for w in warnings] + ([""] if warnings else [])
    for sec, keys in out.items():
        if not keys:
            continue
        lines.append(f"[{sec}]")
        width = max(len(f"{k} = {_toml_value(v)}") for k, (v, _) in keys.items())
        lines += [f"{k} = {_toml_value(v)}".ljust(width) + f"   # {c}" for k, (v, c) in keys.items()]
        lines.append("")
    if notes:
        lines.append("# not translated:")
        lines += [f"#   {n}" for n in notes]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- data layout

SEC_DAY = 86400.0
"""Seconds in a day [s/d]."""
Q_LENGTH_DAYS = 91.310549769 - 1.5
"""Panopticon's quarter length (new PlatoSim) minus the 1.5 d of repointing [d]: quarter K starts (K-1) times this
after quarter 1."""
Q_LENGTH_OLD_DAYS = 90.0 - 1.5
"""The same for the old PlatoSim (simulations numbered below :data:`OLD_BELOW`)."""
OLD_BELOW = 6700
"""Simulations numbered below this were made with the old PlatoSim."""
PARAMS_FILE = Path("config") / "Complete_Parameters.ftr"
"""Panopticon's table of simulation parameters, relative to its data folder."""
PARAM_COLUMNS = ("index_sim", "transit_t0", "transit_period", "transit_duration", "transit_depth", "EB_t0",
                 "EB_period", "EB_duration", "BEB_t0", "BEB_period", "BEB_duration")
"""Complete_Parameters.ftr columns read and written: times, periods and durations in days, depth a fraction."""


def quarter_start(index_sim: int, quarter: int) -> float:
    """Start of quarter ``quarter`` of simulation ``index_sim`` after the start of quarter 1 [d]."""
    return (quarter - 1) * (Q_LENGTH_OLD_DAYS if index_sim < OLD_BELOW else Q_LENGTH_DAYS)


def quarter_of(path) -> tuple[int, int] | None:
    """``(index_sim, quarter)`` of a Panopticon quarter file ``simNNNNN_QK.ftr``; None for another name."""
    import re

    m = re.fullmatch(r"sim(\d+)_Q(\d+)\.ftr", Path(path).name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def simulation_of(cid: str) -> str:
    """The simulation a curve is of: ``simNNNNN`` for a Panopticon quarter ``simNNNNN_QK`` (its quarters hold the
    same star and planet: ``prepare`` keeps them in one split), else the curve id itself."""
    quarter = quarter_of(f"{cid}.ftr")   # the id of a quarter file is its name less .ftr
    return f"sim{quarter[0]:05d}" if quarter else str(cid)


def in_layout(path) -> bool:
    """Whether ``path`` lies where :func:`read_layout` looks for quarter files: ``<folder>/<dir with '-'>/``
    with ``<folder>/config/Complete_Parameters.ftr``."""
    d = Path(path).absolute().parent
    return "-" in d.name and (d.parent / PARAMS_FILE).is_file()


def quarter_offset(path) -> float:
    """What puts the time of a Panopticon quarter file (from its quarter's start) on its simulation's axis [d].

    :func:`quarter_start` for ``simNNNNN_QK.ftr`` in Panopticon's layout (:func:`in_layout`; :func:`read_layout`,
    ``prepare``), 0 for another name or a file elsewhere (a user's table named so keeps its own times).
    """
    sq = quarter_of(path)
    return quarter_start(*sq) if sq and in_layout(path) else 0.0


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def label_row(p: dict, quarter: int) -> dict:
    """A label-table row (:data:`astrotool_plato.simulate.LABEL_FIELDS`) from a Complete_Parameters row."""
    import math

    t0 = _f(p.get("transit_t0"))
    row = {"has_transit": math.isfinite(t0), "t0": t0, "duration": _f(p.get("transit_duration")) * 24.0,
           "depth": _f(p.get("transit_depth")) * 1e6, "period": _f(p.get("transit_period")),
           "snr": _f(p.get(f"transit_snr_{quarter}", p.get("transit_snr"))), "eclipse": ""}
    for kind, pre in (("eb", "EB"), ("beb", "BEB")):   # one binary per curve here: the EB when both
        if math.isfinite(_f(p.get(f"{pre}_t0"))):
            row.update(eclipse=kind, eclipse_t0=_f(p[f"{pre}_t0"]), eclipse_period=_f(p.get(f"{pre}_period")),
                       eclipse_duration=_f(p.get(f"{pre}_duration")) * 24.0, eclipse_depth=float("nan"),
                       eclipse_secondary=float("nan"))
            break
    return row


def _layout_hint(folder: Path) -> str:
    """Where quarter files lie near ``folder``, outside the layout ``<folder>/<dir with '-'>/simNNNNN_QK.ftr``:
    the folder to pass instead, or the subfolder to rename."""
    if next(folder.glob("sim*_Q*.ftr"), None) is not None:
        if "-" in folder.name:
            return (f": the quarter files lie in this folder itself; pass the folder above it, {folder.parent}"
                    + (f" (which holds {PARAMS_FILE} too)" if (folder.parent / PARAMS_FILE).is_file() else ""))
        return (f": the quarter files lie in this folder itself; Panopticon's layout has them in a subfolder whose "
                f"name has a '-' (move them to {folder / 'sims-1'}, or rename this folder with a '-' and pass "
                f"{folder.parent})")
    deeper = next(folder.glob("*/*-*/sim*_Q*.ftr"), None)
    if deeper is not None:
        return f": they lie one level down; pass {deeper.parent.parent}"
    plain = next(folder.glob("*/sim*_Q*.ftr"), None)
    if plain is not None:
        return f": {plain.parent} holds quarter files, but its name has no '-'; rename it with a '-'"
    return ""


def quarters_hint(folder: Path) -> str:
    """For ``prepare`` given a folder with no light-curve files: its subfolders holding Panopticon quarter files
    (the data folder of Panopticon's layout), to give instead or to import."""
    found = sorted({f.parent for f in Path(folder).glob("*/sim*_Q*.ftr")})
    if not found:
        return ""
    hint = f"; its subfolder {found[0]} holds Panopticon quarter files: give it (with --time-unit s)"
    if in_layout(next(found[0].glob("sim*_Q*.ftr"))):
        hint += f", or import Panopticon's layout with `{astro_command('plato', 'import-panopticon', folder)}`"
    return hint + (f" ({len(found)} such subfolders)" if len(found) > 1 else "")


def read_layout(folder) -> tuple[dict, dict]:
    """Panopticon's data folder: ``<folder>/<dir with '-'>/simNNNNN_QK.ftr`` and ``config/Complete_Parameters.ftr``.

    Each Feather file is one quarter: column 0 the time [s] from the quarter's
    start, then one flux column per camera group, the co-added flux last (the
    one read). Times are put on one axis per simulation (:func:`quarter_start`).

    Returns
    -------
    curves : dict
        ``{"simNNNNN_QK": (time [d], co-added flux)}``.
    labels : dict
        ``{"simNNNNN_QK": label-table row}``, with the transits (whole or partial) in the quarter.

    Raises
    ------
    astrotool.errors.InputError
        No such folder, no quarter files, no parameter table or one lacking a
        column of :data:`PARAM_COLUMNS`, a simulation missing from it, a file
        name that is not ``simNNNNN_QK.ftr``, a non-numeric column, times not
        increasing.
    """
    import pyarrow.feather as feather

    from astrotool_plato.labels import PLANET, event_windows
    from astrotool_plato.lightcurves import check_curve

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such folder" if not folder.exists() else "not a folder")
    files = sorted(folder.glob("*-*/sim*_Q*.ftr"))
    if not files:
        raise InputError(folder, "no Panopticon quarter files (<dir with '-'>/simNNNNN_QK.ftr)" + _layout_hint(folder))
    pfile = folder / PARAMS_FILE
    if not pfile.is_file():
        raise InputError(pfile, "missing: Panopticon's parameter table")
    try:
        ptable = feather.read_table(pfile)
    except Exception as exc:  # unreadable Feather
        raise InputError(pfile, f"unreadable ({type(exc).__name__}: {exc})") from None
    missing = [c for c in PARAM_COLUMNS if c not in ptable.column_names]
    if missing:
        raise InputError(pfile, f"no column {', '.join(missing)} (Panopticon's parameter table has "
                                f"{', '.join(PARAM_COLUMNS)})")
    params = ptable.to_pylist()
    by_sim = {int(p["index_sim"]): p for p in params if p.get("index_sim") is not None}
    curves, labels = {}, {}
    for f in files:
        if not quarter_of(f):
            raise InputError(f, "not a Panopticon quarter file name (simNNNNN_QK.ftr)")
        sim, q = quarter_of(f)
        if sim not in by_sim:
            raise InputError(f, f"simulation {sim} has no row in {pfile}")
        try:
            table = feather.read_table(f)
        except Exception as exc:
            raise InputError(f, f"unreadable ({type(exc).__name__}: {exc})") from None
        if table.num_columns < 2:
            raise InputError(f, f"{table.num_columns} column(s); expected time, camera groups, co-added flux")
        cid = f.stem
        try:
            t = table.column(0).to_numpy(zero_copy_only=False).astype(np.float64) / SEC_DAY + quarter_offset(f)
            flux = np.vstack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                              for c in range(1, table.num_columns)])
        except (TypeError, ValueError) as exc:
            raise InputError(f, f"a column that is not numeric ({str(exc).splitlines()[0][:120]}); expected time "
                                "[s], camera groups, co-added flux") from None
        check_curve(t, flux[0] if len(flux) == 1 else flux, str(f))
        curves[cid] = (t, flux[0] if len(flux) == 1 else flux)
        row = label_row(by_sim[sim], q)
        row["n_transits"] = sum(k == PLANET for _, _, k in event_windows(row, t[0], t[-1]))  # whole or partial
        labels[cid] = {"id": cid, **row}
    return curves, labels


EXPORT_DIR = "astrotool-export"
"""The subfolder of ``export-panopticon``'s quarter files (Panopticon reads ``<path_data>/<dir with '-'>/``)."""


def write_layout(folder, curves: dict, labels: dict, subdir: str = EXPORT_DIR) -> list[Path]:
    """Write curves in Panopticon's layout: one ``simNNNNN_Q1.ftr`` per curve and ``config/Complete_Parameters.ftr``.

    Curves are numbered in the order given; the time column is in seconds from
    the curve's first sample, then ``cam1`` ... (the camera groups, where a
    curve's flux has shape ``(groups + 1, n)``) and ``coadd``.

    Returns
    -------
    list of pathlib.Path
        The files written (atomically).
    """
    import math

    import pyarrow as pa
    import pyarrow.feather as feather

    from astrotool.workspace import atomic_path

    folder = Path(folder)
    out, rows = [], []
    for k, (cid, (t, f)) in enumerate(curves.items()):
        path = folder / subdir / f"sim{k:05d}_Q1.ftr"
        with atomic_path(path) as tmp:
            f = np.atleast_2d(np.asarray(f, np.float64))
            feather.write_feather(pa.table({"time": (np.asarray(t) - t[0]) * SEC_DAY,
                                            **{f"cam{g + 1}": f[g] for g in range(len(f) - 1)},
                                            "coadd": f[-1]}), tmp)
        out.append(path)
        r = labels.get(cid, {})
        t_first = float(t[0])
        nan = float("nan")

        def shifted(v):
            return _f(v) - t_first if math.isfinite(_f(v)) else nan

        row = {"index_sim": k, "curve_id": cid,
               "transit_t0": shifted(r.get("t0")) if r.get("has_transit") else nan,
               "transit_period": _f(r.get("period")), "transit_duration": _f(r.get("duration")) / 24.0,
               "transit_depth": _f(r.get("depth")) * 1e-6, "transit_snr_1": _f(r.get("snr"))}
        for kind, pre in (("eb", "EB"), ("beb", "BEB")):
            on = r.get("eclipse") == kind
            row.update({f"{pre}_t0": shifted(r.get("eclipse_t0")) if on else nan,
                        f"{pre}_period": _f(r.get("eclipse_period")) if on else nan,
                        f"{pre}_duration": _f(r.get("eclipse_duration")) / 24.0 if on else nan})
        rows.append(row)
    pfile = folder / PARAMS_FILE
    with atomic_path(pfile) as tmp:
        feather.write_feather(pa.Table.from_pylist(rows), tmp)
    return out + [pfile]


# ------------------------------------------------------------------------------------------- weights

PANOPTICON_CADENCE_S = 60.0
"""Panopticon's training curves were sampled every minute (its ``STD_DURATION`` comment)."""

_BLOCK = {"conv_entry": "1", "norm_1": "2", "conv_enforce": "4", "norm_2": "5", "norm": "2"}
"""Panopticon's Block/BlockSingle members -> the index in this package's Sequential blocks."""


def _link_name(stage: int, j: int) -> str:
    """Panopticon_U3P's name of the link from level ``j`` into decoder stage ``stage`` (0 = deepest)."""
    return "enc1_to_dec_1" if (stage, j) == (0, 1) else f"enc{j}_to_dec{stage + 1}"  # sic: its one typo


def rename_u3p(state: dict, depth: int = 5) -> dict:
    """Panopticon_U3P state-dict keys -> :class:`astrotool_plato.model.TransitNet` (``unet3p``) keys.

    Raises
    ------
    KeyError
        A key that is not one of Panopticon_U3P's.
    """
    prefixes = {"conv_enc_i_0": "encoder.0"}
    prefixes.update({f"conv_enc_{i - 1}_{i}": f"encoder.{i}" for i in range(1, depth)})
    for s in range(depth - 1):
        prefixes.update({_link_name(s, j): f"links.{s}.{j}" for j in range(depth)})
        prefixes[f"dec{s + 1}"] = f"fuse.{s}"
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "conv_out":
            out[f"head.{rest}"] = value
            continue
        member, _, param = rest.partition(".")
        if head not in prefixes or member not in _BLOCK:
            raise KeyError(key)
        out[f"{prefixes[head]}.{_BLOCK[member]}.{param}"] = value
    return out


def load_state_dict_file(path) -> dict:
    """A ``.pt`` holding a plain state dict (names -> tensors), loaded with ``torch.load(weights_only=True)``.

    Raises
    ------
    astrotool.errors.InputError
        Missing, a folder, empty, not a PyTorch file, not loadable without
        executing code (a pickled model), or not a mapping of names to tensors.
    """
    import re
    import zipfile

    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such weights file")
    if not path.is_file():
        raise InputError(path, "is a folder, not a weights file (.pt)" if path.is_dir() else "not a regular file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file: not a PyTorch weights file")
    with open(path, "rb") as fh:
        head = fh.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":   # torch.save: a zip archive (a pickle before 1.6)
        raise InputError(path, "not a PyTorch file (torch.save writes a zip archive)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for pickled modules, RuntimeError for other files
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:
            raise InputError(path, f"holds pickled code ({found.group(1)}), e.g. a whole model: loading it would run "
                                   "that code; save model.state_dict(), not the model") from None
        raise InputError(path, f"not a PyTorch weights file that loads with weights_only=True "
                               f"({type(exc).__name__}: {' '.join(text.split())[:200]})") from None
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__ if not isinstance(obj, dict) else \
            "a dict of " + ", ".join(sorted({type(v).__name__ for v in obj.values()})) if obj else "an empty dict"
        raise InputError(path, f"not a plain state dict (names -> tensors): it holds {kind}")
    return obj


def convert_weights(path, out_dir, cadence_s: float = PANOPTICON_CADENCE_S, dilation: int = 1) -> dict:
    """Convert Panopticon's released U-Net 3+ weights into a checkpoint ``detect`` and ``evaluate`` run.

    The architecture is read from the tensors' shapes (``init_features`` from the
    first convolution, the kernel size from its width); the model keeps
    Panopticon's min-max input scaling, max pooling, every sample (no bin) and
    BatchNorm epsilon 1e-5, so it computes what Panopticon computed (its sigmoid
    is applied by ``detect``/``evaluate``).

    Returns
    -------
    dict
        The checkpoint's architecture keyword arguments and path.

    Raises
    ------
    astrotool.errors.InputError
        Not a plain state dict, or not Panopticon_U3P's keys and shapes.
    """
    from astrotool.ml.checkpoint import save_checkpoint
    from astrotool_plato.model import ARCHITECTURE, make_model

    state = load_state_dict_file(path)
    first = state.get("conv_enc_i_0.conv_entry.weight")
    if first is None or first.ndim != 3:
        raise InputError(path, "not Panopticon_U3P weights (no conv_enc_i_0.conv_entry.weight); only the U-Net 3+ "
                               "models are converted")
    width, cin, kernel = (int(v) for v in first.shape)
    kwargs = {"decoder": "unet3p", "in_channels": cin, "width": width, "depth": 5, "kernel_size": kernel,
              "dilation": dilation, "dropout": 0.0, "bin": 1, "pool": "max", "scaling": "minmax", "bn_eps": 1e-5}
    model = make_model(**kwargs)
    try:
        model.load_state_dict(rename_u3p(state), strict=True)
    except KeyError as exc:
        raise InputError(path, f"does not fit Panopticon_U3P (width {width}, kernel {kernel}): key {exc} is not "
                               "one of its") from None
    except RuntimeError as exc:   # "Error(s) in loading state_dict ...:\n\tMissing key(s) ...: ...": its details
        details = " ".join(str(exc).split(":", 1)[-1].split())
        raise InputError(path, f"does not fit Panopticon_U3P (width {width}, kernel {kernel}): "
                               f"{details[:400]}") from None
    meta = {"architecture": {"name": ARCHITECTURE, "kwargs": kwargs}, "cadence_s": float(cadence_s),
            "inputs": "relative flux, (n, length) float32, at the model's cadence",
            "outputs": "logit per sample that the sample is in a planet transit, (n, length)",
            "training": {"source": f"Panopticon weights {Path(path).name}", "cadence_s": float(cadence_s)}}
    save_checkpoint(out_dir, model, meta)
    return {"path": str(out_dir), **kwargs, "parameters": int(sum(v.numel() for v in state.values()))}
