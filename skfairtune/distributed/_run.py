"""Running a study's trials: in this process, or in worker processes that share its storage.

:func:`run_trials` is the search's entry point. One loop
(:func:`skfairtune.distributed._loop.run_trial_loop`) serves ``n_jobs=1``, each local
worker process of ``n_jobs > 1`` (:mod:`skfairtune.distributed._pool`) and every
machine of a multi-machine search. Its rules, which keep the study at exactly
``n_trials`` trials with any number of workers (docs/distributed.md explains
them for users):

* **Slots**: non-retry trials fill the ``n_trials`` slots in number order; one
  created after they are full is *surplus*, a baseline enqueued twice a
  *duplicate*; both are failed unrun and do not count (:func:`counted_trials`,
  :mod:`skfairtune.distributed._budget`).
* **Dead workers**: a RUNNING trial whose worker died (heartbeat stale on RDB
  storages; owner process gone from this host otherwise; no owner record after
  ``UNCLAIMED_GRACE_S``) is failed and retried with its parameters
  (:class:`RetryDeadTrial`, :mod:`skfairtune.distributed._liveness`); the retry takes its slot.
* **Finishing**: a worker leaves when the slots are full and nothing waits, after
  the RUNNING trials it can judge have ended, so every retry runs.
* **Seeds**: with a seed the sampler is re-seeded from ``(seed, slot)`` before
  each trial, so draws do not depend on which worker runs the trial.

The names other modules and users need (``counted_trials``, ``OWNER_ATTR`` ...)
are re-exported here, where docs/distributed.md points.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import optuna

from ._budget import SURPLUS_ATTR, counted_trials, work_left
from ._follow import TrialFeed
from ._liveness import MAX_RETRY, OWNER_ATTR, RetryDeadTrial, recover_dead_trials
from ._loop import run_trial_loop
from ._optuna_compat import storage_of
from ._engines import active_engine, engine_n_workers, run_engine_trials, worker_storage
from ._pool import SearchObjective, estimator_device, one_worker_per_gpu, resolve_n_jobs, run_worker_processes, \
    worker_devices

__all__ = [
    "run_trials",
    "TrialRun",
    "SearchObjective",
    "counted_trials",
    "recover_dead_trials",
    "resolve_n_jobs",
    "worker_devices",
    "RetryDeadTrial",
    "MAX_RETRY",
    "OWNER_ATTR",
    "SURPLUS_ATTR",
]


class TrialRun(NamedTuple):
    """What :func:`run_trials` hands back."""

    study: optuna.Study
    """The study holding the trials (a fresh in-memory copy when workers shared a temp file)."""
    interrupted: bool
    """True when the user interrupted the run (Ctrl-C); finished trials are kept."""


def run_trials(study: optuna.Study, objective: SearchObjective, *, n_trials: int, n_jobs=1, timeout=None,
               callbacks: Sequence[Callable] = (), seed: int | None = None, storage=None) -> TrialRun:
    """Run the trials the study still misses, until it holds ``n_trials``.

    Parameters
    ----------
    study : optuna.Study
        The study; its storage may be shared with other processes or machines
        running the same search.
    objective : SearchObjective
        ``objective(trial) -> float``. With ``n_jobs > 1`` it must pickle
        (cloudpickle), and its optional attributes ``X``, ``estimator`` and
        ``step`` are read to memory-map the images and place each worker on
        its device: see :class:`skfairtune.distributed._pool.SearchObjective`.
    n_trials : int
        Total budget of the study, counting trials that earlier runs and
        other workers finished.
    n_jobs : int or None, default=1
        Concurrent trial workers (see :func:`resolve_n_jobs`; None: the
        ``n_jobs`` of ``joblib.parallel_config`` when it sets a backend, else
        1). Where they run is ``joblib.parallel_config``'s choice: with no
        backend configured, processes of this machine's worker pool
        (:mod:`skfairtune.distributed._pool`); with one (``loky``, ``dask``,
        ``ray`` ...), tasks of that engine
        (:mod:`skfairtune.distributed._engines`). On this machine each worker
        divides the cores' torch threads and, with several GPUs and
        ``device="auto"``, gets its own GPU (at most one worker per GPU).
    timeout : float, default=None
        Stop starting new trials after this many seconds.
    callbacks : sequence of callable, default=()
        ``callback(study, frozen_trial)`` once per trial finished in the run, always in
        this process (which follows the workers' study: :class:`skfairtune.distributed._follow.TrialFeed`).
    seed : int, default=None
        Re-seed the sampler from ``(seed, slot)`` before each trial.
    storage : None, str or optuna storage, default=None
        The search's ``storage`` as given, sent to cluster workers (a
        ``${VAR}`` password reference stays one); None: the study's storage.

    Returns
    -------
    run : TrialRun
        ``(study, interrupted)``.

    Examples
    --------
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(direction="maximize")
    >>> run = run_trials(study, lambda t: t.suggest_float("x", 0, 1), n_trials=4, seed=0)
    >>> len(run.study.trials), run.interrupted
    (4, False)
    """
    engine = active_engine()
    n_workers = engine_n_workers(n_jobs, engine)
    if n_workers > 1 and not engine.local:
        worker_storage(storage if storage is not None else storage_of(study), engine)  # refuse before any work
    feed = TrialFeed(callbacks, study)
    try:
        recover_dead_trials(study)
        work = work_left(study, n_trials)
        if n_workers == 1 or work <= 1:
            run_trial_loop(study, objective, n_trials=n_trials, timeout=timeout, callbacks=[feed], seed=seed)
            return TrialRun(study, False)
    except KeyboardInterrupt:
        return TrialRun(study, True)
    n_workers = min(n_workers, work)
    if engine.local:
        n_workers = one_worker_per_gpu(n_workers, estimator_device(objective))
    if engine.name == "pool":
        shared, interrupted = run_worker_processes(study, objective, n_workers=n_workers, n_trials=n_trials,
                                                   timeout=timeout, feed=feed, seed=seed)
    else:
        shared, interrupted = run_engine_trials(study, objective, engine=engine, n_workers=n_workers,
                                                n_trials=n_trials, timeout=timeout, feed=feed, seed=seed,
                                                storage=storage)
    return TrialRun(shared, interrupted)
