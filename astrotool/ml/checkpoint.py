"""Checkpoints as ``model.safetensors`` + ``model.json``: no pickles.

A checkpoint folder holds

``model.safetensors``
    The model's ``state_dict`` (parameters and buffers), written with
    :mod:`safetensors`, which stores raw tensors and cannot execute code.
``model.json``
    Everything else needed to rebuild and use the model: ``architecture``
    (``{"name": ..., "kwargs": {...}}``), ``hyperparameters``,
    ``normalisation`` constants, the ``training`` configuration, ``metrics``,
    package ``versions`` and the SHA-256 of the weights file, so a JSON file
    paired with another model's weights is detected.

A resumable training run also keeps ``last/`` inside the checkpoint folder: the
last epoch's model in the same format plus ``training_state.safetensors`` /
``training_state.json`` (optimizer moments, epoch, early stopping, history).

All writes are atomic (:func:`astrotool.workspace.atomic_path`), and so are the
sets of files: a checkpoint's pair is written into ``.model.new/`` and then
moved into place (weights first, ``model.json`` last), and readers take a pair
whose move a stop cut short from there; a new ``last/`` is written whole into
``.last.new/`` and swapped in by renames (:func:`save_last`, :func:`resolve_last`),
so a stop at any instant, even a hard kill, leaves a complete previous or new
set. Every problem
found while loading is raised as :class:`astrotool.errors.InputError` naming
the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from astrotool.errors import InputError
from astrotool.provenance import versions
from astrotool.workspace import atomic_path, write_json_atomic

__docformat__ = "numpy"

WEIGHTS_FILE = "model.safetensors"
"""File of a checkpoint's weights (safetensors)."""
META_FILE = "model.json"
"""File of a checkpoint's metadata (architecture, settings, provenance; JSON)."""
STATE_TENSORS_FILE = "training_state.safetensors"
"""File of the training state's tensors (safetensors)."""
STATE_META_FILE = "training_state.json"
"""File of the training state's other values (JSON)."""
LAST_DIR = "last"
"""Sub-folder of a model folder holding the checkpoint of the last epoch (to resume from)."""
LAST_NEW_DIR = ".last.new"
"""Where :func:`save_last` writes the next ``last/`` before swapping it in."""
LAST_OLD_DIR = ".last.old"
"""Where :func:`save_last` moves the previous ``last/`` during the swap."""
STAGE_DIR = ".model.new"
"""Where :func:`save_checkpoint` writes a checkpoint's two files before moving them into place."""
TRAINING_NAMES = ("model.safetensors", "model.json", STAGE_DIR, LAST_DIR, LAST_NEW_DIR, LAST_OLD_DIR)
"""What a training run writes in a model folder (an ``--overwrite`` sets them aside)."""
SET_ASIDE_DIR = ".replaced"
"""Where ``--overwrite`` keeps a model folder's previous checkpoint until the new run's first
epoch is saved (:func:`set_aside`)."""
FORMAT = "astrotool-checkpoint"
"""``format`` of a checkpoint's metadata file."""
FORMAT_VERSION = 1
"""Version of the checkpoint layout."""


