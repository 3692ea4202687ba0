"""The parts a plugin's ``train``, ``evaluate``, ``predict`` and ``export`` commands are made of.

Each is a plain function (or an option type) a plugin's ``cli.py`` calls, so
that every ML plugin resolves datasets, names model folders, treats an
existing model, seeds, reports progress, fills the run record, exposes the
``[ml]`` runtime options and checks ONNX exports the same way:

* :func:`open_dataset` -- a dataset by name under a stage folder, or by path
  (:func:`astrotool.ml.data.resolve_dataset`); recorded as an input of the run.
* :func:`model_dir` -- ``<plugin>/models/<name>`` (a valid name,
  :func:`astrotool.names.check_name`), or the path of an existing checkpoint folder.
* :func:`prepare_training` -- what to do with an existing model folder:
  resume from ``last/`` (when it was trained with the same settings), start
  again with ``--overwrite``, or refuse; :func:`dataset_identity` -- the
  dataset's part of those settings.
* :func:`dataset_record` and :func:`trained_dataset` -- ``model.json``'s
  ``training.dataset_path`` (relative to the model folder inside a workspace),
  and the set it names, found in this workspace (a copy's own).
* :func:`epoch_progress`, :func:`record` -- a progress bar advanced per epoch,
  and the run record's inputs/outputs (the seed: :meth:`astrotool.context.Context.stage_seed`).
* :data:`Device`, :data:`Precision`, :data:`Devices`, :data:`NumNodes` and
  :func:`runtime` -- the command-line options of the ``[ml]`` section
  (``--device`` sets ``ml.accelerator``), declared once.
* :func:`history_figure` -- the loss and metric curves per epoch as a PNG.
* :func:`report_throughput` and :func:`export_checked` -- a prediction's
  samples/s in the log and the command's result; an ONNX export with its
  parity check, recorded.

Typical ``train`` command, as the ztf and plato plugins write it (one process
or several: every process runs the command, rank 0 alone clears, reports and
records)::

    import contextlib

    from astrotool.ml import commands as mc

    @app.command()
    def train(dataset: str = typer.Option(None, "--dataset"), model: str = typer.Option(None, "--model"),
              device: mc.Device = None, precision: mc.Precision = None,
              devices: mc.Devices = None, num_nodes: mc.NumNodes = None):
        ctx = current()
        cfg = ctx.section("myplugin", {"train.dataset": dataset, "train.model": model}).train
        rt = mc.runtime(ctx, device=device, precision=precision, devices=devices, num_nodes=num_nodes)
        rt.launch()                                       # the processes start here (ml.strategy ddp)
        if not rt.is_global_zero:
            ctx.mark_copy()                               # rank 0 alone writes the run record
        ds = mc.open_dataset(ctx, "myplugin", "data", cfg.dataset, MyDataset)  # an ArrayDataset
        mdir = mc.model_dir(ctx, "myplugin", cfg.model or f"{ds.name}_net")
        seed = ctx.stage_seed(cfg.seed, "myplugin.train.seed")   # its own seed, else --seed
        settings = mc.resume_settings(cfg, seed, ds)      # every key but RESUMABLE, the seed, the set's identity
        mc.prepare_training(mdir, overwrite=ctx.overwrite, resume=cfg.resume, clear=rt.is_global_zero,
                            settings=settings, share=rt.broadcast)   # every rank decides, rank 0 clears
        rt.barrier("myplugin-train-prepared")            # no rank reads the folder before rank 0 cleared it
        progress = (mc.epoch_progress(ctx, cfg.epochs, f"train {mdir.name}",
                                      mc.resumed_dir(ctx, mdir, rt, cfg.resume))
                    if rt.is_global_zero else contextlib.nullcontext(None))
        with progress as on_epoch:
            result = train_model(ds, cfg, mdir, seed, runtime=rt, on_epoch=on_epoch,
                                 settings=settings)       # fit(..., meta={..., "settings": settings})
        if rt.is_global_zero:
            mc.record(ctx, outputs=mc.checkpoint_files(mdir))

Nothing heavy is imported at module level (typer only).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Iterator, Optional, TypeVar

import typer

from astrotool.errors import AstroError, InputError

__docformat__ = "numpy"

__all__ = ["Device", "Devices", "NumNodes", "Precision", "RUNTIME_KEYS", "check_trained_on", "checkpoint_files",
           "dataset_identity", "dataset_record", "trained_dataset", "epoch_progress", "epochs_done", "export_checked",
           "model_dir", "open_dataset", "prepare_training", "record", "report_throughput", "resume_settings",
           "runtime", "runtime_flags"]

T = TypeVar("T")

# ---------------------------------------------------------------- [ml] runtime options

Device = Annotated[Optional[str], typer.Option(
    "--device", help="auto | cpu | cuda | cuda:N | mps (sets ml.accelerator)")]
"""The ``--device`` option of the commands that train or predict (``device: Device = None``)."""
Precision = Annotated[Optional[str], typer.Option(
    "--precision", help="32-true | bf16-mixed | 16-mixed (sets ml.precision)")]
"""The ``--precision`` option of the commands that train."""
Devices = Annotated[Optional[str], typer.Option(
    "--devices", help="processes per node, one device each: N or auto (sets ml.devices)")]
"""The ``--devices`` option of the commands that train (DDP)."""
NumNodes = Annotated[Optional[int], typer.Option(
    "--num-nodes", help="machines taking part, e.g. srun --nodes (sets ml.num_nodes)")]
"""The ``--num-nodes`` option of the commands that train (several Slurm nodes)."""

RUNTIME_KEYS = {"device": "accelerator", "precision": "precision", "devices": "devices", "num_nodes": "num_nodes"}
"""Command-line option (Python name) -> key of the ``[ml]`` section."""


def runtime_flags(device: str | None = None, precision: str | None = None, devices: str | int | None = None,
                  num_nodes: int | None = None) -> dict[str, Any]:
    """The ``[ml]`` keys the runtime options set (``None``: not given).

    Examples
    --------
    >>> runtime_flags(device="cuda:1", devices="2")
    {'accelerator': 'cuda:1', 'precision': None, 'devices': 2, 'num_nodes': None}
    """
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    values = {"device": device, "precision": precision, "devices": devices, "num_nodes": num_nodes}
    return {RUNTIME_KEYS[k]: v for k, v in values.items()}


def runtime(ctx, device: str | None = None, precision: str | None = None, devices: str | int | None = None,
            num_nodes: int | None = None):
    """Where and how the command runs: the ``[ml]`` section with the command's options applied.

    Parameters
    ----------
    ctx : astrotool.context.Context
    device, precision, devices, num_nodes
        The options as the command received them (``None``: not given, the
        configuration decides).

    Returns
    -------
    astrotool.ml.fabric.Runtime
        For :func:`astrotool.ml.training.fit` (``runtime=``); its ``accelerator``
        can also serve :func:`astrotool.ml.predict.predict`. Whether a plugin
        predicts in ``precision`` too is its choice: lens predicts in 32-bit,
        since bf16's 3 significant digits would swamp shears of 1e-3.

    Raises
    ------
    astrotool.errors.ConfigError
        A value the ``[ml]`` section refuses, named as a command-line option.
    """
    from astrotool.ml.fabric import Runtime

    return Runtime.from_config(ctx.section("ml", runtime_flags(device, precision, devices, num_nodes)),
                               accelerator_option="--device" if device is not None else "ml.accelerator",
                               precision_option="--precision" if precision is not None else "ml.precision")


# ---------------------------------------------------------------- datasets and model folders

def open_dataset(ctx, plugin: str, stage: str, name_or_path: str, cls: Callable[[Path], T],
                 hint: str = "write one first") -> T:
    """Open a dataset by name under ``<plugin>/<stage>/`` or by folder path, and record it as an input.

    The lookup is :func:`astrotool.ml.data.resolve_dataset`'s.

    Parameters
    ----------
    ctx : astrotool.context.Context
    plugin, stage : str
        The stage folder, e.g. ``("lens", "shear")``.
    name_or_path : str
    cls : callable
        The reader (an :class:`~astrotool.ml.data.ArrayDataset` subclass),
        called with the folder.
    hint : str
        What to do when the stage holds no dataset (``"run `astro lens generate` first"``).

    Raises
    ------
    astrotool.errors.InputError
        No name given, or no such dataset (the message lists the stage's datasets).
    """
    from astrotool.ml.data import resolve_dataset

    stage_dir = ctx.workspace.stage(plugin, stage)
    if not name_or_path:
        raise InputError(stage_dir, f"no dataset given (--dataset NAME or a folder; {hint})")
    ds = resolve_dataset(stage_dir, name_or_path, cls, hint=hint)
    ctx.record.add_input(getattr(ds, "root", None) or name_or_path)
    return ds


def model_option(model_dir: str | Path, plugin: str, stage: str = "models") -> str:
    """What ``--model`` takes for ``model_dir`` in a suggested command: its name when it is a model of the
    workspace (``<plugin>/<stage>/<name>``), else its folder (:func:`model_dir` reads both)."""
    from astrotool.context import current

    model_dir = Path(model_dir)
    models = current().workspace_root / plugin / stage
    return model_dir.name if model_dir.resolve().parent == models.resolve() else str(model_dir)


def model_dir(ctx, plugin: str, name: str, option: str = "--model", stage: str = "models", *,
              trained: bool = False) -> Path:
    """The folder of a model: an existing checkpoint folder given by path, else ``<plugin>/<stage>/<name>``.

    Parameters
    ----------
    ctx : astrotool.context.Context
    plugin : str
    name : str
        A model name (:func:`astrotool.names.check_name`) or the path of a
        folder holding ``model.json``.
    option : str
        How the user gave the name, for messages.
    stage : str
        The stage folder of the plugin's models (``"kappa/models"`` for ``astro lens kappa``).
    trained : bool
        The model must exist (evaluate, predict, export...): a name without a checkpoint is refused,
        listing the models of the stage folder, as a missing dataset is. A checkpoint pair that a stop
        left in the folder's ``.model.new/`` is first moved into place
        (:func:`astrotool.ml.checkpoint.settle_staged`: only a complete pair, and not while a training run
        is saving one), so ``model.json`` and ``model.safetensors`` there are the latest pair.

    Raises
    ------
    astrotool.errors.InputError
        An empty name, or a name that is neither a checkpoint folder nor a
        valid name (a path separator, a leading dot, spaces...); with ``trained``, a name without a
        checkpoint.
    """
    from astrotool.ml.checkpoint import META_FILE, settle_staged
    from astrotool.names import ALLOWED, name_problem, printable

    if not name:
        raise InputError(option, "no model name given")
    stage_dir = ctx.workspace.stage(plugin, stage)
    plain = name_problem(name) is None
    p = Path(name).expanduser()
    if trained:  # a pair a stopped save left in .model.new/ goes into place first: the plugins open the files
        # the workspace's model when it is one, else the folder named (never both: a folder of that name in
        # the current directory is not the model's)
        if plain and (stage_dir / name).is_dir():
            settle_staged(stage_dir / name)
        elif p.is_dir():
            settle_staged(p)
    if plain and (stage_dir / name / META_FILE).is_file():
        return stage_dir / name
    if (p / META_FILE).is_file():
        return p
    if not plain:
        raise InputError(option, f"{printable(name)!r} is neither a checkpoint folder (no {META_FILE} there) nor a "
                                 f"model name ({ALLOWED})")
    if trained:
        known = sorted(d.name for d in stage_dir.iterdir() if (d / META_FILE).is_file())
        raise InputError(option, f"no trained model named {name!r} in {stage_dir} (available: "
                                 f"{', '.join(known) or 'none'})")
    return stage_dir / name


def checkpoint_files(directory: str | Path) -> list[Path]:
    """The files of a checkpoint: ``model.safetensors`` and ``model.json``."""
    from astrotool.ml.checkpoint import META_FILE, WEIGHTS_FILE

    return [Path(directory) / WEIGHTS_FILE, Path(directory) / META_FILE]


def epochs_done(directory: str | Path) -> int:
    """Epochs recorded in ``<directory>/last/`` (0 when there is no resumable state)."""
    from astrotool.ml.checkpoint import STATE_META_FILE, resolve_last

    path = resolve_last(directory) / STATE_META_FILE
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["loop"]["epochs_done"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def dataset_identity(ds) -> dict[str, Any]:
    """What tells a dataset apart, for the settings a resumed training run must share.

    Parameters
    ----------
    ds : astrotool.ml.data.ArrayDataset

    Returns
    -------
    dict
        ``{"name", "n", "manifest_sha256"}``: the SHA-256 (16 hex digits) of
        the manifest without its provenance, i.e. of the kind, arrays, shards
        and the writer's own keys (its configuration and seed). Moving the
        workspace or finishing the same dataset again keeps it; a dataset
        drawn with other settings changes it.
    """
    import hashlib

    manifest = {k: v for k, v in ds.manifest.items() if k != "provenance"}
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"name": ds.name, "n": int(ds.n), "manifest_sha256": digest}


RESUMABLE = frozenset({"epochs", "patience", "resume", "dataset", "model", "seed"})
"""Training keys a resumed run may change in every plugin: more ``epochs`` or ``patience`` train
on; ``dataset`` and ``seed`` are compared as the data set's identity and the seed in use; ``model``
names the folder. Where the run happens (the ``[ml]`` section) is never compared."""


def resume_settings(cfg, seed: int, ds, resumable: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """What a resumed training run must share with the run it continues (``meta["settings"]``).

    Parameters
    ----------
    cfg : pydantic.BaseModel
        The plugin's training section; every key is compared (a key added later too)
        but :data:`RESUMABLE` and ``resumable``.
    seed : int
        The seed in use.
    ds : astrotool.ml.data.ArrayDataset
        The training set, compared by :func:`dataset_identity`.
    resumable : iterable of str
        The plugin's own keys a resumed run may change (e.g. ``threads``).
    **extra
        More settings to compare (e.g. a probe's encoder).

    Returns
    -------
    dict
        JSON-ready settings, for :func:`prepare_training` and :func:`astrotool.ml.training.fit`.
    """
    return {**cfg.model_dump(mode="json", exclude=set(RESUMABLE) | set(resumable)), "seed": int(seed),
            "dataset": dataset_identity(ds), **extra}


def dataset_record(root: str | Path, model_dir: str | Path) -> str:
    """``training.dataset_path`` of a model's ``model.json``: where its training set lies, as
    :func:`trained_dataset` reads it back.

    The set's folder relative to the model folder when both lie in one workspace -- under the
    folder two levels above the model folder: the workspace for ``<plugin>/models/<model>``,
    the plugin's folder for ``lens/kappa/models/<model>`` -- so that a copied or moved workspace
    finds its own copy; else the set's absolute path.

    Parameters
    ----------
    root : path-like
        The training set's folder.
    model_dir : path-like
        The model folder ``model.json`` is written to.

    Returns
    -------
    str
        E.g. ``"../../prepared/quarters"``, or an absolute path.
    """
    import os

    root, mdir = Path(root).resolve(), Path(model_dir).resolve()
    if len(mdir.parents) > 2 and root.is_relative_to(mdir.parents[2]):
        return os.path.relpath(root, mdir)
    return str(root)


def trained_dataset(stage: str | Path, model: str | Path, training: dict[str, Any]) -> str:
    """The dataset a model was trained on, as :func:`open_dataset` takes it, found in this workspace.

    ``training``'s ``dataset_path`` relative to the model folder ``model`` (as :func:`dataset_record`
    writes it) when it still resolves;
    else the set of the recorded ``dataset`` name in the workspace's ``stage`` folder (a copied or
    moved workspace scores its own copy, not the original's); else the recorded absolute path; ""
    when nothing is recorded.
    """
    path, name = training.get("dataset_path"), training.get("dataset")
    if path and not Path(path).is_absolute() and (Path(model) / path).is_dir():
        return str((Path(model) / path).resolve())
    if name and (Path(stage) / name).is_dir():
        return str(Path(stage) / name)
    return (path if path and Path(path).is_absolute() else name) or ""


def check_trained_on(trained: dict[str, Any] | None, ds, model: str | Path, hint: str = "",
                     remedy: str = "train the model on it (--overwrite)") -> None:
    """Refuse to score a model on a dataset that has its training set's name but not its content.

    A set re-made under the same name (another seed or other settings) splits its samples
    anew, so its test split can hold the model's own training samples: scores on it are not
    a hold-out's. Which split a set of the same name holds cannot be told, so it is refused
    too; a set of another name, or a model that recorded no dataset, passes. Callers scoring
    every sample (a split ``all``) need no check.

    Parameters
    ----------
    trained : dict or None
        The model's recorded :func:`dataset_identity` (``settings["dataset"]`` of its checkpoint).
    ds : astrotool.ml.data.ArrayDataset
        The dataset about to be scored.
    model : str or path-like
        The model's name or folder, for the message.
    hint : str
        Another way out the caller offers, e.g. ``"--split all to score every sample"``.
    remedy : str
        The first way out, where the model to train again is not the one scored (a probe's encoder).

    Raises
    ------
    astrotool.errors.InputError
        Same name, other manifest.
    """
    if not isinstance(trained, dict) or trained.get("name") != ds.name or "manifest_sha256" not in trained:
        return
    now = dataset_identity(ds)["manifest_sha256"]
    if now != trained["manifest_sha256"]:
        raise InputError(ds.root, f"not the set that model {Path(model).name} was trained on, though it has its name "
                         f"(manifest {trained['manifest_sha256']} -> {now}: made again since, or another set): its "
                         f"splits may hold the model's training samples; {remedy}, "
                         "or give this set another name" + (f", or {hint}" if hint else ""))


def prepare_training(directory: str | Path, *, overwrite: bool, resume: bool, clear: bool = True,
                     settings: dict[str, Any] | None = None, share: Callable[[Any], Any] | None = None,
                     alone: bool = True) -> str:
    """Decide what training does with a model folder, and clear it for a restart.

    Parameters
    ----------
    directory : path-like
        The model folder.
    overwrite : bool or astrotool.made_with.Overwrite
        ``--overwrite``: train from scratch, replacing the checkpoint, its
        ``last/`` state and its ONNX export -- unless that state was saved by a
        run of this overwrite that was stopped (and ``resume``): it then goes
        on from there, as a Slurm job submitted again after its time limit. They are set aside
        (:func:`astrotool.ml.checkpoint.set_aside`) until the new run's first
        epoch is saved, so an interrupted run keeps the previous model.
    resume : bool
        Continue from ``last/`` when it is there.
    clear : bool
        Delete for a restart. With several training processes every process
        decides (they all refuse alike) and only rank 0 clears; it also settles
        what a stopped save left, and the others (``clear=False``) wait for that
        (:func:`astrotool.ml.checkpoint.wait_for_repair`, at most a minute)
        before they decide.
    settings : dict, optional
        This run's settings, the ``meta["settings"]`` it gives
        :func:`astrotool.ml.training.fit`: a resume is refused, before any
        work, unless they equal those ``last/`` was trained with
        (:func:`astrotool.ml.training.check_resume_settings`). None: not
        checked here (``fit`` refuses a resume without settings).
    share : callable, optional
        With several training processes, what gives every process rank 0's
        value (:meth:`astrotool.ml.fabric.Runtime.broadcast`): rank 0 decides,
        after its repairs, whether a stopped ``--overwrite`` goes on, and the
        others follow (they could see the folder while it repairs it). None:
        one process, or ``alone=False``.
    alone : bool
        Without ``share``: one training process. Several (``False``, as
        plugins written before ``share`` say) never resume a stopped
        ``--overwrite``: they could decide apart.

    Returns
    -------
    str
        ``"new"`` (nothing there), ``"resume"`` (continue from ``last/``;
        a finished run trains no further) or ``"restart"`` (cleared).

    Raises
    ------
    astrotool.errors.AstroError
        A model is there and neither ``overwrite`` nor a resumable ``resume``
        applies: training would silently replace it. Or ``resume`` applies
        but the model was trained with other settings (each differing key
        named, old -> new).
    """
    from astrotool.ml.checkpoint import (LAST_DIR, STATE_META_FILE, TRAINING_NAMES, recover_last, resolve_last,
                                         restore_set_aside, set_aside, settle_checkpoint, wait_for_repair,
                                         wait_for_restore)

    d = Path(directory)
    names = (*TRAINING_NAMES, "model.onnx")
    if clear and restore_set_aside(d):  # an earlier --overwrite that saved no epoch (killed with SIGKILL)
        import logging

        logging.getLogger("astro").warning("%s: put back the model that an interrupted --overwrite had set aside", d)
    elif not clear and not overwrite:
        wait_for_restore(d)  # rank 0 puts it back: every rank then decides on the same files
    if clear:
        if d.is_dir():  # a save that a stop cut short: its complete set takes its place
            settle_checkpoint(d)
            recover_last(d)
    elif not overwrite:  # ... which rank 0 does: the other ranks decide once it is done, on the same files
        wait_for_repair(d)  # (--overwrite trains from scratch whatever they see: no need to wait)
    decides = clear and (share is not None or alone)   # rank 0, or the one process
    own = bool(overwrite and resume and decides and _own_last(d, overwrite, settings))
    if overwrite and resume and share is not None:
        own = bool(share(own))   # every process: rank 0's decision, made once its repairs are done
    if own:
        return "resume"   # this --overwrite, stopped after an epoch and run again: it goes on from there
    if not any((d / n).exists() for n in names):
        return "new"
    if overwrite:
        if clear:  # kept aside until the new run's first epoch is saved: an interrupted run loses nothing
            set_aside(d, names)
        return "restart"
    if resume and (resolve_last(d) / STATE_META_FILE).is_file():
        from astrotool.ml.training import check_resume_settings

        if settings is not None:  # without them fit refuses the resume
            check_resume_settings(d, settings)
        return "resume"
    why = "and --no-resume was asked for" if not resume else f"without a resumable state ({LAST_DIR}/)"
    if resume and _first_epoch_only(d):
        why += (": a stop during the first epoch's save (after the best checkpoint, before its "
                f"{LAST_DIR}/) left nothing to resume from")
    raise AstroError(f"{d}: a model is already here {why}; use --overwrite to train it again from scratch "
                     "or another --model name")


def _own_last(directory: Path, overwrite, settings: dict[str, Any] | None) -> bool:
    """Whether the model's ``last/`` state was saved by this ``--overwrite`` (:class:`astrotool.made_with.Overwrite`,
    a run of it stopped before it finished) with these settings, so that running it again resumes it."""
    from astrotool.made_with import replaces
    from astrotool.ml.checkpoint import STATE_META_FILE, resolve_last
    from astrotool.ml.training import check_resume_settings

    state = resolve_last(directory) / STATE_META_FILE
    if settings is None or not state.is_file() or replaces(overwrite, state):
        return False
    try:
        check_resume_settings(directory, settings)
    except AstroError:
        return False
    return True


def _first_epoch_only(directory: Path) -> bool:
    """Whether the model folder's checkpoint is of a run's first epoch and no ``last/`` was saved: what a stop
    between the two writes of the first epoch's save leaves (later epochs always have a ``last/``)."""
    from astrotool.ml.checkpoint import read_meta

    try:
        progress = read_meta(directory).get("training_progress") or {}
    except AstroError:
        return False
    return isinstance(progress, dict) and progress.get("epochs_done") == 1


def warn_schedule_change(directory: str | Path, epochs: int, log) -> None:
    """Warn that a resumed cosine schedule now spans ``epochs`` instead of the epochs it was started with.

    The learning rate of the resumed epochs follows the new curve, so the
    weights differ from those of ``epochs`` epochs trained in one go. Silent
    when no epoch will run (``epochs`` at most the epochs already done).
    """
    from astrotool.ml.checkpoint import read_meta, resolve_last

    if epochs <= epochs_done(directory):
        return
    before = read_meta(resolve_last(directory)).get("hyperparameters", {}).get("epochs")
    if before is not None and before != epochs:
        log.warning("the cosine learning-rate schedule now spans %d epochs instead of %d: the resumed epochs "
                    "follow the new curve (not the same weights as %d epochs in one go)", epochs, before, epochs)


# ---------------------------------------------------------------- seed, progress, record


def resumed_dir(ctx, directory: str | Path, runtime, resume: bool = True) -> Path | None:
    """``directory`` when a training there would go on from its ``last/`` state, for :func:`epoch_progress`:
    with ``resume``, without ``--overwrite`` or when that state was saved by a stopped run of this overwrite
    (:func:`prepare_training`; rank 0's view, settings not compared); None when it starts from scratch.
    ``runtime`` is not used (kept for the plugins that pass it)."""
    from astrotool.made_with import replaces
    from astrotool.ml.checkpoint import STATE_META_FILE, resolve_last

    if not resume:
        return None
    if not ctx.overwrite:
        return Path(directory)
    if replaces(ctx.overwrite, resolve_last(directory) / STATE_META_FILE):
        return None
    return Path(directory)


@contextlib.contextmanager
def epoch_progress(ctx, epochs: int, desc: str, directory: str | Path | None = None) -> Iterator[Callable]:
    """A progress bar over ``epochs`` advanced once per finished epoch.

    Yields the ``on_epoch`` callback for :func:`astrotool.ml.training.fit`.
    With ``directory``, epochs already done in its ``last/`` state (a resumed
    run) are counted as done from the start, not in the rate that gives the time left.
    """
    done = min(epochs_done(directory), epochs) if directory is not None else 0
    with ctx.progress(epochs, desc, already=done) as advance:
        yield lambda entry=None: advance(1)


def record(ctx, inputs: Iterable = (), outputs: Iterable = ()) -> None:
    """Add files to the run record (``runs/<utc>-<command>/run.json``)."""
    for p in inputs:
        ctx.record.add_input(p)
    for p in outputs:
        ctx.record.add_output(p)


def history_figure(ctx, directory: str | Path, path: str | Path) -> Path | None:
    """Plot a checkpoint's loss and metric curves per epoch to ``path`` (PNG) and record it.

    Reads the ``history`` that :func:`astrotool.ml.training.fit` keeps in the
    checkpoint's ``model.json`` (:func:`astrotool.io.figures.plot_history`).

    Returns
    -------
    pathlib.Path or None
        The figure; None when the checkpoint holds no history yet.
    """
    from astrotool.io.figures import plot_history
    from astrotool.ml.checkpoint import read_meta

    history = read_meta(directory).get("history") or []
    if not history:
        return None
    out = plot_history(path, history, title=f"{Path(directory).name}: {len(history)} epochs")
    ctx.record.add_output(out)
    return out


# ---------------------------------------------------------------- predictions and exports


def report_throughput(ctx, pred, what: str = "samples") -> dict:
    """Log a prediction's throughput and return the keys a command adds to its result.

    Parameters
    ----------
    ctx : astrotool.context.Context
    pred : astrotool.ml.predict.Predictions
    what : str
        What a sample is, for the log line (``"stamps"``).

    Returns
    -------
    dict
        ``{"samples_per_s": ..., "engine": ..., "device": ...}`` (``samples_per_s``
        None when it cannot be measured).
    """
    batch = f", batch {pred.batch_size}" if pred.batch_size else ""  # None: the caller's own batches
    ctx.log.info("predicted %d %s in %.2f s: %.0f %s/s (%s on %s%s, precision %s)", pred.n, what,
                 pred.seconds, pred.samples_per_s, what, pred.engine, pred.device, batch, pred.precision)
    return {k: v for k, v in pred.summary().items() if k in ("samples_per_s", "engine", "device")}


def export_checked(ctx, model, inputs, out_path: str | Path, *, sources: Iterable = (), **kwargs) -> dict:
    """Export to ONNX with the parity check (:func:`astrotool.ml.export.export_onnx`) and record it.

    Parameters
    ----------
    ctx : astrotool.context.Context
    model : torch.nn.Module
    inputs : numpy.ndarray
        Parity inputs.
    out_path : path-like
    sources : iterable of path-like
        Inputs of the run (the checkpoint folder).
    **kwargs
        Passed to :func:`~astrotool.ml.export.export_onnx` (``opset``, ``tol``,
        ``metadata``, ``input_name``, ``output_names``).

    Returns
    -------
    dict
        :func:`~astrotool.ml.export.export_onnx`'s result.
    """
    from astrotool.ml.export import export_onnx

    res = export_onnx(model, inputs, out_path, **kwargs)
    ctx.log.info("%s: onnxruntime matches torch to %.2g (<= %g) on %d samples", res["path"], res["max_abs_diff"],
                 res["tol"], res["samples"])
    record(ctx, inputs=sources, outputs=[res["path"]])
    return res
