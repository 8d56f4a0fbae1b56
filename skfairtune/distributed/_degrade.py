"""A full disk (or memory) degrades a search instead of ending it.

* The image file shared with local worker processes (``n_jobs > 1``) cannot be
  written: the trials run in this process instead, with a warning.
* The frozen-prefix activations do not fit in memory: the fit trains from the
  images, without the cache, with a warning (``FairTuneClassifier``).
* A refit model that cannot be saved: :func:`save_atomically` never leaves a
  truncated file behind and raises with the fix, while the fitted model stays
  in memory (``search.best_estimator_``).

The journal file itself is appended record by record; a record cut by a full
disk is moved aside when the study is next opened (:mod:`skfairtune.distributed._journal`).
"""

from __future__ import annotations

import errno
import os
import pickle
import warnings
from pathlib import Path

from ..exceptions import DegradedWarning
from ._run import resolve_n_jobs, run_trials

# DegradedWarning is defined in skfairtune.exceptions; its name here serves older imports.
__all__ = ["is_disk_full", "run_trials_degrading", "save_atomically", "DegradedWarning"]

_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL


def run_trials_degrading(study, objective, *, n_trials, n_jobs, **kwargs):
    """:func:`skfairtune.distributed._run.run_trials`, in this process when worker files cannot be written."""
    try:
        return run_trials(study, objective, n_trials=n_trials, n_jobs=n_jobs, **kwargs)
    except OSError as exc:
        if not is_disk_full(exc) or resolve_n_jobs(n_jobs) == 1:
            raise
        warnings.warn(
            f"n_jobs={n_jobs}: the files shared with worker processes could not be written ({exc.strerror}: "
            f"{exc.filename or 'temporary folder'}); the remaining trials run in this process. Free disk "
            "space in the temporary folder (or point TMPDIR elsewhere) to use several processes.",
            DegradedWarning, stacklevel=3,
        )
        return run_trials(study, objective, n_trials=n_trials, n_jobs=1, **kwargs)


def _write(handle, data: bytes) -> None:
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def save_atomically(obj, path) -> None:
    """Pickle ``obj`` to ``path`` whole or not at all.

    The bytes go to a temporary file next to ``path``, which replaces it only
    once complete; on failure the temporary file is removed and ``path`` keeps
    what it held before.

    Parameters
    ----------
    obj : object
        What to pickle (e.g. ``search.best_estimator_``).
    path : str or path-like
        Destination file.

    Raises
    ------
    OSError
        The write failed (for example, the disk is full); the message says so
        and that ``obj`` is still in memory.
    """
    path = Path(path)
    data = pickle.dumps(obj)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            _write(handle, data)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        full = " (the disk is full)" if is_disk_full(exc) else ""
        raise OSError(
            exc.errno,
            f"could not save {type(obj).__name__} ({len(data) / 2**20:.1f} MiB) to {str(path)!r}{full}: "
            f"{exc.strerror}. Nothing was written there; the model is still in memory. Free space or "
            "choose another path, then save it again",
            str(path),
        ) from None