def _default_mode(path: Path) -> None:
    """Give a file written by safetensors (0600) the usual permissions (0666 & ~umask)."""
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _save_tensors(tensors: Mapping[str, Any], path: Path, metadata: Mapping[str, str]) -> None:
    """Write ``tensors`` with :func:`safetensors.torch.save_file`, then make the file's bytes depend on
    the tensors and ``metadata`` alone.

    safetensors writes the ``__metadata__`` keys of the header in the order of a Rust ``HashMap``, which
    changes from process to process, so the same tensors saved twice gave files with different bytes
    (and checksums: a retrained model with identical weights looked changed to a settings record). The
    header (8-byte little-endian length, then JSON) is re-emitted here with the metadata keys sorted: the
    same keys and values with the same separators, so its length and the tensor data are unchanged and
    the file is still one safetensors reads. Tensor entries keep safetensors' own (deterministic) order.
    """
    from safetensors.torch import save_file

    save_file(dict(tensors), str(path), metadata=dict(metadata))
    with open(path, "r+b") as fh:
        n = int.from_bytes(fh.read(8), "little")
        raw = fh.read(n)
        header = json.loads(raw)
        meta = header.get("__metadata__")
        if not isinstance(meta, dict) or list(meta) == sorted(meta):
            return
        header["__metadata__"] = {k: meta[k] for k in sorted(meta)}
        body = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(body) <= n:  # the usual case: same length (the header's padding is spaces)
            fh.seek(8)
            fh.write(body + b" " * (n - len(body)))
            return
        data = fh.read()  # pragma: no cover - safetensors writes its JSON unlike json.dumps: write it anew
        body += b" " * (-len(body) % 8)  # data offsets count from the end of the header: they stay
        fh.seek(0)
        fh.write(len(body).to_bytes(8, "little") + body + data)
        fh.truncate()


def _resolve_dir(path: str | Path) -> Path:
    """Accept a checkpoint folder or the path of one of its two files."""
    path = Path(path)
    if path.name in (WEIGHTS_FILE, META_FILE):
        return path.parent
    return path


def save_checkpoint(directory: str | Path, model, meta: Mapping[str, Any]) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory``.

    Parameters
    ----------
    directory : path-like
        Checkpoint folder (created if needed).
    model : torch.nn.Module or dict of str to torch.Tensor
        The model, or its ``state_dict``.
    meta : mapping
        JSON-serialisable metadata. Must hold ``architecture`` =
        ``{"name": str, "kwargs": dict}``; conventional keys are
        ``hyperparameters``, ``normalisation``, ``training``, ``metrics``.
        ``format``, ``versions``, ``created_utc`` and ``weights_sha256`` are
        added.

    Returns
    -------
    pathlib.Path
        The checkpoint folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arch = meta.get("architecture")
    if not isinstance(arch, Mapping) or "name" not in arch:
        raise ValueError("checkpoint meta needs architecture = {'name': ..., 'kwargs': {...}}")
    state = model.state_dict() if hasattr(model, "state_dict") else dict(model)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with _saving(directory):  # a reader's settle_staged leaves the stage to this save meanwhile
        _settle(directory)
        stage = directory / STAGE_DIR  # the pair is written here, then moved into place (settle_checkpoint)
        _rmtree(stage)
        stage.mkdir()
        weights = stage / WEIGHTS_FILE
        with atomic_path(weights) as tmp:
            _save_tensors(tensors, tmp, {"format": FORMAT, "architecture": str(arch["name"])})
            _default_mode(tmp)
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **{k: v for k, v in meta.items() if k not in ("format", "format_version")},
            "weights_sha256": _sha256(weights),
            "created_utc": datetime.now(timezone.utc).isoformat(),
        }
        full.setdefault("versions", versions(("torch", "safetensors")))
        write_json_atomic(stage / META_FILE, full)  # the pair is complete: from here on it is the checkpoint
        _settle(directory)
    return directory


