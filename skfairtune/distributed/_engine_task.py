"""One trial worker as a joblib task (loky, Dask, Ray ...): join the study, run the trial loop, report.

Started by :mod:`skfairtune.distributed._engines`, one task per worker. The
task opens the study itself (a cluster worker from a URL whose ``${VAR}``
password it expands from its own environment, so no password travels), puts
the images back into the objective once, takes its device, and runs the shared
trial loop (:func:`skfairtune.distributed._loop.run_trial_loop`) until the
study holds ``n_trials`` trials or the parent asks it to stop. It never
raises: its error comes back in the report, which the parent re-raises with
this worker's traceback (an exception escaping a task would make joblib
cancel every other task, and their trials with them).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import pickle
import socket
import sys
import traceback
import warnings

import numpy as np
import optuna

from ._loop import run_trial_loop
from ._pool import assign_device, estimator_device
from ._study import make_storage

__all__ = ["STOP_ATTR", "engine_device", "release_accelerator_memory", "run_engine_task", "task_error"]

#: Study user attribute the parent sets to the id of a run whose tasks must stop after their trial.
STOP_ATTR = "skfairtune:stop_run"


def task_error(exc: BaseException) -> dict:
    """The exception as a report the parent re-raises: pickled if possible, with its traceback."""
    try:
        pickled = pickle.dumps(exc)
    except Exception:  # noqa: BLE001 - an exception that does not pickle goes back as text
        pickled = None
    return {"traceback": "".join(traceback.format_exception(exc)), "exception": pickled,
            "summary": f"{type(exc).__name__}: {exc}"}


def release_accelerator_memory(study=None, trial=None) -> None:
    """After a trial: free the cached GPU memory its model left, so the next trial (or worker) gets it.

    A study callback (``callback(study, trial)``). Does nothing where torch was
    never imported or CUDA never initialised.

    Examples
    --------
    >>> release_accelerator_memory()
    """
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def engine_device(objective, index: int) -> str | None:
    """The device of cluster worker ``index`` when its engine gave it none.

    An engine that places workers on GPUs says so with ``CUDA_VISIBLE_DEVICES``
    (Ray's ``num_gpus``, a Dask worker started per GPU, SLURM's ``--gres``):
    then ``device="auto"`` is that GPU and nothing changes. A worker that
    sees several GPUs without it would otherwise train on ``cuda:0`` like every
    other worker of its host: it takes ``cuda:{index % n_gpus}`` instead.

    Returns
    -------
    device : str or None
        None keeps the estimator's setting.
    """
    if estimator_device(objective) not in ("auto", None) or "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return None
    return f"cuda:{index % torch.cuda.device_count()}"


class _StopWhenAsked:
    """A study callback ending the loop after the current trial once the parent marked this run stopped."""

    def __init__(self, run_id: str):
        self.run_id = run_id

    def __call__(self, study, trial) -> None:
        if study.user_attrs.get(STOP_ATTR) == self.run_id:
            study.stop()


def _load(payload) -> dict:
    if isinstance(payload, str):  # a file on this machine (local engines)
        with open(payload, "rb") as handle:
            payload = pickle.load(handle)
    # The parent's import path, so objectives defined in its modules unpickle here.
    sys.path[:0] = [p for p in payload["sys_path"] if p not in sys.path and os.path.isdir(p)]
    return pickle.loads(payload["body"])


def _restore_images(objective, x):
    if x is None:
        return objective
    # torch is heavy: only an objective that ships images loads it here (its trials need it anyway).
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only memory map or buffer; trials copy slices
        array = np.load(x, mmap_mode="r") if isinstance(x, str) else x
        pixels = torch.from_numpy(array)
    objective.X = pixels if objective.X is None else dataclasses.replace(objective.X, pixels=pixels)
    return objective


def _open_storage(spec):
    if isinstance(spec, dict):  # a cluster worker: the URL's ${VAR} is expanded from this host's environment
        kwargs = {k: spec[k] for k in ("heartbeat_interval", "grace_period") if spec.get(k) is not None}
        return make_storage(spec["url"], **kwargs)
    return spec


def _run(payload, index: int, x, device) -> None:
    settings = _load(payload)
    optuna.logging.set_verbosity(settings["verbosity"])
    objective = _restore_images(settings["objective"], x)
    if settings["threads"] and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(settings["threads"])
    objective = assign_device(objective, device if device is not None else engine_device(objective, index))
    study = optuna.load_study(study_name=settings["study_name"], storage=_open_storage(settings["storage"]),
                              sampler=settings["sampler"], pruner=settings["pruner"])
    if settings["seed"] is None and hasattr(study.sampler, "reseed_rng"):
        study.sampler.reseed_rng()  # unseeded: independent draws per worker
    run_trial_loop(study, objective, n_trials=settings["n_trials"], timeout=settings["timeout"],
                   callbacks=[release_accelerator_memory, _StopWhenAsked(settings["run_id"])],
                   seed=settings["seed"])


def run_engine_task(payload, index: int, x=None, device: str | None = None) -> dict:
    """Run one worker's trial loop; never raises.

    Parameters
    ----------
    payload : dict or str
        ``{"sys_path", "body"}`` (the body pickled by the parent), or the path
        of a file holding it (workers on the parent's machine).
    index : int
        The worker's number (device choice, reports).
    x : numpy.ndarray, str or None
        The images: an array, or the path of a ``.npy`` file to memory-map.
    device : str or None
        The device the parent chose (local engines), or None.

    Returns
    -------
    report : dict
        ``{"index", "host", "pid", "error"}``; ``error`` is None or
        :func:`task_error`'s report.
    """
    report = {"index": index, "host": socket.gethostname(), "pid": os.getpid(), "error": None}
    try:
        _run(payload, index, x, device)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        report["error"] = task_error(exc)
    return report
