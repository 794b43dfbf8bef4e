"""wandb's names over tidelog: ``from tidelog import wandb`` (or ``import tidelog.wandb as
wandb``) runs a script written for ``wandb`` offline mode unchanged but for its import line.
What is covered and what is not: docs/PYTHON.md.
"""

import os
import warnings

import tidelog as _tl
from tidelog.media import Audio, Histogram, Image, Table

__all__ = [
    "init", "log", "finish", "save", "config", "summary", "run",
    "Image", "Audio", "Histogram", "Table", "plot",
]

run = None
config = None
summary = None

_MODES = {None: "auto", "online": "online", "offline": "offline", "dryrun": "offline"}
_RESUME = {None: "allow", False: "allow", True: "allow", "auto": "allow", "allow": "allow",
           "must": "must", "never": "never"}


def init(project=None, entity=None, config=None, name=None, notes=None, tags=None, id=None,
         mode=None, resume=None, dir=None, reinit=None, group=None, job_type=None, **unused):
    """``wandb.init``: starts a tidelog run (project default "uncategorized", as wandb's)."""
    global run, summary
    mode = mode if mode is not None else os.environ.get("WANDB_MODE")
    if mode not in _MODES:
        raise ValueError(f"tidelog.wandb.init: mode={mode!r} is not supported "
                         "(use \"online\", \"offline\" or leave it unset)")
    if resume not in _RESUME:
        raise ValueError(f"tidelog.wandb.init: resume={resume!r} is not supported")
    ignored = [k for k, v in {"group": group, "job_type": job_type, **unused}.items() if v is not None]
    if ignored:
        warnings.warn(f"tidelog.wandb.init: ignoring {', '.join(ignored)} (not covered)", stacklevel=2)
    run = _tl.init(
        project=project or os.environ.get("WANDB_PROJECT") or "uncategorized",
        name=name, config=config, tags=tags, notes=notes, id=id or os.environ.get("WANDB_RUN_ID"),
        mode=_MODES[mode], resume=_RESUME[resume], dir=dir, entity=entity,
    )
    globals()["config"] = run.config
    summary = run.summary
    return run


def log(data, step=None, commit=None, sync=None):
    """``wandb.log``: a row of values at the next step (or ``step=``; ``commit=False`` joins
    the current row)."""
    _tl.log(data, step, commit)


def save(glob_str, base_path=None, policy="live"):
    """``wandb.save``: the matching files are stored with the run (``policy`` is accepted;
    files are copied at the call)."""
    return _tl.save(glob_str, base_path=base_path)


def finish(exit_code=None, quiet=None):
    """``wandb.finish``: ends the run (a non-zero ``exit_code`` marks it failed)."""
    global run
    _tl.finish(exit_code or 0)
    run = None


class _PlotNamespace:
    """``wandb.plot.line/scatter/bar(table, x, y, title=)``."""

    @staticmethod
    def line(table, x, y, stroke=None, title=None, **_):
        return _tl.Plot.line(table, x, y, title=title or None)

    @staticmethod
    def scatter(table, x, y, title=None, **_):
        return _tl.Plot.scatter(table, x, y, title=title or None)

    @staticmethod
    def bar(table, label, value, title=None, **_):
        return _tl.Plot.bar(table, label, value, title=title or None)


plot = _PlotNamespace()
