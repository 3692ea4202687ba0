"""The per-run context a command works in: configuration, workspace, executor, record.

The command line creates one :class:`Context` per run from the global options
(``-w``, ``--cfg``, ``--set``, ``--executor``, ...) and makes it available to the
running command through :func:`current`. Everything is resolved lazily, so
commands that need no configuration (``astro --help``) never load it.
"""

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

__docformat__ = "numpy"


def _whole_number(text: str) -> int:
    """An integer >= 0 (``--jobs``, ``--seed``)."""
    value = int(text)
    if value < 0:
        raise ValueError
    return value


MIN_PROGRESS_INTERVAL_S = 0.1
"""The shortest ``--progress-interval`` [s]: shorter ones would flood a batch log with progress lines."""


def _progress_seconds(text: str) -> float:
    """A number of seconds >= :data:`MIN_PROGRESS_INTERVAL_S` (``--progress-interval``)."""
    value = float(text)
    if not value >= MIN_PROGRESS_INTERVAL_S:
        raise ValueError
    return value


class GlobalOption(NamedTuple):
    """One global option: accepted before or after any sub-command.

    Parameters
    ----------
    names : tuple of str
        Its spellings, e.g. ``("-j", "--jobs")``.
    attr : str
        The :class:`GlobalOptions` attribute it sets.
    help : str
        One line for ``astro --help``.
    metavar : str
        What its value looks like (``"N"``); empty for a flag that takes no value.
    type : type
        Type shown in the help and the reference: ``str``, ``int``, ``float``;
        ``bool`` for a flag, ``int`` with ``count`` for ``-v``.
    convert : callable, optional
        Parses the text of the value; raising ``ValueError`` makes it a usage
        error (exit code 2) that quotes ``expected``. Default: ``type``.
    expected : str
        What a valid value is, for that message.
    repeatable : bool
        Every occurrence is kept (``--cfg``, ``--set``).
    count : bool
        Each occurrence adds one (``-v``, ``-vv``).
    config_key : str
        The ``core.*`` key it sets, if any (the highest configuration layer).
    """

    names: tuple[str, ...]
    attr: str
    help: str
    metavar: str = ""
    type: type = str
    convert: Callable[[str], Any] | None = None
    expected: str = ""
    repeatable: bool = False
    count: bool = False
    config_key: str = ""

    @property
    def takes_value(self) -> bool:
        """Whether the option is followed by a value."""
        return bool(self.metavar)

    @property
    def default(self) -> Any:
        """Its value when not given."""
        if self.repeatable:
            return []
        if self.count:
            return 0
        return None if self.takes_value else False

    def parse(self, text: str) -> Any:
        """The value of ``text``; ``ValueError`` names the option and what it expects."""
        try:
            return (self.convert or self.type)(text)
        except ValueError:
            raise ValueError(f"option {self.names[-1]}: expected {self.expected or self.metavar}, "
                             f"got {text!r}") from None


