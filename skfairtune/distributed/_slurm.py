"""SLURM without a cluster manager: N array tasks running the same search, requeued on preemption (submitit).

Every task calls the same function, which fits the same search against the
same database and ``study_name``; they share one study, so together they run
exactly ``n_trials`` trials (:mod:`skfairtune.distributed._run`). submitit
sends the job a signal before SLURM preempts it or its time runs out; the
task is a ``submitit.helpers.Checkpointable``, so submitit requeues it, and the
``SystemExit`` it raises fails and re-queues the running trial (the trial loop
treats it as an interruption). The requeued task joins the study again and
carries on.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

try:  # the `cluster` extra; `import skfairtune` never gets here
    import submitit
    from submitit.helpers import Checkpointable, DelayedSubmission
except ImportError:  # pragma: no cover - exercised where the extra is absent
    submitit = None
    Checkpointable = object
    DelayedSubmission = None

__all__ = ["SearchTask", "submit_search_workers"]


class SearchTask(Checkpointable):
    """One array task of a search: calls ``fit(*args, **kwargs)``; requeued whole on preemption.

    Parameters
    ----------
    fit : callable
        Runs the search (the same one on every task: same ``storage`` URL,
        with its password as a ``${VAR}`` reference, and ``study_name``).
    *args, **kwargs
        Passed to ``fit``.
    """

    def __init__(self, fit: Callable, *args, **kwargs):
        self.fit, self.args, self.kwargs = fit, args, kwargs

    def __call__(self, index: int = 0) -> Any:
        return self.fit(*self.args, **self.kwargs)

    def checkpoint(self, *args, **kwargs):
        """Requeue the same task: the study holds the progress, nothing else needs saving."""
        return DelayedSubmission(SearchTask(self.fit, *self.args, **self.kwargs), *args, **kwargs)


def submit_search_workers(fit: Callable, n_tasks: int, *, folder=None, executor=None,
                          **parameters) -> list:
    """Launch ``n_tasks`` SLURM array tasks, each calling ``fit()``, requeued on preemption.

    Parameters
    ----------
    fit : callable
        A function without arguments that fits the search (see
        :class:`SearchTask`); cloudpickled by submitit.
    n_tasks : int
        Array tasks, i.e. concurrent workers of the study.
    folder : str or path-like, default=None
        submitit's log and pickle folder (for ``submitit.AutoExecutor``).
    executor : submitit executor, default=None
        Used instead of ``AutoExecutor(folder)`` (e.g. ``submitit.LocalExecutor``
        to try the recipe on one machine).
    **parameters
        Given to ``executor.update_parameters`` (``timeout_min``,
        ``slurm_partition``, ``gpus_per_node``, ``slurm_array_parallelism`` ...).

    Returns
    -------
    jobs : list of submitit.Job
        ``job.result()`` is what ``fit`` returned.

    Examples
    --------
    >>> submit_search_workers(print, 0, folder="logs")
    Traceback (most recent call last):
    ...
    ValueError: `n_tasks` must be a positive int; got 0.
    """
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, numbers.Integral) or n_tasks < 1:
        raise ValueError(f"`n_tasks` must be a positive int; got {n_tasks!r}.")
    if not callable(fit):
        raise TypeError(f"`fit` must be a callable that fits the search; got {type(fit).__name__}.")
    if submitit is None:
        raise ImportError("submit_search_workers needs submitit: pip install 'skfairtune[cluster]' "
                          "(or pip install submitit).")
    if executor is None:
        if folder is None:
            raise ValueError("`folder` is required without `executor`: submitit keeps its logs and pickles there.")
        executor = submitit.AutoExecutor(folder=folder)
    if parameters:
        executor.update_parameters(**parameters)
    return executor.map_array(SearchTask(fit), range(int(n_tasks)))
