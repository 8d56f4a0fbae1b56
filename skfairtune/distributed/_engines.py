"""Trial workers on the user's joblib engine: ``joblib.parallel_config(backend=...)`` decides where they run.

A scikit-learn user scales ``GridSearchCV(n_jobs=...)`` out with
``with joblib.parallel_config(backend="dask"):`` (or Ray's ``register_ray()``);
the same line moves the trial workers of ``FairTuneSearchCV(n_jobs=...)``:

* no backend configured: the local worker pool (:mod:`skfairtune.distributed._pool`),
  which starts 10x faster than a fresh loky executor and keeps a killed
  worker's trial alive for the others (measured there);
* any configured backend (``loky``, ``threading``, ``dask``, ``ray`` ...):
  ``n_workers`` tasks of one ``joblib.Parallel`` call, each running the trial
  loop (:func:`skfairtune.distributed._engine_task.run_engine_task`) against
  the study's storage until the study holds ``n_trials`` trials. This process
  follows the study meanwhile (progress, callbacks) and refits once, after.

One task per worker, each running many trials, is what keeps the data off the
wire: the images travel once per worker (a memory-mapped file on one machine,
one argument that Dask scatters once, one pickled argument per Ray actor), not
once per trial.

Storage rules for engines whose workers may sit on other machines (Dask, Ray,
any backend not known to be local): the study must live in a database every
worker reaches, named by a URL whose password (if any) is a ``${VAR}``
reference expanded on the worker; ``storage=None``, a journal or SQLite file
and a URL with a literal password are refused before any work
(:func:`check_engine_storage`).

Faults: a task never raises (it reports its error); an error of the engine
itself (a worker process killed: Dask's ``KilledWorker``, Ray's actor death)
ends a *round*: this process warns and starts the workers again, whose loops
retry the dead worker's trial once its heartbeat is stale, so the study still
ends with exactly ``n_trials`` counted trials. An engine that fails twice with
no trial finished in between (its scheduler went away) fails the fit with
:class:`EngineUnavailableError`; the study keeps every finished trial and the
same fit resumes it.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import shutil
import sys
import tempfile
import threading
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import optuna
from joblib import Parallel, delayed
from joblib.parallel import get_active_backend
from optuna.storages.journal import JournalFileBackend, JournalStorage

from ._budget import counted_trials, work_left
from ._credentials import has_literal_password, redact_url
from ._engine_task import STOP_ATTR, run_engine_task
from ._optuna_compat import storage_of
from ._pool import (_dumps, available_cpus, estimator_device, reraise_worker_error, resolve_n_jobs,
                    worker_devices)
from ._study import copy_study

__all__ = ["Engine", "EngineUnavailableError", "active_engine", "check_engine_storage", "engine_n_workers",
           "run_engine_trials", "LOCAL_ENGINES"]

#: joblib backends whose workers share this machine (a journal file and temp files work).
LOCAL_ENGINES = frozenset({"loky", "threading", "multiprocessing", "sequential"})
_NAMES = {"LokyBackend": "loky", "ThreadingBackend": "threading", "MultiprocessingBackend": "multiprocessing",
          "SequentialBackend": "sequential", "DaskDistributedBackend": "dask", "RayBackend": "ray"}
#: Engine failures in a row, with no trial finished in between, before the fit fails.
MAX_IDLE_ROUNDS = 2
_DB_EXAMPLE = "storage='postgresql+psycopg://user:${PGPASSWORD}@db-host:5432/fairtune'"


class EngineUnavailableError(RuntimeError):
    """The engine (its scheduler, its cluster) went away while the search ran; the study resumes later."""


@dataclasses.dataclass(frozen=True)
class Engine:
    """Where concurrent trial workers run.

    Attributes
    ----------
    name : str
        ``"pool"`` (no joblib backend configured), or the configured
        backend: ``"loky"``, ``"threading"``, ``"dask"``, ``"ray"``, or
        its class name for other backends.
    backend : joblib backend or None
        The configured backend instance (None for the pool).
    n_jobs : int or None
        The ``n_jobs`` of ``joblib.parallel_config``, if set.
    """

    name: str
    backend: object = None
    n_jobs: int | None = None

    @property
    def local(self) -> bool:
        """Whether every worker runs on this machine."""
        return self.name == "pool" or self.name in LOCAL_ENGINES


def active_engine() -> Engine:
    """The engine that ``joblib.parallel_config`` selects here and now.

    joblib's public ``get_active_backend`` returns the configured backend
    instance, or a fresh default one on each call when nothing is
    configured: the identity of two calls tells them apart, so an explicit
    ``backend="loky"`` is honoured while no configuration keeps the pool.

    Examples
    --------
    >>> import joblib
    >>> active_engine().name
    'pool'
    >>> with joblib.parallel_config(backend="loky", n_jobs=3):
    ...     engine = active_engine()
    >>> engine.name, engine.n_jobs, engine.local
    ('loky', 3, True)
    """
    backend, n_jobs = get_active_backend()
    if backend is not get_active_backend()[0]:
        return Engine("pool", None, n_jobs)
    name = type(backend).__name__
    return Engine(_NAMES.get(name, name), backend, n_jobs)


def engine_n_workers(n_jobs, engine: Engine) -> int:
    """Workers for ``n_jobs`` on ``engine``, with scikit-learn's conventions.

    ``None`` means the ``n_jobs`` of ``joblib.parallel_config`` when a
    backend is configured (1 otherwise); ``-1`` on a cluster engine means
    every core of its workers.

    Examples
    --------
    >>> engine_n_workers(None, Engine("pool")), engine_n_workers(3, Engine("pool"))
    (1, 3)
    >>> import joblib
    >>> with joblib.parallel_config(backend="loky", n_jobs=2):
    ...     engine_n_workers(None, active_engine())
    2
    """
    if n_jobs is None and engine.backend is not None:
        n_jobs = engine.n_jobs
    if (not engine.local and isinstance(n_jobs, int) and not isinstance(n_jobs, bool) and n_jobs < 0
            and hasattr(engine.backend, "effective_n_jobs")):
        try:
            return max(1, int(engine.backend.effective_n_jobs(n_jobs)))
        except Exception:  # noqa: BLE001 - an engine not started yet: count this machine's cores
            pass
    return resolve_n_jobs(n_jobs)


def _refuse(storage, engine: Engine, why: str) -> ValueError:
    return ValueError(
        f"`storage={'None' if storage is None else repr(redact_url(storage))}` cannot be shared with {engine.name} workers: {why}. Pass a "
        f"database URL that every worker reaches, with the password as an environment variable that the "
        f"workers expand, e.g. {_DB_EXAMPLE} (export PGPASSWORD where the workers run), or run without "
        f"the {engine.name} backend."
    )


def worker_storage(storage, engine: Engine) -> dict:
    """What a cluster worker is sent to open the study: a URL without a literal password, heartbeat settings.

    Parameters
    ----------
    storage : None, str, path-like or optuna storage
        The search's ``storage`` (or the study's storage object).
    engine : Engine
        A cluster engine (not local).

    Returns
    -------
    spec : dict
        ``{"url", "heartbeat_interval", "grace_period"}``; the settings are
        None for a URL string (the search's defaults apply on the worker).

    Raises
    ------
    ValueError
        For storages the workers cannot share, naming the fix.
    """
    settings = {"heartbeat_interval": None, "grace_period": None}
    if isinstance(storage, optuna.storages.BaseStorage):
        backend = storage_of(storage, unwrap=True)
        if not isinstance(backend, optuna.storages.RDBStorage):
            raise _refuse(type(backend).__name__, engine, "it is not a database every worker can reach")
        url = str(backend.url)
        settings = {"heartbeat_interval": getattr(backend, "heartbeat_interval", None),
                    "grace_period": getattr(backend, "grace_period", None)}
    elif storage is None:
        raise _refuse(None, engine, "the study would live in this process's memory, out of the workers' reach")
    else:
        url = str(storage)
    if "://" not in url:
        raise _refuse(url, engine, "a journal or SQLite file lives on one machine, and a journal file has no "
                                   "heartbeats to tell a dead worker on another host")
    if url.startswith("sqlite"):
        raise _refuse(url, engine, "SQLite is a file on one machine")
    if has_literal_password(url):
        raise _refuse(url, engine, "its password would travel in every task sent to the workers")
    return {"url": url, **settings}


def check_engine_storage(storage, n_jobs, *, study=None) -> Engine:
    """Refuse, before any work, a storage that the active engine's workers cannot share.

    Parameters
    ----------
    storage : None, str, path-like or optuna storage
        The search's ``storage``.
    n_jobs : int or None
        The search's ``n_jobs``.
    study : optuna.Study, default=None
        The search's ``study``; its storage is checked when given.

    Returns
    -------
    engine : Engine
        The active engine.

    Examples
    --------
    >>> check_engine_storage(None, 2).name
    'pool'
    """
    engine = active_engine()
    if engine.local or engine_n_workers(n_jobs, engine) <= 1:
        return engine
    worker_storage(storage_of(study) if study is not None else storage, engine)
    return engine


# --------------------------------------------------------------------------- the parent
class _Shipment(NamedTuple):
    """What every task gets: the payload (bytes, or a file on this machine) and the images."""

    payload: object
    x: object
    devices: list


def _split_images(objective, workdir: Path, local: bool):
    """The objective without its image tensor, and the images as the tasks get them."""
    x = getattr(objective, "X", None)
    pixels = getattr(x, "pixels", x)
    if pixels is None or not hasattr(pixels, "numpy"):
        return objective, None
    array = pixels.detach().cpu().numpy()
    shell = copy.copy(objective)
    shell.X = None if pixels is x else dataclasses.replace(x, pixels=None)
    if not local:
        return shell, array  # one argument: Dask scatters it once, Ray pickles it once per actor
    path = workdir / "X.npy"
    np.save(path, array)  # every local worker memory-maps the one file
    return shell, str(path)


def _ship(study, objective, storage, *, engine, n_workers, workdir, settings) -> _Shipment:
    if engine.local:
        shipped_storage = storage_of(storage_of(study), unwrap=True)
        devices = worker_devices(n_workers, estimator_device(objective))
    else:
        shipped_storage = worker_storage(storage if storage is not None else storage_of(study), engine)
        # A URL string gets the heartbeat settings this process opened the study with.
        opened = storage_of(storage_of(study), unwrap=True)
        for key in ("heartbeat_interval", "grace_period"):
            if shipped_storage[key] is None:
                shipped_storage[key] = getattr(opened, key, None)
        devices = [None] * n_workers  # the engine gives each worker its GPU (CUDA_VISIBLE_DEVICES, num_gpus)
    shell, x = _split_images(objective, workdir, engine.local)
    body = {"study_name": study.study_name, "storage": shipped_storage, "sampler": study.sampler,
            "pruner": study.pruner, "objective": shell, "verbosity": optuna.logging.get_verbosity(),
            "threads": max(1, available_cpus() // n_workers) if engine.local else None, **settings}
    payload = {"sys_path": [p for p in sys.path if p], "body": _dumps(body)}
    if engine.local:
        # On this machine the payload (which may hold a database password) stays in a private file.
        path = workdir / "payload.pkl"
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
            pickle.dump(payload, handle)
        return _Shipment(str(path), x, devices)
    return _Shipment(payload, x, devices)


def _run_round(engine: Engine, shipment: _Shipment, n_workers: int, poll, reports: list):
    """One ``joblib.Parallel`` call of ``n_workers`` tasks, followed from here; the engine's error or None."""
    box: dict = {}

    def target():
        try:
            tasks = (delayed(run_engine_task)(shipment.payload, index, shipment.x, shipment.devices[index])
                     for index in range(n_workers))
            # Reports as tasks end, so a worker's error stops the run at once (where the engine can).
            order = "generator_unordered" if getattr(engine.backend, "supports_return_generator", False) \
                else "list"
            parallel = Parallel(n_jobs=n_workers, backend=engine.backend, batch_size=1, pre_dispatch="all",
                                return_as=order)
            for report in parallel(tasks):
                reports.append(report)
        except BaseException as exc:  # noqa: BLE001 - handed to the following thread
            box["error"] = exc

    # joblib's configuration is thread-local: the backend instance is handed over explicitly.
    thread = threading.Thread(target=target, name="skfairtune-engine", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
        poll()
        if any(r.get("error") for r in reports):
            return None, thread
    return box.get("error"), thread


def _raise_task_error(report: dict):
    error = report["error"]
    reraise_worker_error(error, f"worker {report['index']} ({report['host']}, pid {report['pid']})")


def _n_finished(study) -> int:
    return sum(t.state.is_finished() for t in counted_trials(study))


def _left(study, n_trials: int) -> bool:
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return work_left(study, n_trials) > 0 or bool(running)


def _engine_alive(engine: Engine) -> bool:
    """False when the engine itself is known to be gone (Dask's client lost its scheduler; Ray shut down)."""
    client = getattr(engine.backend, "client", None)
    if client is not None and getattr(client, "status", "running") not in ("running", "connecting", "newly-created"):
        return False
    ray = sys.modules.get("ray") if engine.name == "ray" else None
    return ray is None or ray.is_initialized()


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {redact_url(lines[0] if lines else '')[:300]}"


def _lost(engine: Engine, study, error: BaseException) -> EngineUnavailableError:
    scheduler = getattr(getattr(engine.backend, "client", None), "scheduler", None)
    where = redact_url(getattr(scheduler, "address", None) or engine.name)
    return EngineUnavailableError(
        f"the {engine.name} engine ({where}) stopped running the search's workers ({_first_line(error)}). "
        f"The study {study.study_name!r} keeps its {_n_finished(study)} finished "
        "trials; start the engine again (or run without it) and fit again with the same `storage` and "
        "`study_name` to resume."
    )


def _follow_rounds(study, engine, shipment, *, n_workers, n_trials, feed, run_id) -> None:
    """Run rounds until the study is done; a dead engine worker costs a round, a dead engine the fit."""
    idle, last = 0, _n_finished(study)
    while True:
        reports: list = []
        error, thread = _run_round(engine, shipment, n_workers, lambda: feed.poll(study), reports)
        failed = [r for r in reports if r.get("error")]
        if failed:
            _request_stop(study, run_id, engine)
            _raise_task_error(failed[0])
        if error is None:
            return
        finished = _n_finished(study)
        idle = 0 if finished > last else idle + 1
        last = finished
        if idle >= MAX_IDLE_ROUNDS or not _engine_alive(engine):
            raise _lost(engine, study, error) from error
        if not _left(study, n_trials):
            return
        warnings.warn(
            f"a {engine.name} worker was lost ({_first_line(error)}); its trial is "
            "failed and retried once its heartbeat is stale, and the workers are started again.",
            RuntimeWarning, stacklevel=4)


def _request_stop(study, run_id: str, engine: Engine) -> None:
    """Ask this run's tasks to stop after their trial (they read the study's stop mark)."""
    try:
        study.set_user_attr(STOP_ATTR, run_id)
    except Exception:  # noqa: BLE001 - the storage may be what failed
        pass
    if engine.local and hasattr(engine.backend, "abort_everything"):
        try:  # local workers are stopped at once; a cluster's finish their trial and read the mark
            engine.backend.abort_everything(ensure_ready=False)
        except Exception:  # noqa: BLE001 - a backend already shut down
            pass


def run_engine_trials(study: optuna.Study, objective, *, engine: Engine, n_workers: int, n_trials: int,
                      timeout, feed, seed, storage=None) -> tuple[optuna.Study, bool]:
    """Run the study's remaining trials as ``n_workers`` tasks on ``engine``.

    Parameters
    ----------
    study : optuna.Study
        The study. On a local engine an in-memory study is shared through a
        temporary journal file and copied back; a cluster engine needs a
        database (:func:`worker_storage`).
    objective : SearchObjective
        What each trial runs (see :class:`skfairtune.distributed._pool.SearchObjective`).
    engine : Engine
        The configured joblib backend.
    n_workers : int
        Tasks, one per worker.
    n_trials, timeout, seed
        As :func:`skfairtune.distributed._run.run_trials`.
    feed : skfairtune.distributed._follow.TrialFeed
        Polled while the tasks run: the callbacks run in this process.
    storage : None, str or optuna storage, default=None
        The search's ``storage`` as given (a ``${VAR}`` reference stays one);
        None: the study's storage.

    Returns
    -------
    study : optuna.Study
    interrupted : bool
        True when Ctrl-C stopped the run.
    """
    workdir = Path(tempfile.mkdtemp(prefix="skfairtune-engine-"))
    shared, temporary = study, False
    run_id = uuid.uuid4().hex
    try:
        if engine.local and isinstance(storage_of(study), optuna.storages.InMemoryStorage):
            # Workers in other processes cannot see this one's memory: share a journal file instead.
            journal = JournalStorage(JournalFileBackend(str(workdir / "study.log")))
            shared = copy_study(study, journal, sampler=study.sampler, pruner=study.pruner)
            temporary = True
        settings = {"n_trials": n_trials, "timeout": timeout, "seed": seed, "run_id": run_id}
        shipment = _ship(shared, objective, None if temporary else storage, engine=engine,
                         n_workers=n_workers, workdir=workdir, settings=settings)
        interrupted = False
        try:
            _follow_rounds(shared, engine, shipment, n_workers=n_workers, n_trials=n_trials, feed=feed,
                           run_id=run_id)
        except KeyboardInterrupt:
            interrupted = True
            _request_stop(shared, run_id, engine)
        feed.poll(shared, force=True)
        if temporary:
            shared = copy_study(shared, None, sampler=study.sampler, pruner=study.pruner)
        return (shared if temporary else study), interrupted
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