GLOBAL_OPTIONS: tuple[GlobalOption, ...] = (
    GlobalOption(("-w", "--workspace"), "workspace",
                 "Workspace folder (default: $ASTRO_WORKSPACE, else the current folder).", "DIR"),
    GlobalOption(("--cfg",), "cfg", "TOML config file; repeatable, later wins.", "FILE", repeatable=True),
    GlobalOption(("--set",), "set", "Override one key: section.key=value; repeatable.", "SECTION.KEY=VALUE",
                 repeatable=True),
    GlobalOption(("-q", "--quiet"), "quiet", "Warnings only, no progress.", type=bool),
    GlobalOption(("-v", "--verbose"), "verbose", "More output (-vv: tracebacks).", type=int, count=True),
    GlobalOption(("--log-format",), "log_format", "Logs on stderr: rich on a terminal, else plain lines (auto), or JSON.",
                 "auto|rich|plain|json",
                 config_key="core.log_format"),
    GlobalOption(("--traceback",), "traceback", "Show the full traceback of errors.", type=bool),
    GlobalOption(("--executor",), "executor", "How per-item work runs (see docs: batch).", "serial|process|dask",
                 config_key="core.executor"),
    GlobalOption(("-j", "--jobs"), "jobs",
                 "Worker processes (0 = the cores this process may use); alone, selects the process executor.",
                 "N", int, _whole_number, "an integer >= 0", config_key="core.jobs"),
    GlobalOption(("--scheduler",), "scheduler", "Dask scheduler address (default: a local cluster).", "ADDRESS",
                 config_key="core.scheduler"),
    GlobalOption(("--shard",), "shard", "Run only shard I of N (I/N, I from 0 to N-1), for Slurm arrays; auto: "
                 "this array task's.",
                 "I/N|auto"),
    GlobalOption(("--seed",), "seed", "Base random seed (an integer >= 0).", "N", int, _whole_number,
                 "an integer >= 0", config_key="core.seed"),
    GlobalOption(("--overwrite",), "overwrite", "Recompute outputs that already exist.", type=bool),
    GlobalOption(("--json",), "json", "Print results as JSON (default: a table on a terminal, tab-separated "
                 "text when piped).", type=bool),
    GlobalOption(("--progress-interval",), "progress_interval", "Seconds between progress lines off a terminal.",
                 "SECONDS", float, _progress_seconds, f"a number of seconds >= {MIN_PROGRESS_INTERVAL_S:g}",
                 config_key="core.progress_interval"),
)
"""The global options, once: the command line's pre-parser
(:func:`astrotool.cli.split_global_options`), ``astro --help``, the CLI reference
and :class:`GlobalOptions` are all made from this table. A plugin command may not
define an option with one of these names."""

RESERVED_OPTION_NAMES: frozenset[str] = frozenset(n for o in GLOBAL_OPTIONS for n in o.names)
"""Option names no plugin command may define."""


class GlobalOptions:
    """The values of the :data:`GLOBAL_OPTIONS` of a run, one attribute each
    (``workspace``, ``cfg``, ``set``, ``quiet``, ``verbose``, ``log_format``,
    ``traceback``, ``executor``, ``jobs``, ``scheduler``, ``shard``, ``seed``,
    ``overwrite``, ``progress_interval``); options not given take their default
    (``None``, ``False``, ``0`` or ``[]``).
    """

    def __init__(self, **values: Any):
        unknown = sorted(set(values) - {o.attr for o in GLOBAL_OPTIONS})
        if unknown:
            raise TypeError(f"unknown global option(s): {', '.join(unknown)}")
        for opt in GLOBAL_OPTIONS:
            value = values.get(opt.attr, opt.default)
            setattr(self, opt.attr, list(value or []) if opt.repeatable else value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GlobalOptions) and vars(self) == vars(other)

    def __repr__(self) -> str:
        given = {o.attr: getattr(self, o.attr) for o in GLOBAL_OPTIONS if getattr(self, o.attr) != o.default}
        return "GlobalOptions(" + ", ".join(f"{k}={v!r}" for k, v in given.items()) + ")"

    def config_flags(self) -> dict[str, Any]:
        """The ``core.*`` keys these options set (highest configuration layer)."""
        return {o.config_key: getattr(self, o.attr) for o in GLOBAL_OPTIONS if o.config_key}



def _started_as_copy() -> bool:
    """Whether this process was started as a training process of rank > 0 (``LOCAL_RANK``, ``RANK``,
    ``NODE_RANK`` or ``SLURM_PROCID`` above 0, set by the launcher or by ``srun``), before it knows it is one
    (:meth:`Context.mark_copy`)."""
    for key in ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID"):
        value = os.environ.get(key, "")
        if value.isdigit() and int(value) > 0:
            return True
    return False

