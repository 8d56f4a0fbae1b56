"""Local worker processes for ``n_jobs > 1``: start them, watch them, stop them.

Each worker is a fresh interpreter running :mod:`skfairtune.distributed._child`
(``python -m``, in a session of its own so that Ctrl-C reaches this process
only) which joins the study through its storage and runs the shared trial loop.
This process hands each worker one payload file (the pickled objective, the
storage, the sampler), a memory-mapped copy of large image tensors, its share
of the cores' threads and, with several GPUs, its own device; it then follows
the study's progress (callbacks run here), re-raises the first worker error
with the worker's traceback, and finishes the trials of workers that died.

Why not joblib/loky, which joblib's ``n_jobs`` users know? Measured with
``benchmarks/bench_worker_start.py`` on the 2-core development machine (loaded
by other jobs; median of 3 interleaved starts of workers that import the trial
loop): 0.86 s for 2 workers and 0.95 s for 4 here, against 8.6 s and 12.0 s for
a fresh loky executor (10-13x slower; about 5 s even for a task that imports
nothing). Loky would also change tested behaviour: when one worker is killed
mid-trial (SIGKILL) every pending task of the executor fails with
``TerminatedWorkerError`` (measured), where here the other workers retry its
trial and carry on; workers must get SIGTERM so they fail and re-queue their
running trial, a worker keeps one device for all its trials, and a worker's
exception ends the run with its own traceback. What loky would add is small
here: the images are memory-mapped with one ``numpy.save``, and the CPU count
honours the process's affinity (``os.sched_getaffinity``: Slurm and taskset
allocations) and its cgroup CPU quota (containers), as loky's does.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import shutil
import site
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

try:  # pragma: no branch - scikit-learn's joblib brings it; it pickles functions defined in __main__ too
    import cloudpickle
except ImportError:  # pragma: no cover
    cloudpickle = None

from .._utils._cpus import available_cpus as _affinity_and_quota
from ._loop import run_trial_loop
from ._optuna_compat import storage_of
from ._study import copy_study

__all__ = [
    "SearchObjective",
    "assign_device",
    "available_cpus",
    "estimator_device",
    "one_worker_per_gpu",
    "pin_visible_gpu",
    "resolve_n_jobs",
    "run_worker_processes",
    "worker_devices",
]

_STOP_GRACE_S = 10.0


class SearchObjective(Protocol):
    """What the trial loop and the worker processes need of an objective.

    The loop only calls it: ``objective(trial) -> float`` (None or a
    non-finite value fails the trial; ``optuna.TrialPruned`` prunes it). With
    ``n_jobs > 1`` it must pickle with cloudpickle, and the worker pool also
    reads three attributes when the objective has them (as
    ``skfairtune.search._objective.Objective`` does); an objective without them is
    shipped as it is:

    ``X`` : torch.Tensor, dataclass with a ``pixels`` tensor, or other
        The images. A tensor (anything with ``.numpy()`` and ``.detach()``),
        or the ``pixels`` of a dataclass such as the search's model-ready
        images, is written once to a ``.npy`` file that every worker
        memory-maps, instead of one pickled copy each: the pickled objective
        is a ``copy.copy`` with ``X`` None (or the dataclass with
        ``pixels=None``), and each worker puts a read-only tensor over the map
        back. Other values are pickled as they are.
    ``estimator`` : scikit-learn estimator or None
        The template whose ``device`` parameter (``f"{step}__device"`` in a
        pipeline) decides the devices: ``"auto"`` or None with several GPUs
        gives each worker its own, set with ``set_params``.
    ``step`` : str or None
        The name of the FairTune step when ``estimator`` is a pipeline.
    """

    def __call__(self, trial: optuna.trial.Trial) -> float | None: ...


# --------------------------------------------------------------------------- n_jobs and devices
def available_cpus() -> int:
    """Cores this process may run on: its CPU affinity (e.g. a Slurm allocation) capped by its cgroup CPU quota.

    Examples
    --------
    >>> available_cpus() >= 1
    True
    """
    return _affinity_and_quota()


def resolve_n_jobs(n_jobs) -> int:
    """Number of worker processes for ``n_jobs``, with joblib's conventions.

    Parameters
    ----------
    n_jobs : int or None
        ``None`` or ``1``: run in this process; ``k > 1``: ``k`` processes;
        ``-1``: one per core; ``-k``: all cores but ``k - 1``.

    Returns
    -------
    n_workers : int
        At least 1.

    Examples
    --------
    >>> resolve_n_jobs(None), resolve_n_jobs(3)
    (1, 3)
    >>> resolve_n_jobs(-1) == available_cpus()
    True
    """
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ValueError(
            f"`n_jobs` must be a positive int, -1 (one worker per core) or None; got {n_jobs!r}."
        )
    if n_jobs < 0:
        return max(1, available_cpus() + 1 + int(n_jobs))
    return int(n_jobs)


def worker_devices(n_workers: int, device) -> list:
    """Device of each local worker: one GPU each when several exist and ``device="auto"``.

    Parameters
    ----------
    n_workers : int
        Local worker processes.
    device : str or None
        The estimator's ``device``; only ``"auto"`` (or None) is spread.

    Returns
    -------
    devices : list of str or None
        ``"cuda:i"`` per worker, round robin over the GPUs, or None
        (keep the estimator's own setting) for every worker.

    Examples
    --------
    >>> worker_devices(2, "cpu")
    [None, None]
    """
    if device not in ("auto", None):  # an explicit device, or no estimator at all ("n/a")
        return [None] * n_workers
    try:
        # torch is heavy: only a search with an estimator "auto" device pays for loading it here.
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return [None] * n_workers
    if not torch.cuda.is_available():
        return [None] * n_workers
    n_gpus = torch.cuda.device_count()
    if n_gpus < 2:
        return [None] * n_workers
    return [f"cuda:{i % n_gpus}" for i in range(n_workers)]


def one_worker_per_gpu(n_workers: int, device) -> int:
    """At most one local worker per GPU when the estimator's device is ``"auto"``, with a warning.

    Workers that share a GPU compete for its memory (each holds its model,
    optimizer state and CUDA context) and run out of it, or all train on
    ``cuda:0`` while other GPUs idle. An explicit ``device`` is the user's
    choice and is kept, as are CPU-only machines.

    Parameters
    ----------
    n_workers : int
        Workers asked for.
    device : str or None
        The estimator's ``device`` (:func:`estimator_device`).

    Returns
    -------
    n_workers : int

    Examples
    --------
    >>> one_worker_per_gpu(4, "cpu")
    4
    """
    if n_workers <= 1 or device not in ("auto", None):
        return n_workers
    try:
        # torch is heavy: only a search with an estimator "auto" device pays for loading it here.
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return n_workers
    if not torch.cuda.is_available() or torch.cuda.device_count() >= n_workers:
        return n_workers
    n_gpus = torch.cuda.device_count()
    warnings.warn(
        f"n_jobs={n_workers} workers with device='auto' on {n_gpus} GPU(s): {n_gpus} worker(s) run, one per "
        "GPU, since workers sharing a GPU compete for its memory. To put several workers on one GPU anyway, "
        "set the estimator's device explicitly (e.g. device='cuda:0').", UserWarning, stacklevel=4)
    return n_gpus


def estimator_device(objective):
    """The template's ``device`` (see :class:`SearchObjective`), or "n/a" for objectives without an estimator."""
    estimator = getattr(objective, "estimator", None)
    if estimator is None or not hasattr(estimator, "get_params"):
        return "n/a"
    step = getattr(objective, "step", None)
    return estimator.get_params().get(f"{step}__device" if step else "device")


def pin_visible_gpu(env: dict, device: str | None) -> tuple[dict, str | None]:
    """A local worker's environment and device when it trains on one GPU of several.

    ``CUDA_VISIBLE_DEVICES`` shows the worker its GPU only, so its CUDA context,
    its allocator and any library that enumerates devices stay off the others;
    inside, that GPU is ``cuda:0``. A parent that was itself limited to some
    GPUs (``CUDA_VISIBLE_DEVICES="2,3"``) passes the physical id on.

    Parameters
    ----------
    env : dict
        The workers' common environment (not changed).
    device : str or None
        The worker's device from :func:`worker_devices`.

    Returns
    -------
    env : dict
    device : str or None

    Examples
    --------
    >>> pin_visible_gpu({"CUDA_VISIBLE_DEVICES": "2,3"}, "cuda:1")
    ({'CUDA_VISIBLE_DEVICES': '3'}, 'cuda:0')
    >>> pin_visible_gpu({}, None)
    ({}, None)
    """
    if not device or not device.startswith("cuda:"):
        return env, device
    index = int(device.partition(":")[2])
    visible = [part.strip() for part in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]
    physical = visible[index] if index < len(visible) else str(index)
    return {**env, "CUDA_VISIBLE_DEVICES": physical}, "cuda:0"


def assign_device(objective, device):
    """The objective with its estimator template sent to ``device`` (None: unchanged)."""
    if device is None or getattr(objective, "estimator", None) is None:
        return objective
    step = getattr(objective, "step", None)
    objective.estimator.set_params(**{f"{step}__device" if step else "device": device})
    return objective


# --------------------------------------------------------------------------- the pool
def _dumps(obj) -> bytes:
    return (pickle if cloudpickle is None else cloudpickle).dumps(obj)


def _child_environment(threads: int) -> dict:
    """The workers' environment: the cores' share of threads, and this copy of the package importable."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    root = str(Path(__file__).resolve().parent.parent)
    installed = set(getattr(site, "getsitepackages", list)()) | {getattr(site, "getusersitepackages", str)()}
    if root not in installed:
        # A source checkout (or a path added at run time): put it first, as here.
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_worker_processes(study: optuna.Study, objective: SearchObjective, *, n_workers: int, n_trials: int,
                         timeout, feed, seed) -> tuple[optuna.Study, bool]:
    """Run the study's remaining trials in ``n_workers`` local processes.

    Parameters
    ----------
    study : optuna.Study
        The study; an in-memory one is shared with the workers through a
        temporary journal file and copied back into memory at the end.
    objective : SearchObjective
        What each trial runs.
    n_workers : int
        Worker processes to start.
    n_trials, timeout, seed
        As :func:`skfairtune.distributed._run.run_trials`.
    feed : skfairtune.distributed._follow.TrialFeed
        Polled while the workers run: the callbacks run in this process.

    Returns
    -------
    study : optuna.Study
        The study holding the trials.
    interrupted : bool
        True when Ctrl-C stopped the run.
    """
    workdir = Path(tempfile.mkdtemp(prefix="skfairtune-workers-"))
    processes: list[subprocess.Popen] = []
    interrupted = False
    shared = study
    try:
        storage = storage_of(study)
        temporary = isinstance(storage, optuna.storages.InMemoryStorage)
        if temporary:
            # Worker processes cannot see this process's memory: share a journal file instead.
            storage = JournalStorage(JournalFileBackend(str(workdir / "study.log")))
            shared = copy_study(study, storage, sampler=study.sampler, pruner=study.pruner)
        storage = storage_of(storage, unwrap=True)

        # Big image tensors go to a file the workers memory-map, instead of one pickled copy each.
        x_path = None
        shipped = objective
        x = getattr(objective, "X", None)
        pixels = getattr(x, "pixels", x)  # model-ready images carry their tensor as `pixels`
        if pixels is not None and hasattr(pixels, "numpy"):
            x_path = workdir / "X.npy"
            np.save(x_path, pixels.detach().cpu().numpy())
            shipped = copy.copy(objective)
            # The shell keeps what the tensor does not say (geometry...); each worker fills it in.
            shipped.X = None if pixels is x else dataclasses.replace(x, pixels=None)
        threads = max(1, available_cpus() // n_workers)
        devices = worker_devices(n_workers, estimator_device(objective))
        body = _dumps({
            "study_name": shared.study_name, "storage": storage, "sampler": study.sampler,
            "pruner": study.pruner, "objective": shipped, "x_path": None if x_path is None else str(x_path),
            "n_trials": n_trials, "timeout": timeout, "callbacks": [], "seed": seed,
            "threads": threads, "verbosity": optuna.logging.get_verbosity(),
        })
        payload = workdir / "payload.pkl"
        with open(payload, "wb") as handle:
            pickle.dump({"sys_path": [p for p in sys.path if p], "body": body}, handle)
        env = _child_environment(threads)
        for index in range(n_workers):
            worker_env, device = pin_visible_gpu(env, devices[index])
            command = [sys.executable, "-m", "skfairtune.distributed._child", str(payload), str(index),
                       device or "", str(os.getpid())]
            # A session of their own: Ctrl-C reaches the parent only, which then stops them.
            processes.append(subprocess.Popen(command, env=worker_env, start_new_session=True))
        try:
            died = _watch(processes, workdir, poll=lambda: feed.poll(shared))
        except KeyboardInterrupt:
            interrupted = True
            died = []
            _stop(processes)
        if died:
            warnings.warn(
                f"{len(died)} worker process(es) died ({'; '.join(died)}); their trials are retried "
                "and this process finishes whatever the others left.", RuntimeWarning, stacklevel=3,
            )
            if not interrupted:
                try:
                    run_trial_loop(shared, objective, n_trials=n_trials, timeout=timeout, callbacks=[feed],
                                   seed=seed)
                except KeyboardInterrupt:
                    interrupted = True
        feed.poll(shared, force=True)
        if temporary:
            shared = copy_study(shared, None, sampler=study.sampler, pruner=study.pruner)
        else:
            shared = study
        return shared, interrupted
    finally:
        _stop(processes)
        shutil.rmtree(workdir, ignore_errors=True)


def _watch(processes, workdir: Path, poll=lambda: None) -> list[str]:
    """Wait for every worker (calling ``poll`` meanwhile); raise the first worker error, return the killed."""
    died: list[str] = []
    pending = dict(enumerate(processes))
    while pending:
        for index, process in list(pending.items()):
            code = process.poll()
            if code is None:
                continue
            del pending[index]
            error_file = workdir / f"error-{index}.pkl"
            if error_file.exists():
                _stop(processes)
                _raise_worker_error(error_file, index, process.pid)
            if code != 0:
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                died.append(f"worker {index} (pid {process.pid}): {how}")
        poll()
        time.sleep(0.1)
    return died


def _raise_worker_error(error_file: Path, index: int, pid: int):
    """Raise what :func:`skfairtune.distributed._child.write_error_report` wrote."""
    with open(error_file, "rb") as handle:
        reraise_worker_error(pickle.load(handle), f"worker process {index} (pid {pid})")


def reraise_worker_error(report: dict, where: str):
    """Raise a worker's reported error in this process, with the worker's traceback as a note.

    The original exception when this process can rebuild it (so ``except
    ValueError`` still works), else a ``RuntimeError`` carrying its summary.
    ``report`` holds ``traceback``, ``summary`` and the pickled ``exception``
    (or None); ``where`` names the worker in the messages.
    """
    note = f"raised in {where}:\n{report['traceback']}"
    exc = None
    if report.get("exception") is not None:
        try:
            exc = pickle.loads(report["exception"])
        except Exception:  # noqa: BLE001 - an exception type this process cannot rebuild
            exc = None
    if isinstance(exc, BaseException):
        exc.add_note(note)
        raise exc
    raise RuntimeError(f"{where} failed: {report['summary']}\n\n{note}")


def _stop(processes) -> None:
    """Ask running workers to stop (SIGTERM: they fail and re-enqueue their trial), then kill."""
    alive = [p for p in processes if p.poll() is None]
    for process in alive:
        try:
            process.terminate()
        except OSError:
            pass
    deadline = time.monotonic() + _STOP_GRACE_S
    for process in alive:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
