"""tidelog from Python: the Rust core through PyO3, with wandb's calling conventions.

    import tidelog
    run = tidelog.init(project="mnist", config={"lr": 1e-3}, mode="offline")
    for step in range(100):
        tidelog.log({"loss": 1 / (step + 1)})
    tidelog.finish()

then ``tidelog sync`` (or ``tidelog.sync()``) uploads the run. ``from tidelog import wandb``
gives the same under wandb's names.
"""

import atexit
import glob
import os
import sys
import weakref

from . import _tidelog
from .media import Audio, Histogram, Image, Plot, Table

__all__ = [
    "init", "log", "finish", "save", "sync", "Run", "Config", "Summary",
    "Image", "Audio", "Histogram", "Table", "Plot",
]
__version__ = _tidelog.__version__

_current = None
_live = weakref.WeakSet()


class Config:
    """The run's config: ``config["lr"]``, ``config.lr``, ``config.update({...})``. Every
    change is recorded in the run's log and in ``files/config.json``."""

    __slots__ = ("_core",)

    def __init__(self, core):
        object.__setattr__(self, "_core", core)

    def update(self, d=None, **kw):
        """Merges keys into the config (a dict, an argparse Namespace, or keywords)."""
        d = _as_dict(d)
        d.update(kw)
        if d:
            self._core.config_update(d)

    def as_dict(self):
        """The config as a plain dict."""
        return self._core.config()

    def get(self, key, default=None):
        return self.as_dict().get(key, default)

    def keys(self):
        return self.as_dict().keys()

    def items(self):
        return self.as_dict().items()

    def __getitem__(self, key):
        return self.as_dict()[key]

    def __setitem__(self, key, value):
        self._core.config_update({key: value})

    def __contains__(self, key):
        return key in self.as_dict()

    def __iter__(self):
        return iter(self.as_dict())

    def __len__(self):
        return len(self.as_dict())

    def __getattr__(self, key):
        try:
            return self.as_dict()[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value

    def __repr__(self):
        return f"Config({self.as_dict()!r})"


class Summary:
    """Summary values: ``summary["best"] = 0.93`` overrides the default (the last logged
    value of each key)."""

    __slots__ = ("_core", "_set")

    def __init__(self, core):
        object.__setattr__(self, "_core", core)
        object.__setattr__(self, "_set", {})

    def __setitem__(self, key, value):
        self._core.summary_set(key, value)
        self._set[key] = value

    def __getitem__(self, key):
        return self._set[key]

    def __contains__(self, key):
        return key in self._set

    def get(self, key, default=None):
        return self._set.get(key, default)

    def update(self, d=None, **kw):
        """Sets several summary values."""
        for k, v in {**_as_dict(d), **kw}.items():
            self[k] = v

    def keys(self):
        return self._set.keys()

    def items(self):
        return self._set.items()

    def __getattr__(self, key):
        try:
            return self._set[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        self[key] = value

    def __repr__(self):
        return f"Summary({self._set!r})"


def _as_dict(d):
    if d is None:
        return {}
    if isinstance(d, dict):
        return dict(d)
    if hasattr(d, "__dict__"):
        return dict(vars(d))
    return dict(d)


def _exit_code(exc):
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1


class Run:
    """A live run, from :func:`init`. ``with tidelog.init(...) as run:`` finishes it on
    leaving the block; an exception inside marks it failed (exit code 1, 130 for Ctrl-C)."""

    def __init__(self, core, project, name):
        self._core = core
        self.log = core.log
        self.project = project
        self.name = name
        self.config = Config(core)
        self.summary = Summary(core)

    @property
    def id(self):
        """The run's id."""
        return self._core.id

    @property
    def dir(self):
        """The run's folder (``.../tidelog/run-<date>_<time>-<id>``)."""
        return str(self._core.dir)

    @property
    def step(self):
        """The step the next committed row gets."""
        return self._core.step

    @property
    def finished(self):
        """Whether the run has finished (or is a forked child's detached copy)."""
        return self._core.finished

    def save(self, path_or_bytes, name=None, base_path=None):
        """Saves a file with the run: bytes (``name=`` required), a path (stored under its
        file name, or ``name=``), or a glob pattern (each match under its path relative to
        ``base_path``, default the pattern's folder). Returns the stored file(s)."""
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            if not name:
                raise ValueError("tidelog: save(bytes) needs name=")
            return self._core.save(name, bytes(path_or_bytes))
        path = os.fspath(path_or_bytes)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return self._core.save(name or os.path.basename(path), f.read())
        matches = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not matches:
            raise FileNotFoundError(f"tidelog: save: no file matches {path!r}")
        base = base_path if base_path is not None else (os.path.dirname(path.split("*")[0]) or ".")
        out = []
        for p in matches:
            with open(p, "rb") as f:
                rel = os.path.relpath(p, base).replace(os.sep, "/")
                out.append(self._core.save(rel, f.read()))
        return out

    def finish(self, exit_code=0):
        """Ends the run (non-zero ``exit_code`` marks it failed) and writes everything;
        outside offline mode it syncs when a server is configured. Returns the run folder."""
        global _current
        if self._core.detached:
            return None  # a forked child's copy: the parent finishes the run
        if _current is self:
            _current = None
        _live.discard(self)
        d = self._core.finish(exit_code)
        return None if d is None else str(d)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.finish(_exit_code(exc))
        return False

    def __repr__(self):
        return f"<tidelog.Run {self.id} project={self.project!r} dir={self.dir!r}>"


def init(project=None, name=None, config=None, tags=None, notes=None, id=None, mode="auto",
         resume=None, dir=None, entity=None, server=None, api_key=None, system_interval=10.0):
    """Starts a run and makes it the current one (what :func:`log` writes to). A run that is
    still open in this process is finished first, as wandb does when a notebook cell that
    calls ``init`` runs again.

    ``mode``: "offline" (never sync from here), "online" (sync at finish, failing loudly) or
    "auto" (sync at finish when a server is configured). ``resume``: "allow" (default),
    "must" or "never" for an ``id`` that exists locally. ``dir``: the folder that holds
    ``tidelog/`` (default ``$TIDELOG_DIR`` or the current directory). ``system_interval``:
    seconds between system-metric samples (0 or None: off).
    """
    global _current
    if _current is not None and not _current.finished:
        _current.finish()
    if not project:
        raise ValueError("tidelog.init: project= is required")
    core = _tidelog.init(
        project, name=name, config=_as_dict(config) or None, tags=list(tags) if tags else None,
        notes=notes, id=id, mode=mode, resume=resume or "allow",
        dir=os.fspath(dir) if dir is not None else None, entity=entity, server=server,
        api_key=api_key, system_interval=system_interval or None,
    )
    run = Run(core, project, name)
    _current = run
    _live.add(run)
    return run


def _run():
    if _current is None:
        raise RuntimeError("tidelog: call tidelog.init() before logging")
    return _current


def log(data, step=None, commit=None):
    """Logs a dict of values at the next step (``step=`` for an explicit one, ``commit=False``
    to join the current row), like ``wandb.log``."""
    run = _current
    if run is None:
        raise RuntimeError("tidelog: call tidelog.init() before logging")
    run.log(data, step, commit)


def save(path_or_bytes, name=None, base_path=None):
    """Saves a file with the current run (see :meth:`Run.save`)."""
    return _run().save(path_or_bytes, name=name, base_path=base_path)


def finish(exit_code=0):
    """Finishes the current run (no-op without one)."""
    if _current is not None:
        return _current.finish(exit_code)
    return None


def sync(dir=None, server=None, api_key=None, timeout=30.0):
    """Uploads every unsynced run under ``dir`` (default ``$TIDELOG_DIR`` or the current
    directory) with the same engine as ``tidelog sync``; server and key from the arguments,
    ``TIDELOG_BASE_URL``/``TIDELOG_API_KEY``, or ``tidelog login``. Returns one dict per run;
    raises ``RuntimeError`` naming the runs left unsynced."""
    return _tidelog.sync(os.fspath(dir) if dir is not None else None, server, api_key, timeout)


def current_run():
    """The current run, or None."""
    return _current


def _after_fork_in_child():
    # The child's copy of a run belongs to the parent: it must not write the parent's log,
    # finish it, or wait on the parent's writer thread (which does not exist in the child).
    for run in list(_live):
        run._core.detach()


def _at_exit():
    run = _current
    if run is None or run.finished:
        return
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    try:
        run.finish(_exit_code(exc))
    except Exception as e:  # the interpreter is exiting: report, never raise
        print(f"tidelog: run {run.id} did not finish cleanly: {e}", file=sys.stderr)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