class Context:
    """What a running command needs.

    Parameters
    ----------
    options : GlobalOptions
        Global options of the run.
    command : str
        The command path, e.g. ``"dre fit"`` (names ``runs/<utc>-<command>/``).
    argv : list of str
        The full command line.
    """

    def __init__(self, options: GlobalOptions | None = None, command: str = "astro",
                 argv: list[str] | None = None):
        self.options = options or GlobalOptions()
        self.command = command
        self.argv = list(argv or [])
        self.failures: list = []
        self.is_copy = False
        self.started = time.time()
        self._config = None
        self._workspace = None
        self._record = None
        self._said_scheduler = self._said_jobs = self._said_array = False
        self._overwrite = None
        self._overwrite_marker: Path | None = None
        self.jobs_started: int | None = None  # the most workers a map started (None: no map started any)
        self.shard_used = False  # whether the command split its items by --shard (map, shard_of)
        self.folder_at_start = False  # the command line's: its runs/ folder made when it first uses the workspace
        self.log = logging.getLogger("astro")

    @classmethod
    def create(cls, workspace: str | os.PathLike | None = None, command: str = "astro", **options) -> "Context":
        """A context for library use and tests, e.g. ``Context.create(tmp_path, set=["dre.x=1"])``."""
        return cls(GlobalOptions(workspace=str(workspace) if workspace else None, **options), command)

    def use_workspace(self, path: str | os.PathLike) -> None:
        """Make ``path`` the workspace of this command, as ``-w PATH`` would (``astro init DIR``): its
        configuration (``astro.toml``) and its run record. Before the command has written anything."""
        if self._record is not None:   # (init makes no runs/ folder before this: Context.workspace)
            raise RuntimeError("use_workspace: the run record has started already")
        self.options.workspace = str(Path(path).expanduser().resolve())
        self._workspace = self._config = None

    # -- configuration ---------------------------------------------------------------
    @property
    def workspace_root(self) -> Path:
        """The workspace folder: ``-w``, else ``$ASTRO_WORKSPACE``, else the current folder.

        Raises
        ------
        astrotool.errors.AstroError
            ``-w ""`` or ``$ASTRO_WORKSPACE`` set but empty (a variable meant to be set, not the current folder).
        """
        given, name = self.options.workspace, "-w/--workspace"
        if given is None:
            given, name = os.environ.get("ASTRO_WORKSPACE"), "$ASTRO_WORKSPACE"
        if given == "":
            from astrotool.errors import AstroError

            raise AstroError(f"{name}: empty; give a workspace folder (leave it out for the current folder)")
        return Path(given or ".").expanduser().resolve()

    @property
    def config(self):
        """The resolved, validated :class:`astrotool.config.Config`."""
        if self._config is None:
            from astrotool import config

            self._config = config.load(workspace=self.workspace_root, cfg_files=self.options.cfg,
                                       sets=self.options.set, flags=self.options.config_flags())
            self._log_from_config()
        return self._config

    def _log_from_config(self) -> None:
        """Set up the logger again with ``core.log_format`` and ``core.progress_interval`` as layered.

        The logger starts with the command-line values (or the defaults) before the
        config is read; a ``--cfg`` file or ``astro.toml`` may set them too.
        """
        from astrotool import console

        core = self._config.section("core")
        console.setup(core.log_format, verbosity=self.options.verbose, quiet=self.options.quiet,
                      interval=core.progress_interval)

    def section(self, name: str, flags: dict[str, Any] | None = None):
        """Validated config section ``name`` with explicit flag values (``None`` = not given) applied."""
        return self.config.section(name, flags)

    @property
    def core(self):
        """The ``core`` section (executor, jobs, seed, logging)."""
        return self.config.section("core")

    @property
    def seed(self) -> int:
        """The run's base seed (``core.seed``)."""
        return int(self.core.seed)

    def stage_seed(self, seed: int | None, key: str) -> int:
        """The seed a stage draws with: its own ``seed`` (the config key ``key``, e.g. ``lens.train.seed``)
        when set, else ``core.seed`` (``--seed``).

        When both are set and differ, the later layer wins, as for any one key: ``--seed 7`` on the command
        line over a file's ``[lens.train] seed = 3``, ``--set lens.train.seed=3`` over a file's ``core.seed``;
        set by one layer, the stage's own. The log names the seed that is not used and where it was set.
        """
        if seed is None:
            return self.seed
        config = self.config
        core_at = config.layer_position("core.seed")
        if int(seed) == self.seed or core_at < 0:   # core.seed left at its default
            return int(seed)
        core_source, own_source = config.sources["core.seed"], config.sources.get(key, "")
        if core_at > config.layer_position(key):
            self.log.info("seed %d (core.seed, %s) is used, not %s = %d (%s), which an earlier layer set",
                          self.seed, core_source, key, seed, own_source or "defaults")
            return self.seed
        self.log.info("seed %d (%s, %s) is used, not core.seed = %d (%s)", seed, key, own_source or "defaults",
                      self.seed, core_source)
        return int(seed)

    @property
    def overwrite(self):
        """``--overwrite``: False, or a true :class:`astrotool.made_with.Overwrite` whose ``since`` lets a run
        of the same command stopped before it finished be resumed by running it again (:meth:`_overwrite_since`)."""
        if not self.options.overwrite:
            return False
        if self._overwrite is None:
            from astrotool.made_with import Overwrite

            self._overwrite = Overwrite(self._overwrite_since())
        return self._overwrite

    @property
    def kept_hint(self) -> str:
        """Why a command kept finished outputs, for its ``kept N file(s) (...)`` line."""
        return ("made with these settings by a run of this --overwrite that did not finish" if self.overwrite
                else "use --overwrite to recompute")

    def _overwrite_since(self) -> float | None:
        """When this overwrite began: the modification time [s] of ``runs/.overwrite/<key>.json``, written by
        the first run of the same command, arguments, shard, settings and versions, and removed when a run of
        it succeeds. None where it cannot be kept (a workspace that cannot be written): every output is then
        made again."""
        try:   # every process of a DDP run too: they all read one marker, so decide alike
            from astrotool.cli import _versions, split_global_options
            from astrotool.made_with import digest
            from astrotool.workspace import write_json_atomic

            config = self.resolved_config()
            core = config.pop("core", {})
            key = digest({"command": self.command, "args": split_global_options(self.argv[1:])[1],
                          "shard": self.executor_options.shard, "seed": core.get("seed"), "config": config,
                          "versions": _versions()})
            marker = self.workspace.root / "runs" / ".overwrite" / f"{key}.json"   # the workspace made as usual
            copy = _started_as_copy()   # a training process of rank > 0: rank 0 writes the marker and decides
            if marker.is_file() and not copy:
                began = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(marker.stat().st_mtime))
                self.log.info("--overwrite: going on with the one begun %s by a run that did not finish (what it "
                              "made with these settings is kept; delete %s to start afresh)", began, marker)
            elif copy and not marker.is_file():   # it never says a fresh run of rank 0 "did not finish"
                return None
            elif not marker.is_file():
                marker.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(marker, {"command": self.argv, "started": self.started})
            self._overwrite_marker = marker
            return marker.stat().st_mtime
        except Exception as exc:   # never stop a command for this: it makes everything again
            self.log.debug("--overwrite: no record of when it began (%s): every output is made again", exc)
            return None

    # -- workspace and record ----------------------------------------------------------
    @property
    def workspace(self):
        """The :class:`astrotool.workspace.Workspace`; using it makes the run record a ``run.json``."""
        if self._workspace is None:
            from astrotool.workspace import Workspace

            ws = Workspace(self.workspace_root)  # refuses a path that is a file
            if not ws.root.is_dir():
                ws.create_root()
                if self.command != "init":  # a typo in -w would go unseen
                    self.log.warning("workspace %s did not exist: created it (`astro init %s` also makes its "
                                     "stage folders and astro.toml)", ws.root, ws.root)
            self._warn_inside_workspace(ws)
            self._workspace = ws
            if self.folder_at_start and not self.is_copy and self.command != "init":   # init lists what it makes
                # the run's folder from its start: a command killed outright is seen without run.json (`astro
                # status`); finish() makes it where this could not
                with contextlib.suppress(OSError):
                    self.record.dir = ws.new_run_dir(self.command, self.started)
        return self._workspace

    def _warn_inside_workspace(self, ws) -> None:
        """Warn when the workspace is the current folder (no ``-w``, no ``$ASTRO_WORKSPACE``), which holds no
        ``astro.toml``, inside a workspace (a folder with an ``astro.toml``, or with run records in ``runs/``, as
        a workspace made without ``astro init`` has): a command run from a workspace's subfolder (``dre/``) makes
        a second workspace there, without the first one's configuration and outputs."""
        from astrotool.workspace import WORKSPACE_FILE

        if self.options.workspace is not None or os.environ.get("ASTRO_WORKSPACE") is not None \
                or self.command == "init" or (ws.root / WORKSPACE_FILE).exists():
            return
        outer = next((p for p in ws.root.parents if (p / WORKSPACE_FILE).is_file()
                      or next((p / "runs").glob("*/run.json"), None) is not None), None)
        if outer is not None:
            unread = f" and {outer / WORKSPACE_FILE} is not read" if (outer / WORKSPACE_FILE).is_file() else ""
            self.log.warning("the workspace is the current folder %s, inside the workspace %s: its outputs go here%s; "
                             "give `-w %s` to use that one", ws.root, outer, unread, outer)

    @property
    def record(self):
        """The :class:`astrotool.workspace.RunRecord` of this run."""
        if self._record is None:
            from astrotool.workspace import RunRecord

            ws = self.workspace   # its first use makes the record, with the run's folder (folder_at_start)
            if self._record is None:
                self._record = RunRecord(ws, self.command, self.argv, {}, started=self.started)
        return self._record

    def mark_copy(self) -> None:
        """Declare this process a copy of the command (a training process of rank > 0).

        One command run by several processes (DDP, ``srun``) keeps one record and one voice: a
        copy writes no ``run.json``, logs nothing below an error, and leaves the errors every process meets
        alike (bad input, a stop) to rank 0 (:func:`astrotool.cli.main`).
        """
        import logging

        self.is_copy = True
        logging.getLogger("astro").setLevel(logging.ERROR)
        if self._record is not None and self._record.dir is not None:   # made when it used the workspace
            with contextlib.suppress(OSError):
                self._record.dir.rmdir()   # empty: a copy writes no run.json
                self._record.dir = None

    def finish(self, status: str, exit_code: int, error: str | None = None) -> Path | None:
        """Write ``run.json`` if the command used the workspace (and is not a copy); return its path. A run
        of ``--overwrite`` that succeeded ends it: the next one makes everything again."""
        if exit_code == 0 and self._overwrite_marker is not None and not self.is_copy:   # rank 0 says it ended
            self._overwrite_marker.unlink(missing_ok=True)
        if self.is_copy or (self._record is None and self._workspace is None):
            return None
        record = self.record
        with contextlib.suppress(Exception):
            record.config = self.resolved_config()
        if self.failures:
            record.extra["failures"] = self._failure_rows()
        if self.jobs_started is not None:  # the workers the maps started; none: no map ran (or a remote cluster)
            record.extra["jobs_resolved"] = self.jobs_started
        with contextlib.suppress(Exception):  # the shard as resolved (--shard auto: this array task's)
            if (shard := self.executor_options.shard) is not None:
                record.extra["shard"] = "{}/{}".format(*shard)
        return record.finish(status, exit_code, error)

    def resolved_config(self) -> dict:
        """The configuration as the command uses it: :meth:`Config.resolved` with ``core.executor`` as run
        (``-j N`` or ``--scheduler`` alone choose the process or Dask executor over a serial one)."""
        data = self.config.resolved()
        if "core" in data:
            data["core"]["executor"] = self.executor_options.kind
        return data

    def executor_source(self) -> str | None:
        """Where ``core.executor`` came from when :meth:`resolved_config` changed it (the option alone
        that chose it), else None."""
        if self.executor_options.kind == self.core.executor:
            return None
        return "--scheduler alone" if self.options.scheduler else f"-j {self.options.jobs} alone"

    # -- execution -----------------------------------------------------------------------
    @property
    def executor_options(self):
        """:class:`astrotool.executors.ExecutorOptions` from the ``core`` section and ``--shard``."""
        from astrotool.executors import ExecutorOptions, parse_shard

        core = self.core
        kind = core.executor
        if kind == "serial" and self.options.executor is None:  # a serial executor would ignore either flag:
            if self.options.scheduler:
                kind = "dask"  # `--scheduler ADDRESS` alone asks for that Dask cluster
            elif self.options.jobs not in (None, 1):
                kind = "process"  # `-j N` alone asks for N workers
        return ExecutorOptions(kind=kind, jobs=core.jobs, scheduler=core.scheduler or None,
                               shard=parse_shard(self.options.shard))

    def _scheduler_name(self) -> str:
        """How errors name the scheduler address: ``--scheduler``, or the configuration key and its source."""
        if self.options.scheduler:
            return "--scheduler"
        source = self.config.sources.get("core.scheduler", "")
        return f"core.scheduler ({source})" if source else "core.scheduler"

    def shard_of(self, items: Sequence[Any]) -> list[Any]:
        """The ``items`` this process runs under ``--shard`` (all of them without): the ones to record
        as its inputs, in the order :meth:`map` takes them."""
        from astrotool.executors import select_shard

        self.shard_used = True
        return [items[i] for i in select_shard(items, self.executor_options.shard)]

    def map(self, fn: Callable[[Any, int], Any], items: Sequence[Any], desc: str,
            keys: Sequence[str] | None = None, options=None,
            outputs: Callable[[Any], Any] | None = None, need_all: str | None = None) -> list[tuple[str, Any]]:
        """Run ``fn(item, seed)`` over ``items`` with the run's executor and progress.

        Failures are logged, kept in :attr:`failures` (reported as a table and exit
        code 1 at the end of the command) and left out of the returned list.

        Every plugin uses one shape: an item is a frozen dataclass with named
        fields holding paths and small parameters (it is pickled to worker
        processes and Dask workers: no open files, arrays or models), and ``fn``
        is a module-level function ``fn(item, seed)`` that writes its output
        atomically and returns a small result (e.g. the path it wrote and whether
        it skipped it). Library functions that loop over items take this method
        as their ``mapper`` instead of a serial fallback of their own::

            @dataclass(frozen=True)
            class Tile:
                path: str
                out: str
                overwrite: bool = False

            def process_tile(item: Tile, seed: int) -> dict: ...

            ctx.map(process_tile, tiles, "detect tiles", keys=[Path(t.path).stem for t in tiles])

        Parameters
        ----------
        fn : callable
            Module-level function ``fn(item, seed) -> result``; ``seed`` is the
            item's own seed, derived from the run's seed and the item's key.
        items : sequence
            Work items: frozen dataclasses (see above).
        desc : str
            Progress description, e.g. ``"detect tiles"``.
        keys : sequence of str, optional
            Stable item identities (seeds derive from them).
        options : ExecutorOptions, optional
            Override the run's executor options (e.g. serial for a tiny job).
        outputs : callable, optional
            ``outputs(result) -> iterable of paths``: the files an item wrote, recorded in
            ``run.json`` as the item finishes (in this process, whatever the executor), so a
            stopped run's record lists what finished. A path added again later is recorded once.
        need_all : str, optional
            For a stage whose later steps need every item, what an item is called
            (``"shard"``): a failure stops the command with one error, as
            :meth:`raise_failures` words it, each failure said once.

        Returns
        -------
        list of (key, result)
        """
        from astrotool import console
        from astrotool.executors import connected, failure_line, run_items
        from astrotool.names import printable

        options = options or self.executor_options
        self.shard_used |= options.shard is not None   # not for a helper job run whole (options given)
        if self.options.scheduler and options.kind != "dask" and not self._said_scheduler:
            self._said_scheduler = True
            self.log.warning("--scheduler %s is not used: the %s executor runs the items (--executor dask "
                             "sends them there)", self.options.scheduler, options.kind)
        if self.options.jobs not in (None, 1) and not self._said_jobs and self.executor_options.kind == "serial":
            self._said_jobs = True
            self.log.warning("-j %s is not used: the serial executor runs the items one at a time (--executor "
                             "process or dask runs them in parallel)", self.options.jobs)
        array = os.environ.get("SLURM_ARRAY_TASK_ID")
        if array and self.options.shard is None and len(items) > 1 and not self._said_array:
            self._said_array = True
            self.log.warning("Slurm array task %s without --shard: it runs all %d items of %s, as every other task "
                             "of the array does; add --shard auto to give each task its share (a sweep whose tasks "
                             "differ in settings or workspace needs none)", array, len(items), desc)
        keys = [str(k) for k in (keys if keys is not None else items)]
        n = len(range(*((options.shard[0], len(keys), options.shard[1]) if options.shard else (0, len(keys)))))
        if options.shard and not n and keys:
            self.log.info("--shard %d/%d had nothing to do in %s: its %d item(s) fall to the other --shard tasks",
                          options.shard[0], options.shard[1], desc, len(keys))
        def done(key: str, result: Any) -> None:   # an item's files, recorded as it finishes
            try:
                for path in outputs(result) or ():
                    self.record.add_output(path)
            except Exception as exc:  # noqa: BLE001 - a recording problem is not the item's failure
                self.log.warning("%s: %s: its outputs could not be recorded in run.json: %s: %s", desc,
                                 printable(key), type(exc).__name__, printable(str(exc)))
        def kept(key: str, paths: list) -> None:   # the files of an item a stop interrupted: they stay, whole
            for path in paths:
                try:
                    self.record.add_output(path)
                except Exception as exc:  # noqa: BLE001 - the stop goes on
                    self.log.warning("%s: %s: %s could not be recorded in run.json: %s: %s", desc, printable(key),
                                     printable(str(path)), type(exc).__name__, printable(str(exc)))
        def started(workers: int) -> None:   # the number of workers this map started (the most of all maps)
            self.jobs_started = max(self.jobs_started or 0, workers)
        with connected(options, n, self._scheduler_name()) as client, console.progress(n, desc) as advance:
            results, failures = run_items(fn, items, keys, options, self.seed, advance, client,
                                          done if outputs is not None else None, started,
                                          kept if outputs is not None else None)
            advance.set_failed(len(failures))
        for i, f in enumerate(failures):
            if i or not need_all:   # the first of a need_all map is the error raised below
                self.log.error("%s: failed: %s", desc, printable(failure_line(f.key, f.error)))
            if self.options.traceback and f.traceback:
                self.log.error(f.traceback)
        before = len(self.failures)
        self.failures.extend(failures)
        if need_all:
            self.raise_failures(before, len(items), need_all)
        return results

    def raise_failures(self, since: int, total: int, what: str = "item") -> None:
        """Stop the command if items failed since ``len(self.failures) == since``: one error for all of them.

        For stages whose later steps need every item (a table of all maps, a
        manifest of all shards): the first failure's message, how many of
        ``total`` failed, and that the finished ones stay. The exit code is 2 when
        every failure was bad input (an :class:`~astrotool.errors.AstroError` of
        exit code 2), else 1. The failures are taken off :attr:`failures` (they
        are reported by this error, not again as a table).
        """
        failed = self.failures[since:]
        if not failed:
            return
        del self.failures[since:]
        from astrotool.errors import AstroError
        from astrotool.names import printable

        code = 2 if all(f.exit_code == 2 for f in failed) else 1
        first = failed[0]
        raise AstroError(f"{printable(first.key)}: {printable(first.error)} ({len(failed)} of {total} {what}(s) "
                         "failed; the finished ones stay, a rerun resumes)", exit_code=code)

    # -- output ------------------------------------------------------------------------
    def emit(self, obj) -> None:
        """Print a result on stdout (JSON for dicts and lists).

        With ``--json``, a result (dict) of a run whose items failed also lists them under ``failures``
        (``[{"item": key, "error": message}]``), as ``run.json`` does: stdout alone says what is missing.
        """
        from astrotool import console

        if self.failures and isinstance(obj, dict) and "failures" not in obj and console.json_results():
            obj = {**obj, "failures": self._failure_rows()}
        console.emit(obj)

    def _failure_rows(self) -> list[dict]:
        """The failed items as ``run.json`` and ``--json`` results list them: ``[{"item", "error"}]``."""
        from astrotool.names import printable

        return [{"item": printable(f.key), "error": printable(f.error)} for f in self.failures]

    @staticmethod
    def progress(total: int | None, desc: str, already: int = 0):
        """Progress context manager; see :func:`astrotool.console.progress`."""
        from astrotool import console

        return console.progress(total, desc, already)