@contextlib.contextmanager
def _saving(directory: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the model folder's lock (``flock`` on the folder itself; no file is added) while its pair is
    staged and moved: :func:`save_checkpoint` and :func:`settle_checkpoint` wait for it, :func:`settle_staged`
    (``wait=False``) does not, and yields False when another process (or thread) holds it. Where no lock can
    be taken (no ``fcntl`` on Windows, a network mount that refuses ``flock``) a saver goes on unlocked (True)
    and a reader is told no (False): it never moves a pair it cannot lock out of a save. A killed holder's lock
    is released by the system."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield wait
        return
    import os

    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError:  # a file system without locks (some network mounts): as without fcntl
            yield wait
            return
        yield True  # closing the descriptor releases the lock
    finally:
        os.close(fd)


def _rename(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` (a file replaces a file; a folder needs ``dst`` absent)."""
    import os

    os.replace(src, dst)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _staged(directory: Path) -> Path | None:
    """The ``.model.new/`` of a checkpoint folder when it holds a complete pair (or what is left of one whose
    move into place was cut short: its ``model.json``, maybe without the weights); else None."""
    stage = directory / STAGE_DIR
    return stage if (stage / META_FILE).is_file() else None


def settle_checkpoint(directory: str | Path) -> None:
    """Finish moving a checkpoint pair from ``.model.new/`` into place, or drop an incomplete one.

    :func:`save_checkpoint` does this itself; a stop between its moves leaves
    it to the next writer (readers take the pair from ``.model.new/``
    meanwhile, :func:`read_meta`; :func:`settle_staged` settles it for
    readers that open the two files themselves). Waits for a
    :func:`save_checkpoint` of the folder under way in another process.
    """
    directory = Path(directory)
    if not (directory / STAGE_DIR).exists():
        return
    with _saving(directory):
        _settle(directory)


def settle_staged(directory: str | Path) -> bool:
    """Settle a pair that a stopped :func:`save_checkpoint` left in ``.model.new/``, for a reader, so that
    ``model.json`` and ``model.safetensors`` of the folder are that pair; return whether it settled one.

    Safe beside a training run writing the folder: it acts only when it gets the folder's lock at once (no
    :func:`save_checkpoint` under way; one that starts later waits for it) and the stage holds the pair's
    ``model.json`` (written last, so the pair is complete). A stage without it (a save under way elsewhere,
    or one a stop cut short) is left as it is: the next training run drops it. Where no lock can be taken
    (no ``fcntl``, a mount that refuses ``flock``) nothing is moved (False): the next training run settles
    it. A folder the caller may not change is left as it is (False).
    """
    directory = Path(directory)
    if _staged(directory) is None:
        return False
    try:
        with _saving(directory, wait=False) as held:
            if not held or _staged(directory) is None:
                return False
            _settle(directory)
            return True
    except OSError:  # a folder the reader may not change (read-only, another user's): read_meta and
        return False  # load_checkpoint take the staged pair as it is


def _settle(directory: Path) -> None:
    """:func:`settle_checkpoint`'s work, with the folder's lock held by the caller."""
    stage = directory / STAGE_DIR
    if _staged(directory) is not None:
        if (stage / WEIGHTS_FILE).is_file():
            _rename(stage / WEIGHTS_FILE, directory / WEIGHTS_FILE)
        _rename(stage / META_FILE, directory / META_FILE)
    if stage.exists():
        _rmtree(stage)


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    path : pathlib.Path
        The checkpoint folder.
    meta : dict
        Contents of ``model.json``.
    state_dict : dict of str to torch.Tensor
        The weights (on the requested device).
    """

    path: Path
    meta: dict
    state_dict: dict = field(repr=False)

    @property
    def architecture(self) -> str:
        """Architecture name recorded in ``model.json``."""
        return self.meta["architecture"]["name"]

    @property
    def kwargs(self) -> dict:
        """Constructor keyword arguments of the architecture."""
        return dict(self.meta["architecture"].get("kwargs", {}))


def read_meta(directory: str | Path, expect_architecture: str | Iterable[str] | None = None) -> dict:
    """Read and check ``model.json`` of a checkpoint folder (no weights are read).

    Parameters
    ----------
    directory : path-like
        Checkpoint folder, or its ``model.json`` / ``model.safetensors``.
    expect_architecture : str or iterable of str, optional
        Accepted architecture names; another one raises InputError.

    Raises
    ------
    astrotool.errors.InputError
        Missing or unreadable file, not an astrotool checkpoint, or an unexpected architecture.
    """
    directory = _resolve_dir(directory)
    meta_path = (_staged(directory) or directory) / META_FILE
    if not meta_path.is_file():
        if (meta_path.parent / SET_ASIDE_DIR / META_FILE).is_file():
            raise InputError(meta_path, f"no checkpoint here: an interrupted train --overwrite set it aside in "
                                        f"{SET_ASIDE_DIR}/; any train command of this model puts it back first")
        raise InputError(meta_path, "no checkpoint here (model.json is missing)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(meta_path, f"unreadable checkpoint metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(meta_path, f"not an {FORMAT} file")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(
            meta_path,
            f"written by a newer astrotool (format {meta.get('format_version')} > {FORMAT_VERSION})",
        )
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or "name" not in arch:
        raise InputError(meta_path, "no architecture recorded")
    if expect_architecture is not None:
        allowed = [expect_architecture] if isinstance(expect_architecture, str) else list(expect_architecture)
        if arch["name"] not in allowed:
            raise InputError(meta_path, f"checkpoint of another model: architecture {arch['name']!r}, expected "
                                        f"{' or '.join(map(repr, allowed))}")
    return meta


def load_checkpoint(
    directory: str | Path,
    expect_architecture: str | Iterable[str] | None = None,
    device: str = "cpu",
    verify_hash: bool = True,
) -> Checkpoint:
    """Load a checkpoint folder without executing any code from it.

    Parameters
    ----------
    directory : path-like
        Checkpoint folder, or its ``model.json`` / ``model.safetensors``.
    expect_architecture : str or iterable of str, optional
        Accepted architecture names; another one raises InputError.
    device : str
        Where to put the tensors.
    verify_hash : bool
        Check the weights file against ``weights_sha256`` in ``model.json``.

    Returns
    -------
    Checkpoint

    Raises
    ------
    astrotool.errors.InputError
        Missing files, corrupt weights, mismatched pair, unexpected architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = _resolve_dir(directory)
    meta = read_meta(directory, expect_architecture)
    stage = _staged(directory)  # a pair whose move into place a stop cut short (settle_checkpoint)
    weights = stage / WEIGHTS_FILE if stage is not None and (stage / WEIGHTS_FILE).is_file() else \
        directory / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(weights, "weights file is missing")
    if verify_hash and meta.get("weights_sha256") and _sha256(weights) != meta["weights_sha256"]:
        raise InputError(weights, "weights do not match model.json (SHA-256 differs): truncated or damaged, or "
                                  "the weights of another checkpoint")
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(weights, f"corrupt safetensors file ({exc})") from None
    return Checkpoint(path=directory, meta=meta, state_dict=state)


def unfinished(meta: Mapping[str, Any]) -> str | None:
    """Why a checkpoint's training did not run to its end, or None when it did.

    :func:`astrotool.ml.training.fit` marks ``training_progress.finished``:
    false in the best checkpoint while a run that may train an epoch is under
    way (an interrupted run whose epochs did not improve leaves that
    checkpoint as an earlier run wrote it), true once every asked epoch ran or
    early stopping ended it. Checkpoints without the mark are judged by their
    epoch counts.

    Returns
    -------
    str or None
        e.g. ``"trained 2 of 5 epochs"``.

    Examples
    --------
    >>> unfinished({"training_progress": {"epochs_done": 2, "epochs": 5, "stopped_early": False}})
    'trained 2 of 5 epochs'
    >>> unfinished({"training_progress": {"epochs_done": 2, "epochs": 5, "stopped_early": True}}) is None
    True
    """
    progress = meta.get("training_progress")
    if not isinstance(progress, Mapping) or progress.get("finished") is True:
        return None
    done, epochs = progress.get("epochs_done"), progress.get("epochs")
    counted = isinstance(done, int) and isinstance(epochs, int)
    if progress.get("finished") is False or (counted and done < epochs and not progress.get("stopped_early")):
        return f"trained {done} of {epochs} epochs" if counted else "training interrupted"
    return None


def warn_unfinished(meta: Mapping[str, Any], directory: str | Path, command: str, stage: str = "models") -> None:
    """Log a warning when the training of the checkpoint in ``directory`` (its ``meta``) did not run to its end
    (:func:`unfinished`): its best epoch so far is what the caller uses. ``command`` is the training command,
    e.g. ``"astro plato train"``, told with the workspace's ``-w`` (:func:`astrotool.context.astro_command`)
    and the model's ``--model`` (:func:`astrotool.ml.commands.model_option`; ``stage``: the plugin's folder of
    models): run again with the options that began it (its data set, its settings), it resumes."""
    why = unfinished(meta)
    if why:
        import logging

        from astrotool.context import astro_command
        from astrotool.ml.commands import model_option

        words = command.split()[1:]
        logging.getLogger("astro").warning("%s: training unfinished (%s); its best epoch so far is used; to resume, "
                                           "run the training again as it began, with its data set and options: `%s "
                                           "...`", directory, why,
                                           astro_command(*words, "--model", model_option(directory, words[0], stage)))


def build_model(ckpt: Checkpoint, registry: Mapping[str, Callable[..., Any]]):
    """Instantiate the checkpoint's architecture and load its weights (strict).

    Parameters
    ----------
    ckpt : Checkpoint
        From :func:`load_checkpoint`.
    registry : mapping of str to callable
        ``{architecture name: constructor}``; called with the recorded kwargs.

    Returns
    -------
    torch.nn.Module
        In eval mode.

    Raises
    ------
    astrotool.errors.InputError
        Unknown architecture, bad kwargs, or weights that do not fit the model.
    """
    where = ckpt.path / META_FILE
    if ckpt.architecture not in registry:
        raise InputError(
            where,
            f"checkpoint of another model: architecture {ckpt.architecture!r} "
            f"(known: {', '.join(sorted(registry))})",
        )
    try:
        model = registry[ckpt.architecture](**ckpt.kwargs)
    except (TypeError, ValueError) as exc:
        raise InputError(where, f"cannot build {ckpt.architecture!r} from its recorded settings ({exc})") from None
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(ckpt.path / WEIGHTS_FILE, f"weights do not fit the model ({' '.join(first[:3])})") from None
    model.eval()
    return model


# ----------------------------------------------------------------------------- training state


def flatten_optimizer_state(state_dict: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split an optimizer ``state_dict`` into tensors and JSON-able metadata.

    Parameters
    ----------
    state_dict : mapping
        ``optimizer.state_dict()`` (``{"state": {id: {...}}, "param_groups": [...]}``).

    Returns
    -------
    tensors : dict of str to torch.Tensor
        Keys ``state.<param id>.<name>``.
    meta : dict
        Non-tensor per-parameter entries and the parameter groups.
    """
    import torch

    tensors: dict[str, Any] = {}
    scalars: dict[str, dict] = {}
    for pid, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"scalars": scalars, "param_groups": state_dict["param_groups"]}


def unflatten_optimizer_state(tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> dict:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, entries in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": [dict(g) for g in meta["param_groups"]]}


def save_training_state(directory: str | Path, optimizer, state: Mapping[str, Any]) -> Path:
    """Write the resumable training state into ``directory``.

    Parameters
    ----------
    directory : path-like
        Usually ``<checkpoint>/last``; the model itself is saved there with
        :func:`save_checkpoint` by the caller.
    optimizer : torch.optim.Optimizer
        Its moments go to ``training_state.safetensors``.
    state : mapping
        JSON-serialisable loop state (epoch, step, early stopping, history...).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors, opt_meta = flatten_optimizer_state(optimizer.state_dict())
    path = directory / STATE_TENSORS_FILE
    with atomic_path(path) as tmp:
        _save_tensors(tensors, tmp, {"format": FORMAT})
        _default_mode(tmp)
    write_json_atomic(
        directory / STATE_META_FILE,
        {"format": FORMAT, "optimizer": opt_meta, "loop": dict(state), "tensors_sha256": _sha256(path)},
    )
    return directory


def load_training_state(directory: str | Path, optimizer) -> dict:
    """Restore the optimizer from ``directory`` and return the loop state.

    Raises
    ------
    astrotool.errors.InputError
        Missing, corrupt or mismatched files.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_path = directory / STATE_META_FILE
    path = directory / STATE_TENSORS_FILE
    if not meta_path.is_file() or not path.is_file():
        raise InputError(directory, "no resumable training state here")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(meta_path, f"unreadable training state ({exc})") from None
    if meta.get("tensors_sha256") and _sha256(path) != meta["tensors_sha256"]:
        raise InputError(path, "optimizer state does not match training_state.json")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(path, f"corrupt safetensors file ({exc})") from None
    try:
        optimizer.load_state_dict(unflatten_optimizer_state(tensors, meta["optimizer"]))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise InputError(path, f"optimizer state does not fit this model ({exc})") from None
    return dict(meta.get("loop", {}))


def _complete_last(folder: Path) -> bool:
    """Whether ``folder`` holds a whole last-epoch set (:func:`save_last` writes ``training_state.json`` last)."""
    return (folder / STATE_META_FILE).is_file() and ((folder / META_FILE).is_file()
                                                     or (folder / STAGE_DIR / META_FILE).is_file())


def resolve_last(checkpoint_dir: str | Path) -> Path:
    """The folder holding the complete last-epoch state of a model folder: ``last/``, or after a stop during
    :func:`save_last`'s swap its ``.last.new/`` or ``.last.old/``; ``last/`` when there is none (nothing to
    resume). Changes nothing on disk."""
    d = Path(checkpoint_dir)
    if (d / LAST_DIR).exists():
        return d / LAST_DIR
    # between save_last's two renames: .last.new/ is whole (it is renamed only once complete). .last.old/
    # is not reached by save_last's own order (it exists only beside a whole .last.new/ or, after the second
    # rename, beside the new last/); it is a fallback for a folder whose .last.new/ went otherwise (removed by hand, a filesystem that
    # lost the order of the renames in a crash), harmless when unused
    for name in (LAST_NEW_DIR, LAST_OLD_DIR):
        if _complete_last(d / name):
            return d / name
    return d / LAST_DIR


def recover_last(checkpoint_dir: str | Path) -> Path:
    """Finish or undo a :func:`save_last` swap that a stop cut short, so that ``last/`` holds the complete
    set :func:`resolve_last` names, and remove what is left of the swap. Returns ``<checkpoint_dir>/last``."""
    d = Path(checkpoint_dir)
    src = resolve_last(d)
    if src.name != LAST_DIR:
        _rename(src, d / LAST_DIR)
    for name in (LAST_NEW_DIR, LAST_OLD_DIR):
        if (d / name).exists():
            _rmtree(d / name)
    return d / LAST_DIR


def save_last(checkpoint_dir: str | Path, model, meta: Mapping[str, Any], optimizer,
              state: Mapping[str, Any]) -> Path:
    """Replace ``<checkpoint_dir>/last/`` with the model and training state of a new epoch, as one set.

    The set (:func:`save_checkpoint` and :func:`save_training_state`) is
    written into ``.last.new/``; then ``last/`` becomes ``.last.old/``,
    ``.last.new/`` becomes ``last/`` and ``.last.old/`` is removed. A stop at
    any point, a hard kill included, leaves either the previous set or the
    new one whole, which :func:`resolve_last` finds and the next save settles
    (:func:`recover_last`).

    Returns
    -------
    pathlib.Path
        ``<checkpoint_dir>/last``.
    """
    d = Path(checkpoint_dir)
    last, new, old = recover_last(d), d / LAST_NEW_DIR, d / LAST_OLD_DIR
    save_checkpoint(new, model, meta)
    save_training_state(new, optimizer, state)
    if last.exists():
        _rename(last, old)
    _rename(new, last)
    _rmtree(old)
    return last


def set_aside(directory: str | Path, names: Iterable[str]) -> None:
    """Move ``names`` of a model folder into ``<directory>/.replaced/`` for a training run that
    replaces them: its first saved epoch discards them (:func:`discard_set_aside`); a run that
    ends before that puts them back (:func:`restore_set_aside`, also at the process's exit).
    So an interrupted ``--overwrite`` keeps the previous model."""
    import atexit
    import shutil

    d = Path(directory)
    aside = d / SET_ASIDE_DIR
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    atexit.register(restore_set_aside, d)  # first: a move that fails half-way is put back too
    for n in names:
        if (d / n).exists() or (d / n).is_symlink():
            (d / n).rename(aside / n)


def restore_set_aside(directory: str | Path) -> bool:
    """Put back what :func:`set_aside` moved unless a new model took its place; return whether anything
    was put back.

    A new model is a ``model.json`` saved beside a set-aside one: then the set-aside files go. Else
    every set-aside file comes back, replacing what the unfinished run left under its name (a
    ``last/`` without a model, when no epoch improved), and a move that stopped half-way is undone.
    """
    import shutil

    d = Path(directory)
    aside = d / SET_ASIDE_DIR
    if not aside.is_dir():
        return False
    settle_checkpoint(d)  # a new model whose move into place was cut short is a new model
    if (aside / META_FILE).exists() and (d / META_FILE).exists():
        shutil.rmtree(aside, ignore_errors=True)
        return False
    restored = False
    kept = {p.name for p in aside.iterdir()}
    for p in sorted(aside.iterdir()):
        top = d / p.name
        if top.is_dir() and not top.is_symlink():
            shutil.rmtree(top)
        elif top.exists() or top.is_symlink():
            top.unlink()
        p.rename(top)
        restored = True
    for name in (LAST_NEW_DIR, LAST_OLD_DIR):  # the unfinished run's, unless just put back
        if restored and name not in kept and (d / name).exists():
            shutil.rmtree(d / name, ignore_errors=True)
    shutil.rmtree(aside, ignore_errors=True)
    return restored


def wait_for_restore(directory: str | Path, timeout: float = 60.0) -> None:
    """Wait (at most ``timeout`` seconds) for another process of the same training run, rank 0, to
    :func:`restore_set_aside` a model folder's ``.replaced/``."""
    _wait_while_any(Path(directory), (SET_ASIDE_DIR,), timeout)


def wait_for_repair(directory: str | Path, timeout: float = 60.0) -> None:
    """Wait (at most ``timeout`` seconds) for another process of the same training run, rank 0, to settle
    what a stopped save left in a model folder (:func:`settle_checkpoint`, :func:`recover_last`): until no
    ``.model.new/``, ``.last.new/`` or ``.last.old/`` is left. Rank 0 creates none of them before the
    training's first barrier, so once they are gone the folder is the repaired one."""
    _wait_while_any(Path(directory), (STAGE_DIR, LAST_NEW_DIR, LAST_OLD_DIR), timeout)


def _wait_while_any(directory: Path, names, timeout: float) -> None:
    """Poll (every 0.05 s, at most ``timeout`` seconds) while any of ``directory``'s entries ``names`` exists."""
    import time

    deadline = time.monotonic() + timeout
    while any((directory / n).exists() for n in names) and time.monotonic() < deadline:
        time.sleep(0.05)


def discard_set_aside(directory: str | Path) -> None:
    """Delete what :func:`set_aside` kept once the new run has saved a model (``model.json``; an epoch that
    did not improve saves only ``last/``)."""
    import shutil

    if (Path(directory) / META_FILE).is_file():
        shutil.rmtree(Path(directory) / SET_ASIDE_DIR, ignore_errors=True)
