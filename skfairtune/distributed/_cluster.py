"""Pieces of a multi-machine search: Optuna objects from a spec, one refit per study, shared files.

Used by ``skfairtune worker`` and ``skfairtune refit`` (:mod:`skfairtune.worker`).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import optuna

from ._optuna_compat import storage_of

__all__ = ["optuna_object", "claim_refit", "release_refit", "refit_claim", "network_filesystem", "REFIT_SUFFIX"]

#: The refit claim of study ``s`` is an empty study named ``s + REFIT_SUFFIX`` in the same storage.
REFIT_SUFFIX = ":skfairtune-refit"

# File systems where several hosts may append to one file. Optuna's journal file relies on
# file locks and atomic appends that these do not all provide, and a dead worker on another
# host cannot be detected (no heartbeats, no process to look up).
_NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs",
               "fuse.sshfs", "fuse.glusterfs", "fuse.ceph", "9p", "afs", "panfs", "wekafs", "orangefs")


def optuna_object(value, module, base: type, what: str):
    """An Optuna sampler or pruner from its spec: ``"ClassName"`` or ``{"name": ..., "kwargs": {...}}``.

    Parameters
    ----------
    value : str or dict
        The class name in ``module``, alone or with keyword arguments.
    module : module
        ``optuna.samplers`` or ``optuna.pruners``.
    base : type
        The class it must derive from.
    what : str
        The spec key, for error messages (e.g. ``"search.sampler"``).

    Returns
    -------
    object
        An instance of the class.

    Examples
    --------
    >>> import optuna
    >>> sampler = optuna_object({"name": "RandomSampler", "kwargs": {"seed": 3}}, optuna.samplers,
    ...                         optuna.samplers.BaseSampler, "search.sampler")
    >>> type(sampler).__name__
    'RandomSampler'
    """
    if isinstance(value, str):
        name, kwargs = value, {}
    elif isinstance(value, dict) and set(value) <= {"name", "kwargs"} and "name" in value:
        name, kwargs = value["name"], value.get("kwargs") or {}
    else:
        raise ValueError(f"{what} must be an Optuna class name or {{\"name\": ..., \"kwargs\": {{...}}}}; "
                         f"got {value!r}.")
    choices = sorted(n for n in dir(module) if isinstance(getattr(module, n), type)
                     and issubclass(getattr(module, n), base) and getattr(module, n) is not base)
    if name not in choices:
        raise ValueError(f"{what}: {name!r} is not an Optuna class in {module.__name__}; choose among {choices}.")
    if not isinstance(kwargs, dict):
        raise ValueError(f"{what}.kwargs must be a mapping of keyword arguments; got {kwargs!r}.")
    try:
        return getattr(module, name)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {name}(**{kwargs!r}) failed: {exc}") from None


def claim_refit(study: optuna.Study) -> bool:
    """Claim the one refit of ``study``; True for exactly one caller, across processes and hosts.

    The claim is the creation of a marker study named ``study_name + REFIT_SUFFIX``
    in the same storage: a unique row (RDB storages) or one entry of the
    journal, so when several workers finish together exactly one creation
    succeeds and the others get ``DuplicatedStudyError``. The marker's user
    attributes record who claimed it and when.

    Parameters
    ----------
    study : optuna.Study
        A stored study.

    Returns
    -------
    won : bool
    """
    name = study.study_name + REFIT_SUFFIX
    try:
        marker = optuna.create_study(study_name=name, storage=storage_of(study), direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        return False
    marker.set_user_attr("claimed_by", {"host": socket.gethostname(), "pid": os.getpid(),
                                        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return True


def release_refit(study: optuna.Study) -> None:
    """Give the refit claim back after a refit that could not be saved, so a rerun can do it."""
    try:
        optuna.delete_study(study_name=study.study_name + REFIT_SUFFIX, storage=storage_of(study))
    except KeyError:
        pass


def refit_claim(study: optuna.Study) -> dict | None:
    """Who claimed the refit of ``study`` (``{"host", "pid", "time"}``), or None."""
    name = study.study_name + REFIT_SUFFIX
    storage = storage_of(study)
    if name not in optuna.get_all_study_names(storage):
        return None
    return optuna.load_study(study_name=name, storage=storage).user_attrs.get("claimed_by", {})


def network_filesystem(path) -> str | None:
    """Type of the network file system holding ``path`` (from ``/proc/mounts``), or None.

    Examples
    --------
    >>> network_filesystem("/proc") is None
    True
    """
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:  # not Linux: nothing to tell
        return None
    target = os.path.realpath(os.path.dirname(os.path.abspath(str(path))) or ".")
    best, fstype = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, fstype = point, fields[2]
    return fstype if fstype in _NETWORK_FS or (fstype or "").split(".")[0] in ("nfs", "nfs4") else None