_CURRENT: Context | None = None


def current() -> Context:
    """The context of the running command (a default one outside the command line)."""
    global _CURRENT
    if _CURRENT is None:
        _CURRENT = Context()
    return _CURRENT


def set_current(ctx: Context | None) -> None:
    """Install ``ctx`` as the running command's context (``None`` clears it)."""
    global _CURRENT
    _CURRENT = ctx


def old_option(name: str, instead: str, default: Any = None):
    """A command's option of an earlier release, still read but hidden from ``--help``: given, it logs
    ``<name>: <instead>`` as a warning (``old_option("--output", "renamed --name")``), as a renamed config key
    does. An option no longer read stops instead, naming its new name (``renamed_keys``)."""
    import typer

    def tell(value):
        if value != default:
            logging.getLogger("astro").warning("%s: %s", name, instead)
        return value

    return typer.Option(default, name, hidden=True, callback=tell, help=f"old option: {instead}")


def astro_command(*words) -> str:
    """``astro [-w WORKSPACE] [--cfg FILE] [--set KEY=VALUE] [--seed N] WORDS...``, quoted for a shell, for a
    message that suggests a command: ``-w`` is there whenever the running command's workspace (``-w`` or
    ``$ASTRO_WORKSPACE``) is not the current folder, relative to it when inside it, and the running command's
    ``--cfg``, ``--set`` and ``--seed`` follow, so that the command runs as pasted, with the same settings.

    Parameters
    ----------
    *words
        What follows ``astro`` and its workspace (global options such as ``--seed``, then the sub-command).

    Returns
    -------
    str
        For example ``astro -w work ztf export --model sim_classifier``.
    """
    import shlex

    ctx = current()
    root, here = ctx.workspace_root, Path.cwd().resolve()
    where = [] if root == here else ["-w", os.path.relpath(root) if root.is_relative_to(here) else str(root)]
    o = ctx.options
    settings = [*(w for f in o.cfg or [] for w in ("--cfg", f)), *(w for s in o.set or [] for w in ("--set", s)),
                *(("--seed", o.seed) if o.seed is not None else ())]
    return shlex.join(["astro", *where, *map(str, settings), *map(str, words)])
